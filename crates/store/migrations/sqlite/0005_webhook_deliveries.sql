-- Webhook deliveries already acted on, by the sender's delivery id
-- (X-GitHub-Delivery, X-Gitea-Delivery): a replayed delivery starts nothing.
-- Entries older than 30 days are removed as new ones arrive.
CREATE TABLE webhook_deliveries (
    project_id BIGINT NOT NULL,
    delivery TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, delivery)
);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (received_at);
