//! The delivery worker: one per node. It sleeps until the actors (or the
//! Test button) poke `Deps.wake_deliveries`, or a poll tick, then claims the
//! deliveries due (`AlertStore::claim_deliveries`: a claim is a lease, so in
//! Redis mode no two nodes send the same one, and a node that dies mid-send
//! leaves it to another after `alerts.delivery_lease_secs`), sends at most
//! `alerts.delivery_concurrency` at once, and stores each outcome.
//!
//! Storm control, on a notification's first attempt: the channel's window
//! count (`count_notification`, shared by all nodes) over its
//! `maxPerMinute` makes it `suppressed`; the one claimer that sees the count
//! at exactly max + 1 queues the window's single `summary`, due at the
//! window's end, under an id made from the channel and the window. When the
//! summary is sent, the count says how many were held back.

pub mod email;
pub mod webhook;

use ecp_actors::alerting::*;
use ecp_actors::model::{now_ms, Millis};
use ecp_actors::Deps;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

use crate::config::AlertsConfig;

/// How often the worker looks for due deliveries without being poked
/// (retries and summaries become due by time alone).
pub const POLL: Duration = Duration::from_secs(1);
/// `last_error` is at most this long.
const ERROR_MAX: usize = 300;

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Worth another attempt (timeouts, 408, 429, 5xx, SMTP 4xx, network).
    Retry,
    /// Never going to work as it is (other 4xx, a redirect, SMTP 5xx).
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: Outcome,
    /// The receiver's HTTP status or SMTP reply code.
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn delivered(status: Option<u16>) -> Attempt {
        Attempt {
            outcome: Outcome::Delivered,
            status,
            error: None,
        }
    }
    pub fn retry(status: Option<u16>, error: impl Into<String>) -> Attempt {
        Attempt {
            outcome: Outcome::Retry,
            status,
            error: Some(bounded(&error.into())),
        }
    }
    pub fn failed(status: Option<u16>, error: impl Into<String>) -> Attempt {
        Attempt {
            outcome: Outcome::Fail,
            status,
            error: Some(bounded(&error.into())),
        }
    }
}

/// Text for `last_error`: one line, bounded.
pub fn bounded(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_MAX)
        .collect()
}

/// A delivery's state after an attempt at `now`: delivered, failed, or
/// pending again after [`retry_after`] (failed once attempts run out).
pub fn apply(d: &mut Delivery, a: &Attempt, now: Millis) {
    d.attempts = d.attempts.saturating_add(1);
    d.last_status = a.status;
    d.last_error = a.error.clone();
    let outcome = match a.outcome {
        Outcome::Retry => match retry_after(d.attempts) {
            Some(wait) => {
                d.state = DeliveryState::Pending;
                d.next_at = now.saturating_add(wait);
                return;
            }
            None => Outcome::Fail,
        },
        o => o,
    };
    d.state = if outcome == Outcome::Delivered {
        DeliveryState::Delivered
    } else {
        DeliveryState::Failed
    };
    d.finished_at = Some(now);
}

/// A notification queued for a channel, due now.
pub fn queued(channel: &ChannelRecord, notice: Notice, now: Millis) -> Delivery {
    Delivery {
        id: uuid::Uuid::new_v4().simple().to_string(),
        channel_id: channel.id.clone(),
        project_id: channel.project_id.clone(),
        notice,
        state: DeliveryState::Pending,
        attempts: 0,
        next_at: now,
        created_at: now,
        finished_at: None,
        last_status: None,
        last_error: None,
    }
}

/// What the channel's Test button sends.
pub fn test_notice(channel: &ChannelRecord, now: Millis) -> Notice {
    Notice {
        kind: NoticeKind::Test,
        alert_id: None,
        cluster_id: String::new(),
        cluster: String::new(),
        rule: String::new(),
        severity: Severity::Info,
        status: "test".into(),
        message: format!(
            "Test notification from ECP for channel {:?}: if you read this, the channel works.",
            channel.name
        ),
        started_at: now,
        resolved_at: None,
    }
}

