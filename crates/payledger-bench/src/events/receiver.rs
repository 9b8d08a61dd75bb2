//! The bench's own receiver of outbound events: a plain HTTP/1.1 server on loopback that answers every
//! request 204 at once and notes what it carried.
//!
//! It has to be fast enough not to be what the delivery rate measures, so it does the least it can: read the
//! body, take the `webhook-id` header and the event's `data.operation_id`, and answer. Keep-alive is on, so
//! each of the server's delivery workers can reuse its connection. Signatures are not verified: the server's
//! own test suite does that; the bench counts.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

/// The event type the bench subscribes to: one per notice the server newly applied.
pub const CREDITED: &str = "bank_payment.credited";

/// The path the receiver is registered at; it answers any path the same way.
pub const RECEIVER_PATH: &str = "/events";

/// How many operation ids are looked up per hold of the log's lock, so a long check never stalls deliveries.
const LOOKUP_CHUNK: usize = 4_096;

/// Everything the receiver has been sent.
#[derive(Debug, Default)]
pub struct Log {
    /// Requests received, repeats of a webhook-id included.
    requests: u64,
    /// Distinct `webhook-id` values: each is one event, however often it was delivered.
    ids: HashSet<String>,
    /// Requests without a `webhook-id`.
    anonymous: u64,
    /// Distinct `bank_payment.credited` events per `data.operation_id`; more than one is an extra event.
    by_operation: HashMap<Uuid, u32>,
    /// Distinct events of another type, without a readable operation_id, or without a `webhook-id`.
    unreadable: u64,
    /// What the first of those was, for the report.
    first_unreadable: Option<String>,
    /// When the first distinct event arrived.
    first: Option<Instant>,
    /// When the latest distinct event arrived.
    last: Option<Instant>,
}

/// The receiver's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests received.
    pub requests: u64,
    /// Distinct events (webhook-ids) received.
    pub distinct: u64,
    /// When the first distinct event arrived.
    pub first: Option<Instant>,
    /// When the latest distinct event arrived.
    pub last: Option<Instant>,
}

/// How the received events compare with what the server acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matched {
    /// Acknowledged operations with at least one event.
    pub delivered: u64,
    /// Acknowledged operations without one.
    pub missing: u64,
    /// The first of those.
    pub first_missing: Option<Uuid>,
    /// Distinct events the server had no reason to send: for an operation never acknowledged (nor in doubt),
    /// a second event for one operation, another type, or an unreadable one.
    pub unexpected: u64,
    /// What the first of those was.
    pub first_unexpected: Option<String>,
}

impl Log {
    /// Notes one request received at `at`.
    pub fn record(&mut self, webhook_id: Option<&str>, body: &[u8], at: Instant) {
        self.requests += 1;
        let Some(webhook_id) = webhook_id else {
            // Nothing tells a repeat from a new event: each is counted as one more, and unexpected.
            self.anonymous += 1;
            self.note_unreadable("a request without a webhook-id header".to_owned());
            self.note_distinct(at);
            return;
        };
        // A repeat of a webhook-id is the same event delivered again (at least once): counted, not read.
        if self.ids.contains(webhook_id) {
            return;
        }
        self.ids.insert(webhook_id.to_owned());
        self.note_distinct(at);
        match credited_operation(body) {
            Ok(operation_id) => *self.by_operation.entry(operation_id).or_default() += 1,
            Err(why) => self.note_unreadable(format!("{webhook_id}: {why}")),
        }
    }

    fn note_distinct(&mut self, at: Instant) {
        self.first.get_or_insert(at);
        self.last = Some(at);
    }

    fn note_unreadable(&mut self, what: String) {
        self.unreadable += 1;
        self.first_unreadable.get_or_insert(what);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let distinct = self.ids.len() as u64 + self.anonymous;
        Counts { requests: self.requests, distinct, first: self.first, last: self.last }
    }

    /// Compares the events with the `expected` operations (one event each) and those `in_doubt` (at most one
    /// event each, or none).
    pub fn matched(&self, expected: &HashSet<Uuid>, in_doubt: &HashSet<Uuid>) -> Matched {
        let mut result = Matched { unexpected: self.unreadable, ..Matched::default() };
        result.first_unexpected = self.first_unreadable.clone();
        for (operation_id, &events) in &self.by_operation {
            let allowed = u32::from(expected.contains(operation_id) || in_doubt.contains(operation_id));
            if events > allowed {
                result.unexpected += u64::from(events - allowed);
                result.first_unexpected.get_or_insert_with(|| match allowed {
                    0 => format!("an event for operation {operation_id}, which the server never acknowledged"),
                    _ => format!("{events} events for operation {operation_id}"),
                });
            }
        }
        for operation_id in expected {
            if self.by_operation.contains_key(operation_id) {
                result.delivered += 1;
            } else {
                result.missing += 1;
                result.first_missing.get_or_insert(*operation_id);
            }
        }
        result
    }
}

/// The operation_id of a `bank_payment.credited` event body, or why there is none.
fn credited_operation(body: &[u8]) -> Result<Uuid, String> {
    let event: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_owned())?;
    match event.get("type").and_then(Value::as_str) {
        Some(CREDITED) => {}
        Some(other) => return Err(format!("an event of type {other:?}, which the endpoint did not subscribe to")),
        None => return Err("an event without a \"type\"".to_owned()),
    }
    let operation_id = event.pointer("/data/operation_id").and_then(Value::as_str);
    operation_id
        .and_then(|text| Uuid::parse_str(text).ok())
        .ok_or_else(|| format!("a {CREDITED} event without a readable data.operation_id ({operation_id:?})"))
}

