//! The two payledger endpoints the bench uses: the bank webhook and the organization balance.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::client::{Client, Target};
use crate::money::{format_kopecks, parse_kopecks};

/// The webhook path, relative to `--url`.
pub const WEBHOOK_PATH: &str = "/api/webhook/bank/";

/// How often a balance read is attempted before the bench gives up on the run.
const BALANCE_ATTEMPTS: u32 = 8;

/// The balance path of one organization, relative to `--url`.
pub fn balance_path(inn: &str) -> String {
    format!("/api/organizations/{inn}/balance/")
}

/// A bank notice body for a new operation.
///
/// `amount_as_string` picks between the two amount encodings the server accepts (`"1500.25"` and
/// `1500.25`) so both parsing paths are under load. The values are digits, hex and dashes only, which is
/// why plain formatting is safe JSON here.
pub fn webhook_body(
    operation_id: Uuid,
    inn: &str,
    kopecks: i64,
    document_number: u32,
    amount_as_string: bool,
) -> Bytes {
    let amount = format_kopecks(kopecks);
    let amount = if amount_as_string { format!("\"{amount}\"") } else { amount };
    Bytes::from(format!(
        "{{\"operation_id\":\"{operation_id}\",\"amount\":{amount},\"payer_inn\":\"{inn}\",\
         \"document_number\":\"PAY-{document_number}\",\"document_date\":\"2024-04-27T21:00:00Z\"}}"
    ))
}

/// Extracts the balance in kopecks from a balance response body, checking it is about `inn`.
///
/// The number is taken from its literal JSON text (never through `f64`); a quoted decimal is accepted too.
pub fn parse_balance(body: &[u8], inn: &str) -> anyhow::Result<i64> {
    let fields: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).context("balance response is not a JSON object")?;
    if let Some(reported) = fields.get("inn") {
        let reported: String =
            serde_json::from_str(reported.get()).context("balance response: \"inn\" is not a string")?;
        if reported != inn {
            bail!("asked for the balance of {inn} but got {reported}'s");
        }
    }
    let raw = fields.get("balance").context("balance response has no \"balance\"")?.get();
    let literal = if raw.starts_with('"') { serde_json::from_str::<String>(raw)? } else { raw.to_owned() };
    parse_kopecks(&literal).context("balance response: bad \"balance\"")
}

/// Reads one organization's balance in kopecks; an organization the server has not seen yet has 0.
///
/// Transport failures and 5xx answers are retried with a short backoff: a balance read is idempotent, and
/// one lost read must not sink a run whose payments all went through.
pub async fn read_balance(client: &mut Client, inn: &str) -> anyhow::Result<i64> {
    let path = balance_path(inn);
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let problem = match client.get(&path).await {
            Ok(response) if response.status == StatusCode::OK => {
                return parse_balance(&response.body, inn).with_context(|| format!("balance of {inn}"));
            }
            Ok(response) if response.status == StatusCode::NOT_FOUND => return Ok(0),
            Ok(response) if response.status.is_server_error() => format!("HTTP {}", response.status),
            Ok(response) => bail!(
                "balance of {inn}: unexpected HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
            Err(failure) => failure.to_string(),
        };
        if attempt >= BALANCE_ATTEMPTS {
            bail!("balance of {inn}: giving up after {attempt} attempts: {problem}");
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Reads every organization's balance, `concurrency` at a time, each reader on its own connection.
pub async fn read_balances(
    target: &Target,
    timeout: Duration,
    inns: Arc<Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<Vec<i64>> {
    let next = Arc::new(AtomicUsize::new(0));
    let readers = concurrency.clamp(1, inns.len().max(1));
    let mut tasks = Vec::with_capacity(readers);
    for _ in 0..readers {
        let (inns, next) = (Arc::clone(&inns), Arc::clone(&next));
        let mut client = Client::new(target.clone(), timeout);
        tasks.push(tokio::spawn(async move {
            let mut found = Vec::new();
            // Readers pull indices from a shared counter, so a slow organization does not stall a fixed share.
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(inn) = inns.get(index) else { break };
                found.push((index, read_balance(&mut client, inn).await?));
            }
            Ok::<_, anyhow::Error>(found)
        }));
    }
    let mut balances = vec![0; inns.len()];
    for task in tasks {
        for (index, balance) in task.await.context("balance reader panicked")?? {
            balances[index] = balance;
        }
    }
    Ok(balances)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INN: &str = "7707083893";

    #[test]
    fn balance_is_read_from_the_literal() {
        let body = br#"{"inn": "7707083893", "balance": 145000.00}"#;
        assert_eq!(parse_balance(body, INN).unwrap(), 14_500_000);
        assert_eq!(parse_balance(br#"{"inn":"7707083893","balance":0.5}"#, INN).unwrap(), 50);
        assert_eq!(parse_balance(br#"{"balance":12,"inn":"7707083893"}"#, INN).unwrap(), 1_200);
        assert_eq!(parse_balance(br#"{"inn":"7707083893","balance":"1500.25"}"#, INN).unwrap(), 150_025);
        // 0.1 + 0.2 style values that a float would blur stay exact.
        assert_eq!(
            parse_balance(br#"{"inn":"7707083893","balance":90071992547409.93}"#, INN).unwrap(),
            9_007_199_254_740_993
        );
    }

    #[test]
    fn bad_balance_bodies_are_errors() {
        for body in [
            &br#"{"inn":"7707083893"}"#[..],
            br#"{"inn":"7707083893","balance":1e5}"#,
            br#"{"inn":"7707083893","balance":1.001}"#,
            br#"{"inn":"7707083893","balance":null}"#,
            br#"{"inn":"7736050003","balance":1.00}"#,
            br#"[1.00]"#,
            b"not json",
        ] {
            assert!(parse_balance(body, INN).is_err(), "{} was accepted", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn webhook_body_is_the_documented_shape() {
        let id = Uuid::parse_str("6f1c9e8e-2a4b-4c61-9f0e-0123456789ab").unwrap();
        let body = webhook_body(id, INN, 150_025, 328, true);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["operation_id"], "6f1c9e8e-2a4b-4c61-9f0e-0123456789ab");
        assert_eq!(value["amount"], "1500.25");
        assert_eq!(value["payer_inn"], INN);
        assert_eq!(value["document_number"], "PAY-328");
        assert_eq!(value["document_date"], "2024-04-27T21:00:00Z");

        let numeric = webhook_body(id, INN, 5, 1, false);
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(&numeric).unwrap();
        assert_eq!(fields["amount"].get(), "0.05");
    }
}