/// The id of a channel's summary for a window: the same on every node.
pub fn summary_id(channel_id: &str, window: Millis) -> String {
    let h = Sha256::digest(format!("summary\0{channel_id}\0{window}").as_bytes());
    hex::encode(&h[..16])
}

/// The summary of a window, queued by the claimer that held back its
/// first notification; due when the window ends. Its message is written
/// when it is sent (then the count is known).
pub fn summary(channel: &ChannelRecord, window: Millis, window_ms: Millis) -> Delivery {
    let end = window.saturating_add(window_ms);
    Delivery {
        id: summary_id(&channel.id, window),
        channel_id: channel.id.clone(),
        project_id: channel.project_id.clone(),
        notice: Notice {
            kind: NoticeKind::Summary,
            alert_id: None,
            cluster_id: String::new(),
            cluster: String::new(),
            rule: String::new(),
            severity: Severity::Warning,
            status: "summary".into(),
            message: String::new(),
            started_at: window,
            resolved_at: None,
        },
        state: DeliveryState::Pending,
        attempts: 0,
        next_at: end,
        created_at: now_ms(),
        finished_at: None,
        last_status: None,
        last_error: None,
    }
}

/// The summary's text. `counted` is the window's count after the summary
/// itself was counted once more (so it holds every notification of the
/// window, plus one).
pub fn summary_message(counted: u32, max: u32, window: Millis, window_ms: Millis) -> String {
    let held = counted.saturating_sub(1).saturating_sub(max);
    let (from, to) = (
        crate::api::views::rfc3339(window),
        crate::api::views::rfc3339(window.saturating_add(window_ms)),
    );
    if held == 0 {
        format!("storm control held back notifications from {from} to {to} (how many is no longer known)")
    } else {
        format!(
            "storm control held back {held} notification{} from {from} to {to} (at most {max} per {} s)",
            if held == 1 { "" } else { "s" },
            window_ms / 1000
        )
    }
}

/// The running worker, to stop on shutdown.
pub struct Running {
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl Running {
    /// Claims nothing more and waits (at most `patience`) for the
    /// deliveries under way; those not finished are retried by a node after
    /// their lease.
    pub async fn stop(&self, patience: Duration) {
        self.stop.send_replace(true);
        let mut done = self.done.clone();
        let _ = tokio::time::timeout(patience, done.wait_for(|d| *d)).await;
    }
}

struct Worker {
    deps: Arc<Deps>,
    cfg: AlertsConfig,
    http: reqwest::Client,
}

impl Worker {
    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.cfg.delivery_timeout_secs.max(1)))
    }
    fn window_ms(&self) -> Millis {
        u64::from(self.cfg.storm_window_secs.max(1)) * 1000
    }
}

/// Starts the node's worker (once, in `serve`).
pub fn spawn(deps: Arc<Deps>, cfg: AlertsConfig) -> Running {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let http = webhook::client(Duration::from_secs(u64::from(
        cfg.delivery_timeout_secs.max(1),
    )));
    let w = Arc::new(Worker { deps, cfg, http });
    actix_web::rt::spawn(run(w, stop_rx, done_tx));
    Running {
        stop: stop_tx,
        done: done_rx,
    }
}

async fn run(w: Arc<Worker>, mut stop: watch::Receiver<bool>, done: watch::Sender<bool>) {
    let limit = w.cfg.delivery_concurrency.clamp(1, 1024) as usize;
    let lease = u64::from(w.cfg.delivery_lease_secs.max(1)) * 1000;
    let slots = Arc::new(Semaphore::new(limit));
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warned: Option<std::time::Instant> = None;
    let mut watching = true;
    tracing::info!(
        concurrency = limit,
        lease_secs = lease / 1000,
        "notification delivery started"
    );
    while !*stop.borrow() {
        let free = slots.available_permits();
        if free > 0 {
            match w.deps.store.claim_deliveries(now_ms(), lease, free).await {
                Ok(batch) => {
                    for d in batch {
                        // Only this loop takes slots: `free` are there.
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let w = w.clone();
                        actix_web::rt::spawn(async move {
                            w.deliver(d).await;
                            drop(slot);
                            // A slot is free: look again at once.
                            w.deps.wake_deliveries.notify_one();
                        });
                    }
                }
                Err(e) => {
                    // Once a minute at most: a store outage is loud enough.
                    if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        tracing::warn!(error = %e, "claiming notifications failed; retrying");
                        last_warned = Some(std::time::Instant::now());
                    }
                }
            }
        }
        tokio::select! {
            _ = w.deps.wake_deliveries.notified() => {}
            _ = tick.tick() => {}
            changed = stop.changed(), if watching => {
                // The handle is gone: nobody stops the worker; it runs as
                // long as the node.
                watching = changed.is_ok();
            }
        }
    }
    let _ = slots.acquire_many(limit as u32).await;
    tracing::info!("notification delivery stopped");
    done.send_replace(true);
}

