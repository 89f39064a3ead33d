//! Alerts (art. 14(3); docs/JSON.md, `AlertDelivery`): suspicious events —
//! tampering found, a chunk no replica could repair, a member lost, a key
//! release refused, a witness that disagrees — go to the log at once and, when
//! `node.toml` has `[alerts] webhook`, to that URL as one JSON POST each.
//!
//! Each event has a stable id (a hash of what it says); a node sends an id at
//! most once per process, and retries a delivery that failed (any answer but
//! 2xx, or none) with growing pauses, for at most [`RETRY_FOR`]. Nothing waits
//! for it: `raise` queues and returns, and a full queue drops the oldest
//! undelivered alert (logged). What the node knows of deliveries is in
//! `cluster status`.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::PlainHttp;
use crate::wire::{Alert, AlertDelivery, AlertsStatus};

/// Alerts waiting for delivery, at most.
const QUEUE: usize = 1024;
/// Event ids remembered, to send each once (the oldest forgotten first).
const REMEMBERED: usize = 4096;
/// A delivery is given up after this long.
const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Inner {
    queue: VecDeque<(AlertDelivery, Instant)>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    delivered: u64,
    dropped: u64,
    last_error: Option<String>,
    last_error_ms: Option<u64>,
}

/// The node's alerts: the log always, the webhook when configured.
pub struct Alerts {
    cluster_id: String,
    node: u64,
    webhook: Option<String>,
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
}

/// The id of an alert: hex of the first 16 bytes of SHA-256 over its JSON.
pub fn event_id<T: Serialize>(alert: &T) -> String {
    let bytes = serde_json::to_vec(alert).unwrap_or_default();
    hex::encode(&crate::crypto::sha256(&bytes)[..16])
}

impl Alerts {
    pub fn new(cluster_id: String, node: u64, webhook: Option<String>) -> Self {
        Alerts { cluster_id, node, webhook, inner: Mutex::new(Inner::default()), wake: tokio::sync::Notify::new() }
    }

    /// Logs `alert` and queues it for the webhook, once per event id. Never waits.
    pub fn raise(&self, alert: Alert) {
        let id = event_id(&alert);
        let Ok(mut inner) = self.inner.lock() else { return };
        if !inner.seen.insert(id.clone()) {
            return;
        }
        inner.seen_order.push_back(id.clone());
        if inner.seen_order.len() > REMEMBERED {
            if let Some(old) = inner.seen_order.pop_front() {
                inner.seen.remove(&old);
            }
        }
        tracing::error!(alert = %serde_json::to_string(&alert).unwrap_or_default(), id = %id, "ALERT");
        if self.webhook.is_none() {
            return;
        }
        let d = AlertDelivery { cluster_id: self.cluster_id.clone(), node: self.node, id, at: crate::wire::rfc3339_ms(super::now_ms()), alert };
        if inner.queue.len() >= QUEUE {
            if let Some((old, _)) = inner.queue.pop_front() {
                inner.dropped += 1;
                tracing::error!(id = %old.id, "the alert queue is full: the oldest undelivered alert is dropped");
            }
        }
        inner.queue.push_back((d, Instant::now()));
        drop(inner);
        self.wake.notify_one();
    }

    /// The webhook as `cluster status` shows it; `None` without one.
    pub fn status(&self) -> Option<AlertsStatus> {
        let webhook = self.webhook.clone()?;
        let inner = self.inner.lock().ok()?;
        Some(AlertsStatus {
            webhook,
            delivered: inner.delivered,
            pending: inner.queue.len() as u64,
            dropped: inner.dropped,
            last_error: inner.last_error.clone(),
            last_error_at: inner.last_error_ms.map(crate::wire::rfc3339_ms),
        })
    }

    /// Delivers queued alerts in order until the process ends.
    pub async fn deliver_loop(&self) {
        let Some(url) = self.webhook.clone() else { return };
        let http = PlainHttp::new();
        let mut pause = Duration::from_secs(1);
        loop {
            let next = self.inner.lock().ok().and_then(|i| i.queue.front().cloned());
            let Some((d, queued)) = next else {
                self.wake.notified().await;
                continue;
            };
            let body = serde_json::to_vec(&d).unwrap_or_default();
            let r = http.post(&url, "application/json", body, 64 * 1024, ATTEMPT_TIMEOUT).await;
            let failed = match r {
                Ok((status, _)) if status.is_success() => None,
                Ok((status, _)) => Some(format!("the webhook answered HTTP {}", status.as_u16())),
                Err(e) => Some(e.to_string()),
            };
            let delivered = {
                let Ok(mut inner) = self.inner.lock() else { return };
                match failed {
                    None => {
                        if inner.queue.front().is_some_and(|(f, _)| f.id == d.id) {
                            inner.queue.pop_front();
                        }
                        inner.delivered += 1;
                        inner.last_error = None;
                        inner.last_error_ms = None;
                        true
                    }
                    Some(why) => {
                        tracing::warn!(webhook = %url, id = %d.id, error = %why, "an alert was not delivered; it will be retried");
                        inner.last_error = Some(why);
                        inner.last_error_ms = Some(super::now_ms());
                        if queued.elapsed() > RETRY_FOR && inner.queue.front().is_some_and(|(f, _)| f.id == d.id) {
                            inner.queue.pop_front();
                            inner.dropped += 1;
                            tracing::error!(id = %d.id, "an alert could not be delivered for a day: given up");
                        }
                        false
                    }
                }
            };
            if delivered {
                pause = Duration::from_secs(1);
                continue;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// On the leader: raises `MemberUnreachable` for a member that has not
/// answered its health check for `after`, once per outage.
pub async fn watch_members(node: std::sync::Arc<super::Node>, after: Duration) {
    let mut down_since: std::collections::BTreeMap<u64, (Instant, u64)> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !node.is_leader() {
            down_since.clear();
            continue;
        }
        for (id, addr, _) in node.members() {
            if id == node.id() {
                continue;
            }
            let ok = node
                .call_member::<(), crate::wire::NodeHealth>(id, &addr, hyper::Method::GET, "/internal/health", None, Duration::from_millis(1500))
                .await
                .is_ok();
            if ok {
                down_since.remove(&id);
                continue;
            }
            let (since, since_ms) = *down_since.entry(id).or_insert((Instant::now(), super::now_ms()));
            if since.elapsed() >= after {
                node.alerts.raise(Alert::MemberUnreachable { node: id, since: crate::wire::rfc3339_ms(since_ms) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_queued_once_and_another_is_not_mistaken_for_it() {
        let a = Alerts::new("c".into(), 1, Some("http://127.0.0.1:1/".into()));
        let lost = |since: &str| Alert::MemberUnreachable { node: 3, since: since.into() };
        a.raise(lost("2026-12-05T00:00:00Z"));
        a.raise(lost("2026-12-05T00:00:00Z"));
        assert_eq!(a.status().unwrap().pending, 1, "the same event twice is one delivery");
        a.raise(lost("2026-12-05T01:00:00Z"));
        assert_eq!(a.status().unwrap().pending, 2, "a new outage is a new event");
        assert_ne!(event_id(&lost("a")), event_id(&lost("b")));
        // Without a webhook, alerts are only logged.
        let quiet = Alerts::new("c".into(), 1, None);
        quiet.raise(lost("x"));
        assert!(quiet.status().is_none());
    }
}
