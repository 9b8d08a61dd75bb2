//! `--event-receiver`: the server's outbound events, received and counted by the bench.
//!
//! Before the load the bench registers its own [`Receiver`] as a webhook endpoint subscribed to
//! `bank_payment.credited`; the load then measures intake with one subscribed endpoint. After it the bench
//! waits until every notice the server acknowledged has reached the receiver, and checks that each did (at
//! least once: repeats of one `webhook-id` are counted, not failed) and that nothing arrived the server had no
//! reason to send. The delivery rate is distinct events per second from the first to the last.

pub mod receiver;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::{Client, auth_hint};
use crate::payouts::rate_tenths;
pub use receiver::Receiver;
use receiver::{CREDITED, Counts, Matched};

/// The webhook endpoints path, relative to `--url` (admin only).
pub const ENDPOINTS_PATH: &str = "/api/v1/webhook-endpoints/";

/// How often the receiver is checked while the bench waits for deliveries.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Every how many polls the wait's progress is printed (every 10 s).
const PROGRESS_EVERY: u64 = 100;

/// The path of one endpoint, relative to `--url`.
pub fn endpoint_path(id: &str) -> String {
    format!("{ENDPOINTS_PATH}{id}/")
}

/// The registration body: the receiver's URL, subscribed to `bank_payment.credited` only.
pub fn endpoint_body(url: &str) -> Bytes {
    Bytes::from(json!({"url": url, "description": "payledger-bench", "event_types": [CREDITED]}).to_string())
}

/// Registers `url` as a webhook endpoint and returns its id.
///
/// Fails with what to do about it: a user who is not an admin, a server that refuses loopback URLs (it must
/// allow them with `PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS`), or one without outbound events at all.
pub async fn register(client: &mut Client, url: &str) -> anyhow::Result<String> {
    let response = match client.post_json(ENDPOINTS_PATH, endpoint_body(url)).await {
        Ok(response) => response,
        Err(failure) => bail!("registering the event receiver: POST {ENDPOINTS_PATH}: {failure}"),
    };
    let said = String::from_utf8_lossy(&response.body).chars().take(300).collect::<String>();
    match response.status {
        StatusCode::CREATED => {}
        StatusCode::BAD_REQUEST if names_url(&response.body) => bail!(
            "the server refused the event receiver's URL {url}: start it with \
             PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8 so it may deliver to loopback (HTTP 400: {said})"
        ),
        StatusCode::FORBIDDEN => bail!(
            "--event-receiver registers a webhook endpoint, which only an admin may: --username must be an admin \
             (POST {ENDPOINTS_PATH}: HTTP {})",
            response.status
        ),
        StatusCode::UNAUTHORIZED => bail!(
            "registering the event receiver: POST {ENDPOINTS_PATH}: HTTP {}{}",
            response.status,
            auth_hint(response.status)
        ),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            bail!("the server has no {ENDPOINTS_PATH} (HTTP {}): it predates outbound events", response.status)
        }
        status => bail!("registering the event receiver: POST {ENDPOINTS_PATH}: HTTP {status}: {said}"),
    }
    let created: Value = serde_json::from_slice(&response.body).unwrap_or_default();
    match created.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => bail!("the server registered the event receiver but answered no \"id\": {said}"),
    }
}

/// Whether a 400's body blames the `url` field (in its `details`, or anywhere in a body of another shape).
fn names_url(body: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(body) {
        Ok(error) if error.get("details").is_some_and(Value::is_object) => error["details"].get("url").is_some(),
        _ => String::from_utf8_lossy(body).contains("url"),
    }
}

/// Deletes the endpoint `id`; the error says why it is still there.
pub async fn unregister(client: &mut Client, id: &str) -> Result<(), String> {
    let path = endpoint_path(id);
    match client.delete(&path).await {
        Ok(response) if response.status.is_success() => Ok(()),
        Ok(response) => Err(format!(
            "DELETE {path}: HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).chars().take(200).collect::<String>()
        )),
        Err(failure) => Err(format!("DELETE {path}: {failure}")),
    }
}