impl Worker {
    async fn deliver(&self, mut d: Delivery) {
        let store = &self.deps.store;
        let channel = match store.channel(&d.channel_id).await {
            Ok(Some(c)) if c.project_id == d.project_id => c,
            Ok(_) => {
                d.state = DeliveryState::Failed;
                d.finished_at = Some(now_ms());
                d.last_error = Some("the channel was deleted".into());
                self.finish(d).await;
                return;
            }
            Err(e) => {
                // Left claimed: tried again once the lease lapses.
                tracing::warn!(delivery_id = %d.id, error = %e, "notification channel not read");
                return;
            }
        };
        if d.attempts == 0 {
            let window_ms = self.window_ms();
            if d.notice.kind == NoticeKind::Summary {
                let window = window_of(d.notice.started_at, window_ms);
                match store.count_notification(&channel.id, window).await {
                    Ok(n) => {
                        d.notice.message =
                            summary_message(n, channel.max_per_minute, window, window_ms)
                    }
                    Err(e) => return self.later(d, e).await,
                }
            } else {
                let now = now_ms();
                let window = window_of(now, window_ms);
                match store.count_notification(&channel.id, window).await {
                    Ok(n) => {
                        if let Admit::Suppress { first } = admit(n, channel.max_per_minute) {
                            return self.suppress(d, &channel, first, window, now).await;
                        }
                    }
                    Err(e) => return self.later(d, e).await,
                }
            }
        }
        let attempt = match (&channel.webhook, &channel.email) {
            (Some(w), _) if channel.kind == ChannelKind::Webhook => {
                webhook::send(&self.http, w, &d).await
            }
            (_, Some(e)) if channel.kind == ChannelKind::Email => {
                email::send(e, &d, self.timeout()).await
            }
            _ => Attempt::failed(None, "the channel has no settings for its kind"),
        };
        apply(&mut d, &attempt, now_ms());
        match d.state {
            DeliveryState::Delivered => tracing::info!(
                delivery_id = %d.id, channel_id = %d.channel_id, kind = webhook::event_name(d.notice.kind),
                attempts = d.attempts, status = ?d.last_status, "notification delivered"
            ),
            DeliveryState::Pending => tracing::info!(
                delivery_id = %d.id, channel_id = %d.channel_id, kind = webhook::event_name(d.notice.kind),
                attempts = d.attempts, status = ?d.last_status, error = ?d.last_error,
                retry_in_ms = d.next_at.saturating_sub(now_ms()), "notification attempt failed; will retry"
            ),
            _ => tracing::warn!(
                delivery_id = %d.id, channel_id = %d.channel_id, kind = webhook::event_name(d.notice.kind),
                attempts = d.attempts, status = ?d.last_status, error = ?d.last_error,
                "notification failed"
            ),
        }
        self.finish(d).await;
    }

