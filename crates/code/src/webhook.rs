//! GitHub and Gitea webhook deliveries: the `X-Hub-Signature-256` check (HMAC-SHA256
//! of the body under the project's secret, compared in constant time) and the
//! payload read into what it asks for: a push, a deleted ref, a pull request, a
//! ping, or an event that triggers nothing.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared in constant time.
pub fn signature_matches(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.strip_prefix("sha256=") else { return false };
    let Ok(expected) = hex::decode(hex_digest.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// What a delivery asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Ping,
    /// An event that triggers no run (`issues`, `star`, ...).
    Ignored,
    /// A branch or tag moved to `after` (`before`: the commit it moved from, when it
    /// names another one).
    Push {
        git_ref: String,
        after: String,
        before: Option<String>,
    },
    /// A branch or tag was deleted.
    Deleted {
        git_ref: String,
    },
    /// A pull request opened or moved to `head_sha`.
    PullRequest {
        number: i64,
        head_sha: String,
    },
}

/// A delivery, read.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `push`, `pull_request`, `ping`, ...
    pub event: String,
    /// Who sent it (`sender.login`, `pusher.name`, or `webhook`).
    pub actor: String,
    pub kind: Kind,
    /// The payload, for `github.event` (null for pings and ignored events).
    pub payload: Value,
}

/// Why a delivery cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing X-GitHub-Event (or X-Gitea-Event) header")]
    NoEvent,
    #[error("the form-encoded delivery has no 'payload' field")]
    NoFormPayload,
    #[error("the payload is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the {event} payload has no '{field}'")]
    Missing { event: String, field: String },
    #[error("the push payload needs a full 'ref' and a 40-digit 'after'")]
    BadPush,
    #[error("pull_request.head.sha is not a 40-digit commit id")]
    BadPullRequestSha,
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The delivery's JSON: the body, or its `payload` field when GitHub sends the
/// form content type (`application/x-www-form-urlencoded`).
fn payload_of(content_type: Option<&str>, body: &[u8]) -> Result<Value, WebhookError> {
    let form =
        content_type.is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if form {
        let payload = form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned())
            .ok_or(WebhookError::NoFormPayload)?;
        serde_json::from_str(&payload).map_err(WebhookError::Json)
    } else {
        serde_json::from_slice(body).map_err(WebhookError::Json)
    }
}

/// Reads a delivery whose signature was checked: `event` is the `X-GitHub-Event`
/// (or Gitea's) header, `content_type` the `Content-Type`.
pub fn parse(event: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Result<Delivery, WebhookError> {
    let event = event.ok_or(WebhookError::NoEvent)?.to_string();
    if event != "push" && event != "pull_request" {
        let kind = if event == "ping" { Kind::Ping } else { Kind::Ignored };
        return Ok(Delivery { event, actor: "webhook".into(), kind, payload: Value::Null });
    }
    let payload = payload_of(content_type, body)?;
    let field = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str).map(str::to_string);
    let need = |pointer: &str| {
        field(pointer).ok_or_else(|| WebhookError::Missing { event: event.clone(), field: pointer[1..].to_string() })
    };
    let actor = field("/sender/login").or_else(|| field("/pusher/name")).unwrap_or_else(|| "webhook".into());
    let kind = if event == "push" {
        let git_ref = need("/ref")?;
        let after = need("/after")?;
        if !git_ref.starts_with("refs/") || !is_sha(&after) {
            return Err(WebhookError::BadPush);
        }
        if after == ZERO_SHA || payload.get("deleted").and_then(Value::as_bool) == Some(true) {
            Kind::Deleted { git_ref }
        } else {
            // `before == after` (a push that moved nothing, or a re-push): the head commit alone.
            let before = field("/before").filter(|b| b != ZERO_SHA && is_sha(b) && *b != after);
            Kind::Push { git_ref, after, before }
        }
    } else {
        let number = payload
            .pointer("/number")
            .and_then(Value::as_i64)
            .ok_or_else(|| WebhookError::Missing { event: event.clone(), field: "number".into() })?;
        let head_sha = need("/pull_request/head/sha")?;
        need("/pull_request/base/ref")?;
        if !is_sha(&head_sha) {
            return Err(WebhookError::BadPullRequestSha);
        }
        Kind::PullRequest { number, head_sha }
    };
    Ok(Delivery { event, actor, kind, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn a_push_a_deletion_and_a_form_encoded_delivery_read_as_github_sends_them() {
        let body = format!(r#"{{"ref":"refs/heads/main","before":"{A}","after":"{B}","sender":{{"login":"ada"}}}}"#);
        let d = parse(Some("push"), Some("application/json"), body.as_bytes()).unwrap();
        assert_eq!(d.actor, "ada");
        assert_eq!(d.kind, Kind::Push { git_ref: "refs/heads/main".into(), after: B.into(), before: Some(A.into()) });
        let gone = format!(r#"{{"ref":"refs/heads/x","after":"{ZERO_SHA}"}}"#);
        assert_eq!(
            parse(Some("push"), None, gone.as_bytes()).unwrap().kind,
            Kind::Deleted { git_ref: "refs/heads/x".into() }
        );
        let form = format!("payload={}", form_urlencoded::byte_serialize(body.as_bytes()).collect::<String>());
        let d = parse(Some("push"), Some("application/x-www-form-urlencoded"), form.as_bytes()).unwrap();
        assert!(matches!(d.kind, Kind::Push { .. }));
    }

    #[test]
    fn bad_deliveries_say_what_is_wrong() {
        assert!(matches!(parse(None, None, b"{}"), Err(WebhookError::NoEvent)));
        assert_eq!(parse(Some("push"), None, b"{}").unwrap_err().to_string(), "the push payload has no 'ref'");
        let short = r#"{"ref":"refs/heads/main","after":"abc"}"#;
        assert!(matches!(parse(Some("push"), None, short.as_bytes()), Err(WebhookError::BadPush)));
        assert!(matches!(parse(Some("push"), None, b"not json"), Err(WebhookError::Json(_))));
        assert_eq!(parse(Some("issues"), None, b"").unwrap().kind, Kind::Ignored);
    }

    #[test]
    fn a_signature_matches_only_under_its_secret() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"body");
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_matches(b"s3cret", b"body", &good));
        assert!(!signature_matches(b"other", b"body", &good));
        assert!(!signature_matches(b"s3cret", b"body!", &good));
        assert!(!signature_matches(b"s3cret", b"body", "sha1=00"));
    }
}
