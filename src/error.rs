//! One error type for the HTTP layer, mapped once to `{code, message}` JSON.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use ecp_actors::msg::ClusterError;
use ecp_actors::store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `NOT_FOUND`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", m)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }
    pub fn conflict(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, m)
    }
    pub fn gone(m: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "CLUSTER_DELETED", m)
    }
    pub fn unprocessable(code: &'static str, m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, m)
    }
    pub fn too_many(m: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", m);
        e.retry_after = Some(retry_after_secs);
        e
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", m)
    }
    pub fn internal(m: impl std::fmt::Display) -> Self {
        tracing::error!(error = %m, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; see the server log",
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after {
            r.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        r.json(ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NameTaken(name) => ApiError::conflict(
                "NAME_TAKEN",
                format!("a cluster named {name:?} already exists in this project"),
            ),
            StoreError::NotFound => ApiError::not_found("record"),
            // The registration route words these for its caller's tenant;
            // anywhere else they name no cluster.
            StoreError::NodeTaken { .. } => ApiError::conflict(
                "NODE_ALREADY_MANAGED",
                "this EMQX node is already managed by another cluster",
            ),
            StoreError::InstanceTaken { .. } => ApiError::conflict(
                "AGENT_REGISTERED_ELSEWHERE",
                "this agent is registered with another cluster",
            ),
            StoreError::Exists => ApiError::conflict("EXISTS", "already exists"),
            StoreError::RevisionConflict { .. } => {
                ApiError::conflict("CONFLICT", "the record changed concurrently; retry")
            }
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                ApiError::unavailable("the store is unavailable; retry later")
            }
            StoreError::Corrupt(m) => ApiError::internal(format!("corrupt record: {m}")),
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NameTaken(name) => ApiError::conflict(
                "NAME_TAKEN",
                format!("a cluster named {name:?} already exists in this project"),
            ),
            ClusterError::Deleting => ApiError::gone("cluster was deleted"),
            ClusterError::NotFound => ApiError::not_found("cluster"),
            ClusterError::Moving | ClusterError::Timeout | ClusterError::Busy => {
                let mut a = ApiError::unavailable(e.to_string());
                a.retry_after = Some(1);
                a
            }
            ClusterError::Store(m) => {
                tracing::error!(error = %m, "store unavailable");
                let mut a = ApiError::unavailable("the store is unavailable; retry later");
                a.retry_after = Some(1);
                a
            }
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::unavailable("the cluster is restarting; retry in a moment")
    }
}

/// JSON and query extractor errors as `{code, message}`: 413 for oversize bodies.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let e = match &err {
        J::OverflowKnownLength { length, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body of {length} bytes exceeds the limit of {limit} bytes"),
        ),
        J::Overflow { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds the limit of {limit} bytes"),
        ),
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as application/json",
        ),
        J::Deserialize(d) => ApiError::bad_request("BAD_JSON", format!("invalid JSON body: {d}")),
        other => ApiError::bad_request("BAD_JSON", format!("invalid JSON body: {other}")),
    };
    e.into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError) -> actix_web::Error {
    ApiError::bad_request("BAD_QUERY", format!("invalid query string: {err}")).into()
}

pub fn path_error(err: actix_web::error::PathError) -> actix_web::Error {
    ApiError::bad_request("BAD_PATH", format!("invalid path: {err}")).into()
}
