//! Receivers: what a notification of an alert group looks like on the wire. Webhooks
//! get Alertmanager's version 4 payload, Slack-compatible incoming webhooks a message
//! with title and text, PagerDuty an Events API v2 event per group (trigger or
//! resolve, deduplicated by group key), email a plain-text message over SMTP.

use super::config::{EmailConfig, PagerDutyConfig, SlackConfig, WebhookConfig};
use super::Alert;
use crate::labels::Labels;
use gotmpl::{Template, Value};
use serde_json::{json, Map};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One notification: the alerts of a group as one receiver integration gets them.
#[derive(Clone, Debug)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub alerts: Vec<Alert>,
    pub external_url: String,
    /// When it is sent (milliseconds), deciding which alerts are resolved.
    pub now: i64,
    /// Mobius' additions when an escalation pages: the incident, the level and the
    /// signed acknowledgement link (`{"incident", "level", "acknowledgeURL"}`), sent
    /// as the webhook payload's `mobius` field and a line of the text.
    pub incident: Option<serde_json::Value>,
}

/// RFC 3339 with the fraction Go prints (none, or milliseconds), `0001-01-01T00:00:00Z` for zero.
pub fn rfc3339(ms: i64) -> String {
    if ms == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn label_map(labels: &Labels) -> Map<String, serde_json::Value> {
    labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()
}

fn pairs_map(pairs: &[(String, String)]) -> Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
}

impl Notification {
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(|a| !a.resolved(self.now))
    }

    pub fn status(&self) -> &'static str {
        if self.firing().next().is_some() {
            "firing"
        } else {
            "resolved"
        }
    }

    /// The labels every alert has with the same value.
    pub fn common_labels(&self) -> Labels {
        super::common_labels(&self.alerts)
    }

    pub fn common_annotations(&self) -> Vec<(String, String)> {
        let Some(first) = self.alerts.first() else { return Vec::new() };
        first
            .annotations
            .iter()
            .filter(|pair| self.alerts.iter().all(|a| a.annotations.contains(pair)))
            .cloned()
            .collect()
    }

    fn alert_json(&self, a: &Alert) -> serde_json::Value {
        let resolved = a.resolved(self.now);
        json!({
            "status": if resolved { "resolved" } else { "firing" },
            "labels": label_map(&a.labels),
            "annotations": pairs_map(&a.annotations),
            "startsAt": rfc3339(a.starts_at),
            "endsAt": if resolved { rfc3339(a.ends_at) } else { rfc3339(0) },
            "generatorURL": a.generator_url,
            "fingerprint": format!("{:016x}", a.fingerprint()),
        })
    }

    /// Alertmanager's webhook payload, version 4; at most `max_alerts` alerts (0: all).
    pub fn webhook_payload(&self, max_alerts: usize) -> serde_json::Value {
        let shown = if max_alerts == 0 { self.alerts.len() } else { max_alerts.min(self.alerts.len()) };
        let mut payload = json!({
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": self.alerts.len() - shown,
            "status": self.status(),
            "receiver": self.receiver,
            "groupLabels": label_map(&self.group_labels),
            "commonLabels": label_map(&self.common_labels()),
            "commonAnnotations": pairs_map(&self.common_annotations()),
            "externalURL": self.external_url,
            "alerts": self.alerts[..shown].iter().map(|a| self.alert_json(a)).collect::<Vec<_>>(),
        });
        if let Some(incident) = &self.incident {
            payload["mobius"] = incident.clone();
        }
        payload
    }

    /// The data Alertmanager's notification templates see (`.Status`, `.Alerts`, ...).
    fn template_data(&self) -> Value {
        let strings = |pairs: Vec<(String, String)>| -> Value {
            let map: BTreeMap<Arc<str>, Value> =
                pairs.into_iter().map(|(k, v)| (Arc::from(k.as_str()), Value::from(v))).collect();
            Value::from(map)
        };
        let labels = |l: &Labels| strings(l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let alerts: Vec<(bool, Value)> = self
            .alerts
            .iter()
            .map(|a| {
                (
                    a.resolved(self.now),
                    Value::from_entries([
                        ("Status".to_string(), Value::from(if a.resolved(self.now) { "resolved" } else { "firing" })),
                        ("Labels".to_string(), labels(&a.labels)),
                        ("Annotations".to_string(), strings(a.annotations.clone())),
                        ("StartsAt".to_string(), Value::from(rfc3339(a.starts_at))),
                        ("GeneratorURL".to_string(), Value::from(a.generator_url.as_str())),
                        ("Fingerprint".to_string(), Value::from(format!("{:016x}", a.fingerprint()))),
                    ]),
                )
            })
            .collect();
        let of = |resolved: bool| -> Value {
            Value::from(alerts.iter().filter(|(r, _)| *r == resolved).map(|(_, v)| v.clone()).collect::<Vec<_>>())
        };
        Value::from_entries([
            ("Receiver".to_string(), Value::from(self.receiver.as_str())),
            ("Status".to_string(), Value::from(self.status())),
            ("AlertsFiring".to_string(), of(false)),
            ("AlertsResolved".to_string(), of(true)),
            ("Alerts".to_string(), Value::from(alerts.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())),
            ("GroupLabels".to_string(), labels(&self.group_labels)),
            ("CommonLabels".to_string(), labels(&self.common_labels())),
            ("CommonAnnotations".to_string(), strings(self.common_annotations())),
            ("ExternalURL".to_string(), Value::from(self.external_url.as_str())),
        ])
    }

    /// Expands a receiver's template (`{{ .Status }}`, `{{ .CommonLabels.alertname }}`,
    /// `{{ range .Alerts.Firing }}`...).
    pub fn expand(&self, text: &str) -> Result<String, String> {
        parse_template(text).and_then(|t| t.execute_to_string(&self.template_data()).map_err(|e| e.to_string()))
    }

    /// Alertmanager's default title: `[FIRING:2] HighLatency api`.
    pub fn default_title(&self) -> String {
        let mut title = self.status().to_uppercase();
        if self.status() == "firing" {
            title = format!("[FIRING:{}]", self.firing().count());
        } else {
            title = format!("[{title}]");
        }
        let values: Vec<&str> = self.group_labels.iter().map(|(_, v)| v).collect();
        format!("{title} {}", values.join(" ")).trim_end().to_string()
    }

    /// A plain-text body listing every alert with its labels and annotations.
    pub fn default_text(&self) -> String {
        let mut out = String::new();
        if let Some(incident) = &self.incident {
            let id = incident["incident"].as_i64().unwrap_or(0);
            let level = incident["level"].as_i64().unwrap_or(0);
            out.push_str(&format!("Incident #{id}, escalation level {level}\n"));
            if let Some(url) = incident["acknowledgeURL"].as_str() {
                out.push_str(&format!("Acknowledge: {url}\n"));
            }
        }
        for a in &self.alerts {
            let status = if a.resolved(self.now) { "resolved" } else { "firing" };
            out.push_str(&format!("[{status}] {}\n", a.labels));
            for (k, v) in &a.annotations {
                out.push_str(&format!("  {k}: {v}\n"));
            }
            if !a.generator_url.is_empty() {
                out.push_str(&format!("  source: {}\n", a.generator_url));
            }
        }
        out
    }
}