    async fn suppress(
        &self,
        mut d: Delivery,
        channel: &ChannelRecord,
        first: bool,
        window: Millis,
        now: Millis,
    ) {
        d.state = DeliveryState::Suppressed;
        d.finished_at = Some(now);
        d.last_error = Some(format!(
            "held back by storm control (at most {} per {} s); counted in the window's summary",
            channel.max_per_minute,
            self.window_ms() / 1000
        ));
        tracing::info!(delivery_id = %d.id, channel_id = %d.channel_id, first, "notification held back by storm control");
        if first {
            let s = summary(channel, window, self.window_ms());
            if let Err(e) = self.deps.store.queue_deliveries(&[s]).await {
                tracing::warn!(channel_id = %channel.id, error = %e, "storm summary not queued");
            }
        }
        self.finish(d).await;
    }

    /// The store failed before an attempt: due again in a moment.
    async fn later(&self, mut d: Delivery, e: ecp_actors::store::StoreError) {
        tracing::warn!(delivery_id = %d.id, error = %e, "storm count failed; notification postponed");
        d.next_at = now_ms().saturating_add(POLL.as_millis() as u64);
        self.finish(d).await;
    }

    async fn finish(&self, d: Delivery) {
        match self.deps.store.finish_delivery(&d).await {
            Ok(()) => {}
            Err(ecp_actors::store::StoreError::NotFound) => {
                tracing::debug!(delivery_id = %d.id, "delivery gone (its channel or project was deleted)")
            }
            Err(e) => {
                tracing::warn!(delivery_id = %d.id, error = %e, "delivery outcome not stored; retried after its lease")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        let ch = ChannelRecord {
            id: "ch".into(),
            org_id: "o".into(),
            project_id: "p".into(),
            name: "ops".into(),
            kind: ChannelKind::Webhook,
            webhook: None,
            email: None,
            max_per_minute: 3,
            created_at: 0,
            updated_at: 0,
        };
        let n = test_notice(&ch, 5);
        queued(&ch, n, 5)
    }

    #[test]
    fn retries_back_off_then_fail() {
        let mut d = delivery();
        apply(&mut d, &Attempt::retry(Some(500), "HTTP 500"), 1_000);
        assert_eq!(
            (d.state, d.attempts, d.next_at, d.finished_at),
            (DeliveryState::Pending, 1, 2_000, None)
        );
        apply(&mut d, &Attempt::retry(Some(503), "HTTP 503"), 2_000);
        assert_eq!((d.state, d.next_at), (DeliveryState::Pending, 6_000));
        apply(&mut d, &Attempt::delivered(Some(200)), 6_000);
        assert_eq!(
            (d.state, d.attempts, d.finished_at, d.last_error.clone()),
            (DeliveryState::Delivered, 3, Some(6_000), None)
        );
        let mut d = delivery();
        for i in 0..MAX_ATTEMPTS {
            apply(&mut d, &Attempt::retry(None, "refused"), u64::from(i));
        }
        assert_eq!((d.state, d.attempts), (DeliveryState::Failed, MAX_ATTEMPTS));
        let mut d = delivery();
        apply(&mut d, &Attempt::failed(Some(400), "HTTP 400"), 9);
        assert_eq!(
            (d.state, d.attempts, d.last_status),
            (DeliveryState::Failed, 1, Some(400))
        );
    }

    #[test]
    fn one_summary_id_per_channel_and_window() {
        assert_eq!(summary_id("ch", 60_000), summary_id("ch", 60_000));
        assert_ne!(summary_id("ch", 60_000), summary_id("ch", 120_000));
        assert_ne!(summary_id("ch", 60_000), summary_id("ci", 60_000));
        assert_eq!(summary_id("ch", 0).len(), 32);
    }

    #[test]
    fn summaries_say_how_many_were_held_back() {
        // max 3, six counted, plus the summary's own count: 3 held back.
        let m = summary_message(7, 3, 60_000, 60_000);
        assert!(m.contains("held back 3 notifications"), "{m}");
        assert!(summary_message(5, 3, 0, 60_000).contains("held back 1 notification "));
        assert!(summary_message(1, 3, 0, 60_000).contains("no longer known"));
    }

    #[test]
    fn errors_are_one_bounded_line() {
        let e = bounded(&format!("a\r\nb{}", "x".repeat(1000)));
        assert!(!e.contains('\n') && e.chars().count() == ERROR_MAX);
    }
}
