//! Bearer tokens and roles. A token is 256 random bits shown once; the store keeps its
//! SHA-256. A token's role holds on every project, or on one project only.

use crate::app::App;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// What a token may do, each role including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read projects, runs, logs, artifacts and test reports.
    Viewer,
    /// Also dispatch, cancel and re-run.
    Developer,
    /// Also set secrets and variables.
    Maintainer,
    /// Also add projects, manage tokens and read the audit log.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "developer" => Some(Role::Developer),
            "maintainer" => Some(Role::Maintainer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

/// A new token: `mbx_` and 64 hex digits.
pub fn new_token() -> Result<String, mobius_store::crypto::KeyError> {
    Ok(format!("mbx_{}", hex::encode(mobius_store::crypto::random_bytes::<32>()?)))
}

/// How a token is stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
    /// The only project the token applies to, if scoped.
    pub project_id: Option<i64>,
    pub remote: String,
}

impl Caller {
    /// Who the audit log names.
    pub fn actor(&self) -> String {
        format!("token:{}:{}", self.token_id, self.name)
    }

    /// Requires `role` on every project (global operations).
    pub fn require_global(&self, role: Role) -> Result<(), ApiError> {
        if self.project_id.is_some() || self.role < role {
            return Err(forbidden(self, role, "the server"));
        }
        Ok(())
    }

    /// Requires `role` on this project.
    pub fn require(&self, role: Role, project_id: i64, project: &str) -> Result<(), ApiError> {
        if self.project_id.is_some_and(|p| p != project_id) {
            return Err(ApiError::denied(
                StatusCode::FORBIDDEN,
                self.actor(),
                format!("this token does not apply to project '{project}'"),
            ));
        }
        if self.role < role {
            return Err(forbidden(self, role, &format!("project '{project}'")));
        }
        Ok(())
    }

    /// Whether the caller may read this project.
    /// Whether `require(role, project_id, ..)` would let this caller through: the UI
    /// shows a button only to those who may use it.
    pub fn may(&self, role: Role, project_id: i64) -> bool {
        self.sees(project_id) && self.role >= role
    }

    /// Whether `require_global(role)` would let this caller through.
    pub fn may_globally(&self, role: Role) -> bool {
        self.project_id.is_none() && self.role >= role
    }

    pub fn sees(&self, project_id: i64) -> bool {
        self.project_id.is_none_or(|p| p == project_id)
    }
}

fn forbidden(caller: &Caller, role: Role, what: &str) -> ApiError {
    ApiError::denied(StatusCode::FORBIDDEN, caller.actor(), format!("this needs the {} role on {what}", role.as_str()))
}

impl Caller {
    /// The caller a token stands for; `None` when it is unknown, expired or revoked.
    pub async fn from_token(app: &App, token: &str, remote: String) -> Result<Option<Caller>, ApiError> {
        let Some(found) = app.store.token_by_hash(&hash_token(token)).await? else { return Ok(None) };
        let role = Role::parse(&found.role)
            .ok_or_else(|| ApiError::internal(format!("token {} has role {}", found.id, found.role)))?;
        Ok(Some(Caller { token_id: found.id, name: found.name, role, project_id: found.project_id, remote }))
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let remote = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            // The UI's cookie authenticates reads only, so another site cannot make a
            // signed-in browser change anything (no CSRF through the cookie).
            .or_else(|| if parts.method.is_safe() { cookie_token(&parts.headers) } else { None });
        let Some(token) = token else {
            return Err(ApiError::denied(
                StatusCode::UNAUTHORIZED,
                "anonymous",
                "missing bearer token (Authorization: Bearer TOKEN)",
            ));
        };
        Caller::from_token(app, token, remote).await?.ok_or_else(|| {
            ApiError::denied(StatusCode::UNAUTHORIZED, "unknown token", "invalid, expired or revoked token")
        })
    }
}

/// The web UI keeps the token in a cookie (`mobius_token`), set when signing in.
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("mobius_token="))
}
