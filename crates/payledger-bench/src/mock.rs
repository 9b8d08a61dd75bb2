//! A throwaway stand-in for payledger, for tests only: a hand-written HTTP/1.1 responder on loopback.
//!
//! It implements just the two endpoints the bench uses, keeps balances in kopecks, deduplicates by
//! operation_id, and can misbehave on purpose (answer 503 after booking, drop connections, book
//! duplicates twice) so the tests can show the bench tells a correct server from a broken one.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::money::{format_kopecks, parse_kopecks};

/// How the mock misbehaves; the default is a correct server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MockConfig {
    /// If > 0, webhook call number `n` with `n % fail_every == 0` is booked but answered 503, and with
    /// `n % fail_every == 1` is refused with 503 without booking.
    pub fail_every: u64,
    /// If > 0, the connection is closed without warning after every `close_every`-th response.
    pub close_every: u64,
    /// Book a repeated operation_id again, the bug the balance check exists to catch.
    pub book_duplicates: bool,
}

#[derive(Default)]
struct Ledger {
    balances: HashMap<String, i64>,
    seen: HashSet<String>,
    webhook_calls: u64,
    responses: u64,
}

/// A running mock server; it stops when dropped.
pub struct Mock {
    addr: SocketAddr,
    ledger: Arc<Mutex<Ledger>>,
    acceptor: JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Mock {
    /// Starts listening on an ephemeral loopback port.
    pub async fn start(config: MockConfig) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let shared = Arc::clone(&ledger);
        let acceptor = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            // Connections live in the JoinSet so aborting the acceptor closes them too.
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, Arc::clone(&shared), config));
            }
        });
        Mock { addr, ledger, acceptor }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sum of all balances, in kopecks.
    pub fn total(&self) -> i64 {
        self.ledger.lock().unwrap().balances.values().sum()
    }
}

async fn serve(stream: TcpStream, ledger: Arc<Mutex<Ledger>>, config: MockConfig) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, reply, close) = {
            let mut ledger = ledger.lock().unwrap();
            let (status, reply) = route(&mut ledger, config, method, path, &body);
            ledger.responses += 1;
            let close = config.close_every > 0 && ledger.responses.is_multiple_of(config.close_every);
            (status, reply, close)
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if stream.get_mut().write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

fn route(ledger: &mut Ledger, config: MockConfig, method: &str, path: &str, body: &[u8]) -> (&'static str, String) {
    let message = |text: &str| format!("{{\"message\":\"{text}\"}}");
    if method == "POST" && path == "/api/webhook/bank/" {
        let Some((operation_id, inn, kopecks)) = parse_notice(body) else {
            return ("400 Bad Request", message("invalid"));
        };
        ledger.webhook_calls += 1;
        let call = ledger.webhook_calls;
        if config.fail_every > 0 && call % config.fail_every == 1 {
            return ("503 Service Unavailable", message("busy"));
        }
        if ledger.seen.insert(operation_id) || config.book_duplicates {
            *ledger.balances.entry(inn).or_default() += kopecks;
        }
        if config.fail_every > 0 && call.is_multiple_of(config.fail_every) {
            return ("503 Service Unavailable", message("busy"));
        }
        return ("200 OK", message("accepted"));
    }
    let inn = path.strip_prefix("/api/organizations/").and_then(|rest| rest.strip_suffix("/balance/"));
    match (method, inn) {
        ("GET", Some(inn)) => match ledger.balances.get(inn) {
            Some(&kopecks) => ("200 OK", format!("{{\"inn\": \"{inn}\", \"balance\": {}}}", format_kopecks(kopecks))),
            None => ("404 Not Found", message("not found")),
        },
        _ => ("404 Not Found", message("no such route")),
    }
}

fn parse_notice(body: &[u8]) -> Option<(String, String, i64)> {
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
    let text = |name: &str| serde_json::from_str::<String>(fields.get(name)?.get()).ok();
    let raw_amount = fields.get("amount")?.get();
    let amount = match raw_amount.strip_prefix('"') {
        Some(_) => serde_json::from_str::<String>(raw_amount).ok()?,
        None => raw_amount.to_owned(),
    };
    Some((text("operation_id")?, text("payer_inn")?, parse_kopecks(&amount).ok()?))
}
