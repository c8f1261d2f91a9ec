//! API errors: a status and a message the client can act on; causes are logged, never leaked.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to an API client as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Set when a permission check refused the request: who was refused. The
    /// answer then carries a [`Denial`] that the audit layer records.
    pub denied: Option<String>,
}

/// A refusal by a permission check, carried on the response to the audit layer.
#[derive(Debug, Clone)]
pub struct Denial {
    pub actor: String,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), denied: None }
    }

    /// A refusal by a permission check (401, 403, or a 404 hiding what `actor`
    /// may not see), recorded in the audit log.
    pub fn denied(status: StatusCode, actor: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), denied: Some(actor.into()) }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// An internal failure: logged with its cause, answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the server log")
    }
}

impl From<mobius_store::StoreError> for ApiError {
    fn from(e: mobius_store::StoreError) -> Self {
        match e {
            mobius_store::StoreError::Conflict(m) => ApiError::conflict(m),
            other => ApiError::internal(other),
        }
    }
}

impl From<mobius_ci::TriggerError> for ApiError {
    fn from(e: mobius_ci::TriggerError) -> Self {
        match e {
            mobius_ci::TriggerError::NotFound(m) => ApiError::not_found(m),
            mobius_ci::TriggerError::Invalid(m) => ApiError::unprocessable(m),
            mobius_ci::TriggerError::Store(e) => e.into(),
            mobius_ci::TriggerError::Git(e) => ApiError::unprocessable(e.to_string()),
            mobius_ci::TriggerError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<mobius_deploy::stage::DeployError> for ApiError {
    fn from(e: mobius_deploy::stage::DeployError) -> Self {
        use mobius_deploy::stage::DeployError;
        match e {
            DeployError::NotFound(m) => ApiError::not_found(m),
            DeployError::Invalid(m) => ApiError::unprocessable(m),
            DeployError::Conflict(m) => ApiError::conflict(m),
            DeployError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            DeployError::Store(e) => e.into(),
            e @ (DeployError::Agent(_) | DeployError::Materialize(_)) => ApiError::internal(e.to_string()),
            DeployError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let denial = self.denied.map(|actor| Denial { actor, reason: self.message.clone() });
        let mut response = (self.status, Json(serde_json::json!({"error": self.message}))).into_response();
        if let Some(denial) = denial {
            response.extensions_mut().insert(denial);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