fn parse_template(text: &str) -> Result<Template, String> {
    Template::new("notification").parse(&with_alert_methods(text)).map_err(|e| e.to_string())
}

/// Alertmanager's `.Alerts.Firing` and `.Alerts.Resolved` are methods of its alert
/// list; the template engine has no methods on values, so inside actions they are
/// read as the data's `AlertsFiring` and `AlertsResolved` lists.
fn with_alert_methods(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}").map(|c| open + c + 2) else { break };
        out.push_str(&rest[..open]);
        let action = &rest[open..close];
        let mut rewritten = String::with_capacity(action.len());
        let mut tail = action;
        while let Some(at) = tail.find(".Alerts.") {
            let after = &tail[at + ".Alerts.".len()..];
            let method = ["Firing", "Resolved"].into_iter().find(|m| {
                after.starts_with(m) && !after[m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            match method {
                Some(m) => {
                    rewritten.push_str(&tail[..at]);
                    rewritten.push_str(".Alerts");
                    rewritten.push_str(m);
                    tail = &after[m.len()..];
                }
                None => {
                    rewritten.push_str(&tail[..at + ".Alerts.".len()]);
                    tail = after;
                }
            }
        }
        rewritten.push_str(tail);
        out.push_str(&rewritten);
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// Whether a receiver's template parses (checked when the configuration is read).
pub fn check_template(text: &str) -> Result<(), String> {
    parse_template(text).map(|_| ())
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Http(String),
    #[error("{receiver} answered {status}: {body}")]
    Status { receiver: String, status: u16, body: String },
    #[error("template: {0}")]
    Template(String),
    #[error("email: {0}")]
    Email(String),
}

/// The HTTP client notifications go out through: HTTP, or HTTPS verified against
/// Mozilla's roots (rustls with the ring provider).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

pub fn http_client() -> Result<HttpClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Posts JSON and requires a 2xx answer within 10 seconds.
async fn post_json(client: &HttpClient, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
    use http_body_util::BodyExt;
    let shown = redact(url);
    let uri: hyper::Uri = url.parse().map_err(|e| NotifyError::Http(format!("{shown}: {e}")))?;
    let request = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("Mobius/", env!("CARGO_PKG_VERSION")))
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .map_err(|e| NotifyError::Http(format!("{shown}: {e}")))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| NotifyError::Http(format!("POST {shown}: no answer within 10 s")))?
        .map_err(|e| NotifyError::Http(format!("POST {shown}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = match tokio::time::timeout(Duration::from_secs(2), response.into_body().collect()).await {
        Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).chars().take(200).collect(),
        _ => String::new(),
    };
    Err(NotifyError::Status { receiver: shown, status: status.as_u16(), body: text })
}

/// A URL without its path and query, which for Slack hold the secret.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}/…", rest.split('/').next().unwrap_or("")),
        None => "…".into(),
    }
}

