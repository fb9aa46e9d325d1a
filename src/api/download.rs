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
    // Streamed from disk in chunks: a download costs a buffer, not the binary.
    let f = tokio::fs::File::open(&file)
        .await
        .map_err(ApiError::internal)?;
    let len = f.metadata().await.map_err(ApiError::internal)?.len();
    let body = actix_web::body::SizedStream::new(len, chunks(f, len));
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"emqxee-agent-linux-{arch}\""),
        ))
        .body(body))
}

const CHUNK: usize = 64 * 1024;

/// The file's first `len` bytes as a stream of chunks. A file that shrinks
/// meanwhile ends the stream with an error (the client sees a short body
/// against its Content-Length), never a wrong length.
fn chunks(
    f: tokio::fs::File,
    len: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold((f, len), |(mut f, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        let mut buf = vec![0u8; want];
        match f.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the agent binary got shorter while it was sent",
                )),
                (f, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    #[actix_web::test]
    async fn the_file_streams_in_chunks_and_a_shrunk_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("agent");
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let f = tokio::fs::File::open(&path).await.expect("open");
        let parts: Vec<_> = super::chunks(f, data.len() as u64).collect().await;
        assert_eq!(parts.len(), 3, "64 KiB chunks");
        let got: Vec<u8> = parts
            .into_iter()
            .flat_map(|p| p.expect("chunk").to_vec())
            .collect();
        assert_eq!(got, data);
        // Announced longer than it is: the stream fails rather than end short.
        let f = tokio::fs::File::open(&path).await.expect("open");
        let parts: Vec<_> = super::chunks(f, data.len() as u64 + 10).collect().await;
        assert!(parts.last().expect("some").is_err());
    }
}