/// What the run's events came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCheck {
    /// The endpoint the bench registered.
    pub endpoint: String,
    /// Where it pointed: the receiver.
    pub url: String,
    /// Operations the server acknowledged (200), warm-up and resends included: one event each is expected.
    pub expected: u64,
    /// Operations whose outcome stayed unknown: each may have an event or not.
    pub in_doubt: u64,
    /// The receiver's counters at the end of the wait.
    pub counts: Counts,
    /// Distinct events received by the time the load ended.
    pub at_load_end: u64,
    /// When the load ended.
    pub load_end: Option<Instant>,
    /// How the events compare with the acknowledged operations.
    pub matched: Matched,
    /// How long the bench waited for deliveries after the load (and the balance check).
    pub waited: Duration,
    /// The `--converge` limit on that wait, in seconds.
    pub patience_secs: u64,
    /// Whether Ctrl-C ended the wait before everything arrived.
    pub interrupted: bool,
    /// Why the endpoint could not be deleted at the end, if it could not.
    pub cleanup_error: Option<String>,
}

impl EventCheck {
    /// Requests beyond the distinct events: deliveries repeated (at least once allows them).
    pub fn duplicates(&self) -> u64 {
        self.counts.requests.saturating_sub(self.counts.distinct)
    }

    /// Every acknowledged operation's event arrived, and nothing else did.
    pub fn ok(&self) -> bool {
        self.matched.missing == 0 && self.matched.unexpected == 0
    }

    /// From the first distinct event to the last.
    pub fn span(&self) -> Duration {
        match (self.counts.first, self.counts.last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        }
    }

    /// From the first distinct event to the end of the load, if one arrived before it.
    pub fn during_load(&self) -> Duration {
        match (self.counts.first, self.load_end) {
            (Some(first), Some(end)) => end.saturating_duration_since(first),
            _ => Duration::ZERO,
        }
    }

    /// From the end of the load to the last distinct event, if one arrived after it.
    pub fn after_load(&self) -> Duration {
        match (self.load_end, self.counts.last) {
            (Some(end), Some(last)) => last.saturating_duration_since(end),
            _ => Duration::ZERO,
        }
    }

    /// Distinct events received after the load ended.
    pub fn delivered_after_load(&self) -> u64 {
        self.counts.distinct.saturating_sub(self.at_load_end)
    }

    /// The delivery rate: distinct events per second from the first to the last, in tenths.
    pub fn rate_tenths(&self) -> Option<u64> {
        rate_tenths(i64::try_from(self.counts.distinct).unwrap_or(i64::MAX), self.span())
    }

    /// Distinct events per second from the first to the end of the load, in tenths.
    pub fn load_rate_tenths(&self) -> Option<u64> {
        rate_tenths(i64::try_from(self.at_load_end).unwrap_or(i64::MAX), self.during_load())
    }

    /// Distinct events per second from the end of the load to the last, in tenths.
    pub fn drain_rate_tenths(&self) -> Option<u64> {
        rate_tenths(i64::try_from(self.delivered_after_load()).unwrap_or(i64::MAX), self.after_load())
    }
}