pub async fn send_webhook(client: &HttpClient, c: &WebhookConfig, n: &Notification) -> Result<(), NotifyError> {
    post_json(client, &c.url, &n.webhook_payload(c.max_alerts)).await
}

pub async fn send_slack(client: &HttpClient, c: &SlackConfig, n: &Notification) -> Result<(), NotifyError> {
    let title = match &c.title {
        Some(t) => n.expand(t).map_err(NotifyError::Template)?,
        None => n.default_title(),
    };
    let text = match &c.text {
        Some(t) => n.expand(t).map_err(NotifyError::Template)?,
        None => n.default_text(),
    };
    let color = if n.status() == "firing" { "danger" } else { "good" };
    let mut body = json!({
        "text": title,
        "attachments": [{ "title": title, "text": text, "color": color, "fallback": title }],
    });
    if let Some(channel) = &c.channel {
        body["channel"] = json!(channel);
    }
    if let Some(username) = &c.username {
        body["username"] = json!(username);
    }
    post_json(client, &c.api_url, &body).await
}

pub async fn send_pagerduty(client: &HttpClient, c: &PagerDutyConfig, n: &Notification) -> Result<(), NotifyError> {
    let resolved = n.status() == "resolved";
    let summary = match &c.description {
        Some(t) => n.expand(t).map_err(NotifyError::Template)?,
        None => n.default_title(),
    };
    let dedup_key = format!("{:x}", super::fnv1a([n.group_key.as_bytes()]));
    let mut body = json!({
        "routing_key": c.routing_key,
        "event_action": if resolved { "resolve" } else { "trigger" },
        "dedup_key": dedup_key,
    });
    if !resolved {
        body["payload"] = json!({
            "summary": summary.chars().take(1024).collect::<String>(),
            "source": c.client,
            "severity": c.severity,
            "custom_details": {
                "firing": n.firing().count(),
                "num_firing": n.firing().count(),
                "num_resolved": n.alerts.len() - n.firing().count(),
                "details": n.default_text(),
            },
        });
        body["client"] = json!(c.client);
        if let Some(url) = &c.client_url {
            body["client_url"] = json!(url);
        }
    }
    post_json(client, &c.url, &body).await
}

pub async fn send_email(c: &EmailConfig, n: &Notification) -> Result<(), NotifyError> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let subject = match &c.subject {
        Some(t) => n.expand(t).map_err(NotifyError::Template)?,
        None => n.default_title(),
    };
    let text = match &c.text {
        Some(t) => n.expand(t).map_err(NotifyError::Template)?,
        None => n.default_text(),
    };
    let parse = |who: &str| who.parse::<Mailbox>().map_err(|e| NotifyError::Email(format!("`{who}`: {e}")));
    let mut message = Message::builder().from(parse(&c.from)?).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in c.to.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        message = message.to(parse(to)?);
    }
    let message = message.body(text).map_err(|e| NotifyError::Email(e.to_string()))?;
    let (host, port) = match c.smarthost.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| NotifyError::Email(format!("bad port in `{}`", c.smarthost)))?),
        None => (c.smarthost.as_str(), 25),
    };
    let mut transport = if c.require_tls {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| NotifyError::Email(e.to_string()))?
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
    }
    .port(port)
    .hello_name(lettre::transport::smtp::extension::ClientId::Domain(c.hello.clone()))
    .timeout(Some(Duration::from_secs(10)));
    if let (Some(user), Some(password)) = (&c.auth_username, &c.auth_password) {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    transport.build().send(message).await.map_err(|e| NotifyError::Email(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, ends_at: i64) -> Alert {
        Alert {
            labels: Labels::from_pairs(&[("alertname", name)]),
            annotations: Vec::new(),
            starts_at: 1_000,
            ends_at,
            generator_url: String::new(),
            updated_at: 1_000,
        }
    }

    #[test]
    fn templates_see_the_firing_and_resolved_alerts_as_alertmanager_offers_them() {
        let n = Notification {
            receiver: "team".into(),
            group_key: "{}:{}".into(),
            group_labels: Labels::default(),
            alerts: vec![alert("Disk", 0), alert("Load", 5_000), alert("Heat", 0)],
            external_url: "http://127.0.0.1:7300".into(),
            now: 10_000,
            incident: None,
        };
        let text = "{{ len .Alerts.Firing }} of {{ len .Alerts }} firing:{{ range .Alerts.Firing }} \
                    {{ .Labels.alertname }}{{ end }}; resolved:{{ range $.Alerts.Resolved }} {{ .Labels.alertname }}{{ end }} \
                    (.Alerts.Firing is text here)";
        assert_eq!(n.expand(text).unwrap(), "2 of 3 firing: Disk Heat; resolved: Load (.Alerts.Firing is text here)");
        assert_eq!(with_alert_methods("{{ .Alerts.FiringSoon }}"), "{{ .Alerts.FiringSoon }}");
    }
}
