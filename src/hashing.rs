//! Argon2id for requests on a bounded pool: at most `concurrency` hashes or
//! verifications at once (each takes ~19 MiB and tens of milliseconds of a
//! core), at most `queue` more waiting; beyond that the request is refused
//! with 429 + Retry-After, so a flood of logins costs bounded memory and
//! cannot starve the node. The work runs on the blocking pool, never on an
//! async worker thread.

use crate::error::ApiError;
use actix_web::web;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct HashPool {
    permits: Arc<Semaphore>,
    pub concurrency: usize,
    queue: usize,
    waiting: AtomicUsize,
    /// Hashes and verifications run (for `/metrics`).
    pub done: AtomicU64,
    /// Requests refused because the pool and its queue were full.
    pub refused: AtomicU64,
}

/// Decrements the waiting count however the wait ends (also when the
/// request is dropped while waiting).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashPool {
    /// `concurrency` 0: one per core.
    pub fn new(concurrency: usize, queue: usize) -> HashPool {
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        HashPool {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            queue,
            waiting: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A place to run: at once, after waiting in the bounded queue, or 429.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let ahead = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _w = Waiting(&self.waiting);
        if ahead >= self.queue {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                waiting = ahead,
                "password check refused: the Argon2 pool and its queue are full"
            );
            return Err(ApiError::too_many(
                "the server is busy checking passwords; try again in a moment",
                1,
            ));
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(ApiError::internal)
    }

    /// Runs `f` on the blocking pool once admitted. The permit moves into
    /// the job, so a request dropped meanwhile does not free its place
    /// before the work is done.
    async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = self.permit().await?;
        let out = web::block(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(ApiError::internal)?;
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Verifies `password` against `hash` (None: spends the same time, false).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        self.run(move || crate::auth::verify_password_blocking(&password, hash.as_deref()))
            .await
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || crate::auth::hash_password_blocking(&password))
            .await?
            .map_err(ApiError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix_web::test]
    async fn beyond_the_pool_and_its_queue_requests_are_refused_with_retry_after() {
        let pool = Arc::new(HashPool::new(1, 1));
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        // One runs (blocked until told to finish)…
        let running = {
            let pool = pool.clone();
            actix_web::rt::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = go_rx.recv();
                })
                .await
            })
        };
        started_rx.await.expect("started");
        // …one waits…
        let waiting = {
            let pool = pool.clone();
            actix_web::rt::spawn(async move { pool.run(|| 7).await })
        };
        while pool.waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // …and the next is refused at once.
        let e = pool.run(|| 0).await.expect_err("full");
        assert_eq!(e.status, actix_web::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(pool.refused.load(Ordering::Relaxed), 1);
        go_tx.send(()).expect("finish");
        running.await.expect("join").expect("ran");
        assert_eq!(waiting.await.expect("join").expect("ran after waiting"), 7);
        assert_eq!(pool.waiting(), 0);
        assert_eq!(pool.done.load(Ordering::Relaxed), 2);
    }
}
