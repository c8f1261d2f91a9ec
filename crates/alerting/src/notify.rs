//! Receivers: what a notification of an alert group looks like on the wire. Webhooks
//! get Alertmanager's version 4 payload, Slack-compatible incoming webhooks a message
//! with an attachment, PagerDuty an Events API v2 event per group (trigger or
//! resolve, deduplicated by group key), email an HTML message (with a plain-text part
//! when one is configured) over SMTP, Discord an embed, Teams a MessageCard, Telegram
//! a `sendMessage` call. Every string a receiver sends is a template,
//! Alertmanager's default unless the configuration sets it (`templates.rs`).

use super::config::{ChatConfig, ChatKind, EmailConfig, HttpConfig, PagerDutyConfig, SlackConfig, WebhookConfig};
use super::templates::NotificationTemplates;
use super::Alert;
use gotmpl::Value;
use mobius_series::labels::Labels;
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

    /// Whether any alert of the notification still fires (`firing`), or all resolved.
    pub fn is_firing(&self) -> bool {
        self.firing().next().is_some()
    }

    /// The notification's status as Alertmanager's payloads spell it.
    pub fn status(&self) -> &'static str {
        if self.is_firing() {
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

    /// The data Alertmanager's notification templates see (`.Status`, `.Alerts`,
    /// `.GroupLabels`...), and Mobius' `.Mobius` (`.Incident`, `.Level`, `.Policy`,
    /// `.AcknowledgeURL`) when an escalation pages.
    pub fn template_data(&self) -> Value {
        let strings = |pairs: Vec<(String, String)>| -> Value {
            let map: BTreeMap<Arc<str>, Value> =
                pairs.into_iter().map(|(k, v)| (Arc::from(k.as_str()), Value::from(v))).collect();
            Value::from(map)
        };
        let labels = |l: &Labels| strings(l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|a| {
                let resolved = a.resolved(self.now);
                Value::from_entries([
                    ("Status".to_string(), Value::from(if resolved { "resolved" } else { "firing" })),
                    ("Labels".to_string(), labels(&a.labels)),
                    ("Annotations".to_string(), strings(a.annotations.clone())),
                    ("StartsAt".to_string(), Value::from(rfc3339(a.starts_at))),
                    ("EndsAt".to_string(), Value::from(rfc3339(if resolved { a.ends_at } else { 0 }))),
                    ("GeneratorURL".to_string(), Value::from(a.generator_url.as_str())),
                    ("Fingerprint".to_string(), Value::from(format!("{:016x}", a.fingerprint()))),
                ])
            })
            .collect();
        let mobius = match &self.incident {
            Some(i) => Value::from_entries([
                ("Incident".to_string(), Value::Int(i["incident"].as_i64().unwrap_or(0))),
                ("Level".to_string(), Value::Int(i["level"].as_i64().unwrap_or(0))),
                ("Policy".to_string(), Value::from(i["policy"].as_str().unwrap_or(""))),
                ("AcknowledgeURL".to_string(), Value::from(i["acknowledgeURL"].as_str().unwrap_or(""))),
            ]),
            None => Value::Nil,
        };
        Value::from_entries([
            ("Receiver".to_string(), Value::from(self.receiver.as_str())),
            ("Status".to_string(), Value::from(self.status())),
            ("Alerts".to_string(), Value::from(alerts)),
            ("GroupLabels".to_string(), labels(&self.group_labels)),
            ("CommonLabels".to_string(), labels(&self.common_labels())),
            ("CommonAnnotations".to_string(), strings(self.common_annotations())),
            ("ExternalURL".to_string(), Value::from(self.external_url.as_str())),
            ("Mobius".to_string(), mobius),
        ])
    }
}

/// Sets each of `keys` whose expansion is not empty: Alertmanager leaves empty fields out.
fn put_non_empty(target: &mut Map<String, serde_json::Value>, texts: &BTreeMap<&str, String>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = texts.get(key).filter(|v| !v.is_empty()) {
            target.insert(key.to_string(), json!(v));
        }
    }
}

