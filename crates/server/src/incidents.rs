//! The server as the incidents stage's host (`mobius_incidents::Host`): its store,
//! alert manager, on-call configuration and clock, and the signed links that
//! acknowledge an incident without a token (the master key seals them).

use crate::app::App;
use crate::error::ApiError;
use axum::http::StatusCode;
use base64::Engine as _;
use mobius_alerting::oncall::OnCallConfig;
use mobius_alerting::AlertManager;
use mobius_core::{Clock, SystemClock};
use mobius_incidents::{ChangeError, IncidentStore};
use std::sync::Arc;

const ACK_CONTEXT: &str = "incident-ack";

impl mobius_incidents::Host for App {
    fn store(&self) -> &dyn IncidentStore {
        &self.store
    }
    fn alerts(&self) -> Option<Arc<AlertManager>> {
        self.monitor.alerts.clone()
    }
    fn oncall(&self) -> Arc<OnCallConfig> {
        Arc::clone(&self.monitor.oncall.lock())
    }
    fn ack_link(&self, incident: i64, person: &str) -> Option<String> {
        ack_link(self, incident, person)
    }
    fn clock(&self) -> &dyn Clock {
        &SystemClock
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> ApiError {
        match e {
            ChangeError::NotFound(_) => ApiError::not_found(e.to_string()),
            ChangeError::NotOpen { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            ChangeError::Store(e) => e.into(),
        }
    }
}

/// The signed link that acknowledges `incident` on behalf of `person`, valid without
/// a token (the master key seals it).
pub fn ack_link(app: &App, incident: i64, person: &str) -> Option<String> {
    let sealed = app.key.seal(ACK_CONTEXT, format!("{incident}:{person}").as_bytes()).ok()?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
    let base = app.config.external_url.clone().unwrap_or_else(|| format!("http://{}", app.config.listen));
    Some(format!("{}/ack/{token}", base.trim_end_matches('/')))
}

/// The incident and person a link's token names, when the master key sealed it.
pub fn read_ack_token(app: &App, token: &str) -> Option<(i64, String)> {
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let plain = app.key.open(ACK_CONTEXT, &sealed).ok()?;
    let text = String::from_utf8(plain).ok()?;
    let (id, person) = text.split_once(':')?;
    Some((id.parse().ok()?, person.to_string()))
}
