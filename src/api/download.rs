//! `GET /dl/emqx/agents/binaries/emqxee-agent-linux-{arch}`: the agent
//! binary the registration guide's `curl` command downloads.

use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpResponse};
use std::path::PathBuf;

const ARCHES: [&str; 3] = ["amd64", "arm", "arm64"];

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// Where binaries are looked for: `cluster.agent.binaries_dir`, else the
/// directory of the running `ecp` executable.
fn binaries_dir(state: &AppState) -> Option<PathBuf> {
    let configured = &state.config.cluster.agent.binaries_dir;
    if !configured.is_empty() {
        return Some(PathBuf::from(configured));
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
}

/// Download the agent for one architecture.
#[utoipa::path(get, path = "/dl/emqx/agents/binaries/emqxee-agent-linux-{arch}", tag = "agents",
    params(("arch" = String, Path, description = "amd64, arm or arm64")),
    responses((status = 200, content_type = "application/octet-stream"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn agent_binary(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let arch = path.into_inner();
    if !ARCHES.contains(&arch.as_str()) {
        return Err(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("there is no agent for {arch:?}; choose amd64, arm or arm64"),
        ));
    }
    let dir = binaries_dir(&state).ok_or_else(|| ApiError::internal("no binaries directory"))?;
    let mut candidates = vec![dir.join(format!("emqxee-agent-linux-{arch}"))];
    if arch == host_arch() {
        candidates.push(dir.join("emqxee-agent"));
    }
    let found = candidates.into_iter().find(|p| p.is_file());
    let Some(file) = found else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "AGENT_NOT_BUILT",
            format!("the agent for linux-{arch} was not built for this ECP installation; put emqxee-agent-linux-{arch} into {}", dir.display()),
        ));
    };
    let bytes = web::block(move || std::fs::read(file))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"emqxee-agent-linux-{arch}\""),
        ))
        .body(bytes))
}