/// Expands a receiver's templated strings over one notification's data.
struct Expander<'a> {
    templates: &'a NotificationTemplates,
    data: Value,
}

impl<'a> Expander<'a> {
    fn new(templates: &'a NotificationTemplates, n: &Notification) -> Self {
        Expander { templates, data: n.template_data() }
    }

    fn expand(&self, text: &str) -> Result<String, NotifyError> {
        self.templates.expand(text, &self.data).map_err(NotifyError::Template)
    }

    /// The expansions of `texts`, by key.
    fn all(&self, texts: &[(&'static str, String)]) -> Result<BTreeMap<&'static str, String>, NotifyError> {
        texts.iter().map(|(k, t)| Ok((*k, self.expand(t)?))).collect()
    }
}

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Http(String),
    #[error("{receiver} answered {status}: {body}")]
    Status { receiver: String, status: u16, body: String },
    #[error("template: {0}")]
    Template(#[from] crate::templates::TemplatesError),
    #[error("email: {0}")]
    Email(String),
}

/// The HTTP client notifications go out through: HTTP, or HTTPS verified against
/// Mozilla's roots (rustls with the ring provider).
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// TLS could not be set up for notifications.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS: {0}")]
pub struct TlsSetupError(#[from] rustls::Error);

pub fn http_client() -> Result<HttpClient, TlsSetupError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Posts JSON and requires a 2xx answer within 10 seconds.
async fn post_json(
    client: &HttpClient,
    http: &HttpConfig,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), NotifyError> {
    use http_body_util::BodyExt;
    let shown = redact(url);
    let uri: hyper::Uri = url.parse().map_err(|e| NotifyError::Http(format!("{shown}: {e}")))?;
    let mut request = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("Mobius/", env!("CARGO_PKG_VERSION")));
    if let Some(authorization) = &http.authorization {
        request = request.header(hyper::header::AUTHORIZATION, authorization);
    }
    let request = request
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
    post_json(client, &c.http, &c.url, &n.webhook_payload(c.max_alerts)).await
}

pub async fn send_slack(
    client: &HttpClient,
    templates: &NotificationTemplates,
    c: &SlackConfig,
    n: &Notification,
) -> Result<(), NotifyError> {
    let x = Expander::new(templates, n);
    let texts = x.all(&c.texts)?;
    let mut attachment = Map::new();
    put_non_empty(
        &mut attachment,
        &texts,
        &["title", "title_link", "pretext", "text", "fallback", "callback_id", "footer", "color", "image_url"],
    );
    if !c.fields.is_empty() {
        let fields: Result<Vec<_>, NotifyError> = c
            .fields
            .iter()
            .map(|(title, value, short)| {
                Ok(json!({"title": x.expand(title)?, "value": x.expand(value)?, "short": short}))
            })
            .collect();
        attachment.insert("fields".into(), json!(fields?));
    }
    attachment.insert("mrkdwn_in".into(), json!(["fallback", "pretext", "text"]));
    let mut body = Map::new();
    body.insert("attachments".into(), json!([attachment]));
    put_non_empty(&mut body, &texts, &["channel", "username", "icon_emoji", "icon_url"]);
    let mut body = serde_json::Value::Object(body);
    if c.link_names {
        body["link_names"] = json!(true);
    }
    post_json(client, &c.http, &c.api_url, &body).await
}

pub async fn send_pagerduty(
    client: &HttpClient,
    templates: &NotificationTemplates,
    c: &PagerDutyConfig,
    n: &Notification,
) -> Result<(), NotifyError> {
    let resolved = !n.is_firing();
    let dedup_key = format!("{:x}", super::fnv1a([n.group_key.as_bytes()]));
    let mut body = json!({
        "routing_key": c.routing_key,
        "event_action": if resolved { "resolve" } else { "trigger" },
        "dedup_key": dedup_key,
    });
    if !resolved {
        let x = Expander::new(templates, n);
        let texts = x.all(&c.texts)?;
        let text = |k: &str| texts.get(k).cloned().unwrap_or_default();
        let mut details = Map::new();
        for (k, t) in &c.details {
            details.insert(k.clone(), json!(x.expand(t)?));
        }
        let mut links = Vec::new();
        if let Some(incident) = &n.incident {
            details.insert("incident".into(), json!(x.expand(r#"{{ template "mobius.incident" . }}"#)?.trim_end()));
            if let Some(url) = incident["acknowledgeURL"].as_str() {
                links.push(json!({"href": url, "text": "Acknowledge in Mobius"}));
            }
        }
        for (href, label) in &c.links {
            links.push(json!({"href": x.expand(href)?, "text": x.expand(label)?}));
        }
        // PagerDuty refuses a summary over 1,024 characters.
        let summary: String = text("description").chars().take(1024).collect();
        let mut payload = Map::new();
        payload.insert("summary".into(), json!(summary));
        payload.insert("source".into(), json!(text("source")));
        payload.insert("severity".into(), json!(text("severity")));
        payload.insert("custom_details".into(), json!(details));
        put_non_empty(&mut payload, &texts, &["class", "component", "group"]);
        body["payload"] = serde_json::Value::Object(payload);
        body["client"] = json!(text("client"));
        body["client_url"] = json!(text("client_url"));
        if !links.is_empty() {
            body["links"] = json!(links);
        }
    }
    post_json(client, &c.http, &c.url, &body).await
}

/// Discord (an embed), Microsoft Teams (a MessageCard) or Telegram (`sendMessage`),
/// as Alertmanager posts them.
pub async fn send_chat(
    client: &HttpClient,
    templates: &NotificationTemplates,
    c: &ChatConfig,
    n: &Notification,
) -> Result<(), NotifyError> {
    let texts = Expander::new(templates, n).all(&c.texts)?;
    let text = |k: &str| texts.get(k).cloned().unwrap_or_default();
    let firing = n.is_firing();
    let cut = |s: String, max: usize| -> String { s.chars().take(max).collect() };
    let (url, body) = match c.kind {
        ChatKind::Discord => {
            let color = if firing { 0x992D22 } else { 0x2ECC71 };
            let embed =
                json!({"title": cut(text("title"), 256), "description": cut(text("message"), 4096), "color": color});
            (c.url.clone(), json!({"embeds": [embed]}))
        }
        ChatKind::Teams => {
            let body = json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": if firing { "8C1A1A" } else { "2DC72D" },
                "title": text("title"),
                "summary": text("summary"),
                "text": text("text"),
            });
            (c.url.clone(), body)
        }
        ChatKind::Telegram => {
            let mut body = json!({"chat_id": c.chat_id, "text": cut(text("message"), 4096)});
            if !text("parse_mode").is_empty() {
                body["parse_mode"] = json!(text("parse_mode"));
            }
            if c.disable_notifications {
                body["disable_notification"] = json!(true);
            }
            (format!("{}/bot{}/sendMessage", c.url.trim_end_matches('/'), c.bot_token), body)
        }
    };
    post_json(client, &c.http, &url, &body).await
}

pub async fn send_email(
    templates: &NotificationTemplates,
    c: &EmailConfig,
    n: &Notification,
) -> Result<(), NotifyError> {
    use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let x = Expander::new(templates, n);
    let parse = |who: &str| who.parse::<Mailbox>().map_err(|e| NotifyError::Email(format!("`{who}`: {e}")));
    let mut message = Message::builder().from(parse(&c.from)?);
    for to in c.to.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        message = message.to(parse(to)?);
    }
    for (name, text) in &c.headers {
        let value = x.expand(text)?;
        if name.eq_ignore_ascii_case("subject") {
            message = message.subject(value);
        } else if !["to", "from"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
            let name = lettre::message::header::HeaderName::new_from_ascii(name.clone())
                .map_err(|e| NotifyError::Email(format!("header `{name}`: {e}")))?;
            message = message.raw_header(lettre::message::header::HeaderValue::new(name, value));
        }
    }
    let html = if c.html.is_empty() { String::new() } else { x.expand(&c.html)? };
    let text = match &c.text {
        Some(t) => x.expand(t)?,
        None => String::new(),
    };
    let message = match (html.is_empty(), text.is_empty()) {
        (false, false) => message.multipart(MultiPart::alternative_plain_html(text, html)),
        (false, true) => message.singlepart(SinglePart::html(html)),
        _ => message.header(ContentType::TEXT_PLAIN).body(text),
    }
    .map_err(|e| NotifyError::Email(e.to_string()))?;
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

    fn notification(alerts: Vec<Alert>) -> Notification {
        Notification {
            receiver: "team".into(),
            group_key: "{}:{alertname=\"Disk\"}".into(),
            group_labels: Labels::from_pairs(&[("alertname", "Disk")]),
            alerts,
            external_url: "http://127.0.0.1:7300".into(),
            now: 10_000,
            incident: None,
        }
    }

    fn expand(n: &Notification, text: &str) -> String {
        NotificationTemplates::defaults().unwrap().expand(text, &n.template_data()).unwrap()
    }

    #[test]
    fn templates_see_the_firing_and_resolved_alerts_as_alertmanager_offers_them() {
        let n = notification(vec![alert("Disk", 0), alert("Load", 5_000), alert("Heat", 0)]);
        let text = "{{ len .Alerts.Firing }} of {{ len .Alerts }} firing:{{ range .Alerts.Firing }} \
                    {{ .Labels.alertname }}{{ end }}; resolved:{{ range $.Alerts.Resolved }} {{ .Labels.alertname }}{{ end }} \
                    (.Alerts.Firing is text here)";
        assert_eq!(expand(&n, text), "2 of 3 firing: Disk Heat; resolved: Load (.Alerts.Firing is text here)");
        assert_eq!(expand(&n, "[{{ .CommonLabels.absent }}]"), "[]");
        let templates = NotificationTemplates::defaults().unwrap();
        let error = templates.expand("{{ .Alerts.FiringSoon }}", &n.template_data()).unwrap_err();
        assert!(error.to_string().contains("can't evaluate field FiringSoon"), "{error}");
    }

    #[test]
    fn the_default_templates_write_alertmanagers_subject_and_list_every_alert() {
        let mut alerts = Vec::new();
        for (instance, ends_at) in [("a:9100", 0), ("b:9100", 5_000), ("c:9100", 0)] {
            let mut a = alert("Disk", ends_at);
            a.labels = Labels::from_pairs(&[("alertname", "Disk"), ("instance", instance), ("job", "node")]);
            a.annotations = vec![("summary".into(), format!("{instance} is full"))];
            alerts.push(a);
        }
        let mut n = notification(alerts);
        assert_eq!(expand(&n, r#"{{ template "__subject" . }}"#), "[FIRING:2] Disk (node)");
        assert_eq!(
            expand(&n, r#"{{ .CommonLabels.SortedPairs.Names | join "," }} {{ .GroupLabels.Values | join "," }}"#),
            "alertname,job Disk"
        );
        assert_eq!(
            expand(&n, r#"{{ template "__text_alert_list" .Alerts.Resolved }}"#),
            "[resolved] alertname=\"Disk\", instance=\"b:9100\", job=\"node\"\n  summary: b:9100 is full\n"
        );
        assert_eq!(
            expand(&n, r#"{{ template "slack.default.titlelink" . }}"#),
            "http://127.0.0.1:7300/ui/alerts?receiver=team"
        );
        n.incident = Some(json!({"incident": 7, "level": 2, "acknowledgeURL": "http://x/ack?t=1"}));
        let text = expand(&n, r#"{{ template "slack.default.text" . }}"#);
        assert!(text.starts_with("Incident #7, escalation level 2\nAcknowledge: http://x/ack?t=1\n[firing]"), "{text}");
        let html = expand(&n, r#"{{ template "email.default.html" . }}"#);
        assert!(html.contains("2 firing, 1 resolved for alertname=Disk"), "{html}");
        assert!(html.contains(r#"<a href="http://x/ack?t=1">Acknowledge</a>"#), "{html}");
        n.alerts.iter_mut().for_each(|a| a.ends_at = 5_000);
        assert_eq!(expand(&n, r#"{{ template "email.default.subject" . }}"#), "[RESOLVED] Disk (node)");
    }
}