/// Waits until every one of `expected` has an event at the receiver, `patience` passes, or `stop` is set
/// during the wait (a Ctrl-C during the load already set it, so only a change counts). Returns how long it
/// waited and whether Ctrl-C cut it short.
async fn wait_for_deliveries(
    receiver: &Receiver,
    expected: &[Uuid],
    patience: Duration,
    stop: &AtomicBool,
) -> (Duration, bool) {
    let stopped_before = stop.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut left = expected.to_vec();
    let mut polls = 0u64;
    loop {
        // Only the ids still missing are looked up again, so each poll gets cheaper.
        left = receiver.undelivered(&left);
        let interrupted = !stopped_before && stop.load(Ordering::Relaxed);
        if left.is_empty() || interrupted || started.elapsed() >= patience {
            return (started.elapsed(), interrupted && !left.is_empty());
        }
        polls += 1;
        if polls.is_multiple_of(PROGRESS_EVERY) {
            eprintln!(
                "waiting for events: {} of {} acknowledged notices delivered after {} s",
                expected.len() - left.len(),
                expected.len(),
                started.elapsed().as_secs()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What the load leaves the event check to expect.
pub struct Expected<'a> {
    /// The endpoint's id.
    pub endpoint: &'a str,
    /// The operations the server acknowledged: one event each.
    pub acknowledged: &'a [Uuid],
    /// The operations of unknown outcome: an event each, or none.
    pub in_doubt: &'a [Uuid],
    /// When the load ended, and how many distinct events had arrived by then.
    pub load_end: (Instant, u64),
}

impl Expected<'_> {
    /// Waits up to `patience_secs` for the acknowledged operations' events (see [`wait_for_deliveries`]),
    /// then compares what the receiver got with what was expected.
    pub async fn collect(&self, receiver: &Receiver, patience_secs: u64, stop: &AtomicBool) -> EventCheck {
        let patience = Duration::from_secs(patience_secs);
        let (waited, interrupted) = wait_for_deliveries(receiver, self.acknowledged, patience, stop).await;
        let expected: HashSet<Uuid> = self.acknowledged.iter().copied().collect();
        let in_doubt: HashSet<Uuid> = self.in_doubt.iter().copied().collect();
        EventCheck {
            endpoint: self.endpoint.to_owned(),
            url: receiver.url(),
            expected: expected.len() as u64,
            in_doubt: in_doubt.len() as u64,
            counts: receiver.counts(),
            at_load_end: self.load_end.1,
            load_end: Some(self.load_end.0),
            matched: receiver.matched(&expected, &in_doubt),
            waited,
            patience_secs,
            interrupted,
            cleanup_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_the_documented_shape() {
        let body: Value = serde_json::from_slice(&endpoint_body("http://127.0.0.1:4321/events")).unwrap();
        assert_eq!(
            body,
            json!({"url": "http://127.0.0.1:4321/events", "description": "payledger-bench",
                   "event_types": ["bank_payment.credited"]})
        );
        assert_eq!(endpoint_path("ep_1"), "/api/v1/webhook-endpoints/ep_1/");
    }

    #[test]
    fn a_refusal_naming_the_url_is_told_from_others() {
        assert!(names_url(br#"{"error":"Invalid data","code":"invalid_data","details":{"url":["not global"]}}"#));
        assert!(!names_url(br#"{"error":"Invalid data","code":"invalid_data","details":{"event_types":["x"]}}"#));
        assert!(names_url(b"the url is not allowed"));
        assert!(!names_url(br#"{"error":"Invalid data"}"#));
    }

    #[test]
    fn rates_are_split_at_the_end_of_the_load() {
        let first = Instant::now();
        let check = EventCheck {
            counts: Counts {
                requests: 3_100,
                distinct: 3_000,
                first: Some(first),
                last: Some(first + Duration::from_millis(1_500)),
            },
            at_load_end: 2_000,
            load_end: Some(first + Duration::from_secs(1)),
            ..EventCheck::default()
        };
        assert_eq!(check.duplicates(), 100);
        assert_eq!((check.rate_tenths(), check.load_rate_tenths()), (Some(20_000), Some(20_000)));
        assert_eq!((check.delivered_after_load(), check.drain_rate_tenths()), (1_000, Some(20_000)));
        assert!(check.ok());
        let nothing = EventCheck::default();
        assert_eq!(
            (nothing.rate_tenths(), nothing.load_rate_tenths(), nothing.drain_rate_tenths()),
            (None, None, None)
        );
    }
}