/// A running receiver; it stops (and closes its connections) when dropped.
pub struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    acceptor: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Receiver {
    /// Starts listening on an ephemeral port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("starting the event receiver")?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let acceptor = tokio::spawn(accept(listener, Arc::clone(&log)));
        Ok(Receiver { addr, log, acceptor })
    }

    /// The URL to register: loopback, the receiver's port, [`RECEIVER_PATH`].
    pub fn url(&self) -> String {
        format!("http://{}{RECEIVER_PATH}", self.addr)
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        self.log().counts()
    }

    /// Those of `operation_ids` without an event yet, looked up a chunk at a time.
    pub fn undelivered(&self, operation_ids: &[Uuid]) -> Vec<Uuid> {
        let mut left = Vec::new();
        for chunk in operation_ids.chunks(LOOKUP_CHUNK) {
            let log = self.log();
            left.extend(chunk.iter().filter(|id| !log.by_operation.contains_key(id)));
        }
        left
    }

    /// See [`Log::matched`].
    pub fn matched(&self, expected: &HashSet<Uuid>, in_doubt: &HashSet<Uuid>) -> Matched {
        self.log().matched(expected, in_doubt)
    }
}

/// Accepts connections until aborted; each is served in the JoinSet, so aborting this closes them too.
async fn accept(listener: TcpListener, log: Arc<Mutex<Log>>) {
    let mut connections = JoinSet::new();
    loop {
        // Finished connections are reaped as we go, or a long run would keep every one's result.
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors, most likely: deliveries will be retried, so wait rather than give up.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Answers are tiny; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let log = Arc::clone(&log);
        connections.spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&log), request));
            // A connection the server closes, or breaks, just ends; its deliveries are retried by the server.
            let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Reads one delivery, notes it and answers 204 (400 if the body could not be read).
async fn answer(log: Arc<Mutex<Log>>, request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let webhook_id = request.headers().get("webhook-id").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let status = match request.into_body().collect().await {
        Ok(body) => {
            let body = body.to_bytes();
            log.lock().unwrap_or_else(PoisonError::into_inner).record(webhook_id.as_deref(), &body, Instant::now());
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credited(operation_id: &str) -> Vec<u8> {
        format!(
            r#"{{"type":"bank_payment.credited","timestamp":"2024-04-27T21:00:00Z","data":{{"operation_id":"{operation_id}","amount":"1.00","version":3}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn repeats_of_a_webhook_id_are_requests_not_events() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let start = Instant::now();
        let mut log = Log::default();
        log.record(Some("msg_1"), &credited(&a.to_string()), start);
        log.record(Some("msg_1"), &credited(&a.to_string()), start + Duration::from_millis(5));
        log.record(Some("msg_2"), &credited(&b.to_string()), start + Duration::from_millis(9));
        // A repeat is not read again, so even a different body under the same id is the same event.
        log.record(Some("msg_2"), b"garbage", start + Duration::from_millis(20));
        let counts = log.counts();
        assert_eq!((counts.requests, counts.distinct), (4, 2));
        assert_eq!((counts.first, counts.last), (Some(start), Some(start + Duration::from_millis(9))));
        let matched = log.matched(&HashSet::from([a, b]), &HashSet::new());
        assert_eq!(matched, Matched { delivered: 2, ..Matched::default() });
    }

    #[test]
    fn missing_stray_doubled_and_unreadable_events_are_told_apart() {
        let (acknowledged, lost, doubted, stray) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        let mut log = Log::default();
        log.record(Some("msg_1"), &credited(&acknowledged.to_string()), now);
        log.record(Some("msg_2"), &credited(&doubted.to_string()), now);
        let expected = HashSet::from([acknowledged, lost]);
        let in_doubt = HashSet::from([doubted]);
        let matched = log.matched(&expected, &in_doubt);
        assert_eq!((matched.delivered, matched.missing, matched.first_missing), (1, 1, Some(lost)));
        assert_eq!(matched.unexpected, 0, "an event for an operation in doubt is allowed");

        log.record(Some("msg_3"), &credited(&stray.to_string()), now);
        log.record(Some("msg_4"), &credited(&acknowledged.to_string()), now);
        log.record(Some("msg_5"), br#"{"type":"payout.created","data":{}}"#, now);
        log.record(Some("msg_6"), &credited("not-a-uuid"), now);
        log.record(None, &credited(&Uuid::new_v4().to_string()), now);
        let matched = log.matched(&expected, &in_doubt);
        assert_eq!(matched.unexpected, 5, "{matched:?}");
        assert_eq!(
            matched.first_unexpected.as_deref(),
            Some("msg_5: an event of type \"payout.created\", which the endpoint did not subscribe to")
        );
        assert_eq!(log.counts().distinct, 7);
        let only_stray = log.matched(&HashSet::from([acknowledged, doubted]), &HashSet::new());
        assert_eq!(only_stray.unexpected, 5);
    }

    #[test]
    fn only_credited_events_with_a_uuid_are_read() {
        let id = Uuid::new_v4();
        assert_eq!(credited_operation(&credited(&id.to_string())), Ok(id));
        assert!(credited_operation(b"[").unwrap_err().contains("not JSON"));
        assert!(credited_operation(br#"{"data":{}}"#).unwrap_err().contains("without a \"type\""));
        let no_id = credited_operation(br#"{"type":"bank_payment.credited","data":{"version":1}}"#).unwrap_err();
        assert!(no_id.contains("without a readable data.operation_id (None)"), "{no_id}");
    }
}
