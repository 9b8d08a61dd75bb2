//! The payledger endpoints the bench uses: the bank webhook and the organization balance (the `webhook`
//! scenario), the user deposit, transfer and balance (the `transfers` scenario), and payout creation and
//! the payout counts by status (the `payouts` scenario); a user's history page (the `history` scenario) and
//! the liveness probe (the `ceiling` scenario); and the login every scenario may start with.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::client::{Client, Failure, Response, Target, auth_hint};
use crate::money::{format_kopecks, parse_kopecks};

/// The login path, relative to `--url`: a username and password for an access token.
pub const TOKEN_PATH: &str = "/api/token/";

/// The liveness probe, relative to `--url`: answered by the process alone (no database, no credentials),
/// which makes it the `ceiling` scenario's request: the most a route can be served at.
pub const LIVENESS_PATH: &str = "/api/health/live/";

/// The webhook path, relative to `--url`.
pub const WEBHOOK_PATH: &str = "/api/webhook/bank/";

/// The deposit path, relative to `--url`; the first deposit creates the user's account.
pub const ADD_FUNDS_PATH: &str = "/api/add_funds/";

/// The user-to-user transfer path, relative to `--url`.
pub const TRANSFER_FUNDS_PATH: &str = "/api/transfer_funds/";

/// The batch API's path, relative to `--url`: many operations, each with its own key, in one request.
pub const BATCH_PATH: &str = "/api/v1/batch/";

/// The `code` of a 409 refusing a transfer because the sender's available balance is short.
pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";

/// The `code` of a 409 saying a request with the same Idempotency-Key is still being processed.
pub const KEY_IN_FLIGHT: &str = "idempotency_key_in_flight";

/// The payout creation path, relative to `--url`; a `GET` with `?status=` lists (and counts) payouts.
pub const PAYOUTS_PATH: &str = "/api/v1/payouts/";

/// The `code` of a 503 saying the payout may or may not have been created (its commit failed).
pub const UNCONFIRMED: &str = "unconfirmed";

/// The card every bench payout goes to: a valid test number the simulated gateway always pays.
pub const PAYOUT_CARD: &str = "4111111111111111";

/// How often a payout count is attempted before the bench gives up on the run.
const COUNT_ATTEMPTS: u32 = 8;

/// How often a balance read is attempted before the bench gives up on the run.
const BALANCE_ATTEMPTS: u32 = 8;

/// The balance path of one organization, relative to `--url`.
pub fn balance_path(inn: &str) -> String {
    format!("/api/organizations/{inn}/balance/")
}

/// The balance path of one user, relative to `--url`.
pub fn user_balance_path(user_id: u64) -> String {
    format!("/api/balances/?user_id={user_id}")
}

/// The first page of one user's history, relative to `--url`: the server's default order (newest first) and
/// page size.
pub fn history_path(user_id: u64) -> String {
    format!("/api/users/{user_id}/transactions/")
}

/// A deposit body. The amount is sent as a decimal string, printed from integers.
pub fn add_funds_body(user_id: u64, kopecks: i64) -> Bytes {
    Bytes::from(format!("{{\"user_id\":{user_id},\"amount\":\"{}\"}}", format_kopecks(kopecks)))
}

/// A transfer body. The amount is sent as a decimal string, printed from integers.
pub fn transfer_body(sender_id: u64, recipient_id: u64, kopecks: i64) -> Bytes {
    Bytes::from(format!(
        "{{\"sender_id\":{sender_id},\"recipient_id\":{recipient_id},\"amount\":\"{}\"}}",
        format_kopecks(kopecks)
    ))
}

/// A batch API body carrying `operations`, each a JSON object's text.
pub fn batch_body<'a>(operations: impl Iterator<Item = &'a str>) -> Bytes {
    let mut text = String::from("{\"operations\":[");
    for (index, operation) in operations.enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(operation);
    }
    text.push_str("]}");
    Bytes::from(text)
}

/// One transfer as a batch operation under `key`. The amount is sent as a decimal string, printed from
/// integers.
pub fn transfer_operation(key: &str, sender_id: u64, recipient_id: u64, kopecks: i64) -> String {
    format!(
        "{{\"type\":\"transfer\",\"idempotency_key\":\"{key}\",\"sender_id\":{sender_id},\"recipient_id\":{recipient_id},\
         \"amount\":\"{}\"}}",
        format_kopecks(kopecks)
    )
}

/// A webhook body (a JSON object's text, as [`webhook_body`] makes it) as a batch operation: the same fields
/// after `"type":"bank_notice"`.
pub fn notice_operation(webhook_body: &[u8]) -> String {
    let fields = String::from_utf8_lossy(webhook_body);
    let fields = fields.strip_prefix('{').unwrap_or(&fields);
    format!("{{\"type\":\"bank_notice\",{fields}")
}

/// Each of the `count` operations' `(status, code)` in a batch API request's answer, in order; `None` unless the
/// request was answered 200 with one result per operation (then no operation's outcome is known).
pub fn batch_results(result: &Result<Response, Failure>, count: usize) -> Option<Vec<(u16, Option<String>)>> {
    match result {
        Ok(response) if response.status == StatusCode::OK => {
            parse_batch_results(&response.body).filter(|results| results.len() == count)
        }
        _ => None,
    }
}

/// Each operation's `(status, code)` in a batch API answer, in order, or `None` if the body is not one.
fn parse_batch_results(body: &[u8]) -> Option<Vec<(u16, Option<String>)>> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    answer["results"]
        .as_array()?
        .iter()
        .map(|result| {
            let status = u16::try_from(result["status"].as_u64()?).ok()?;
            Some((status, result["body"]["code"].as_str().map(str::to_owned)))
        })
        .collect()
}

/// A payout body: `kopecks` roubles to the bench card. The amount is sent as a decimal string, printed from
/// integers.
pub fn payout_body(kopecks: i64) -> Bytes {
    Bytes::from(format!(
        "{{\"amount\":\"{}\",\"currency\":\"RUB\",\"recipient_details\":{{\"type\":\"card\",\
         \"number\":\"{PAYOUT_CARD}\",\"holder\":\"Bench\"}},\"description\":\"bench\"}}",
        format_kopecks(kopecks)
    ))
}

/// A payout status the bench counts, in the order a payout passes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStatus {
    /// Created, waiting for a worker.
    Pending,
    /// Claimed by a worker, at the gateway (or waiting to retry it).
    Processing,
    /// Paid.
    Completed,
    /// Declined or given up on.
    Failed,
}

impl PayoutStatus {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::Processing => "processing",
            PayoutStatus::Completed => "completed",
            PayoutStatus::Failed => "failed",
        }
    }
}

/// The list path that counts the payouts in `status` with the least work for the server (one per page).
pub fn payout_count_path(status: PayoutStatus) -> String {
    format!("{PAYOUTS_PATH}?status={}&page_size=1", status.as_str())
}

/// The `count` of a payout list page such as `{"count": 12, "next": null, ...}`.
pub fn parse_payout_count(body: &[u8]) -> anyhow::Result<i64> {
    let fields: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).context("payout list is not a JSON object")?;
    let raw = fields.get("count").context("payout list has no \"count\"")?.get();
    let count: i64 = serde_json::from_str(raw).with_context(|| format!("payout list: bad \"count\" {raw}"))?;
    if count < 0 {
        bail!("payout list: negative \"count\" {count}");
    }
    Ok(count)
}

/// How many payouts are in `status`. Transport failures and 5xx answers are retried with a short backoff
/// (a count is a read); anything else is an error.
pub async fn read_payout_count(client: &mut Client, status: PayoutStatus) -> anyhow::Result<i64> {
    let path = payout_count_path(status);
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let problem = match client.get(&path).await {
            Ok(response) if response.status == StatusCode::OK => {
                return parse_payout_count(&response.body).with_context(|| format!("GET {path}"));
            }
            Ok(response) if response.status.is_server_error() => format!("HTTP {}", response.status),
            Ok(response) => bail!(
                "GET {path}: unexpected HTTP {}{}: {}",
                response.status,
                auth_hint(response.status),
                String::from_utf8_lossy(&response.body)
            ),
            Err(failure) => failure.to_string(),
        };
        if attempt >= COUNT_ATTEMPTS {
            bail!("GET {path}: giving up after {attempt} attempts: {problem}");
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The `code` of a JSON error body such as `{"error": "...", "code": "insufficient_funds"}`, if it has one.
pub fn error_code(body: &[u8]) -> Option<String> {
    let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
    serde_json::from_str(fields.get("code")?.get()).ok()
}

/// The money of one user, in kopecks, as `GET /api/balances/` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserBalance {
    /// Available money.
    pub amount: i64,
    /// Money held for operations under way; nothing should be held once the load is over.
    pub reserved: i64,
}

impl UserBalance {
    /// Everything the user owns: available plus reserved.
    pub fn total(&self) -> i64 {
        self.amount + self.reserved
    }
}

/// Extracts a decimal field in kopecks from its literal JSON text (never through `f64`); a quoted decimal is
/// accepted too.
fn decimal_field(fields: &HashMap<String, Box<RawValue>>, name: &str) -> anyhow::Result<i64> {
    let raw = fields.get(name).with_context(|| format!("no \"{name}\""))?.get();
    let literal = if raw.starts_with('"') { serde_json::from_str::<String>(raw)? } else { raw.to_owned() };
    parse_kopecks(&literal).with_context(|| format!("bad \"{name}\""))
}

/// Fails if `fields` has a `user_id` (a number or a quoted one) other than `user_id`.
fn check_user_id(fields: &HashMap<String, Box<RawValue>>, user_id: u64, what: &str) -> anyhow::Result<()> {
    if let Some(reported) = fields.get("user_id") {
        let raw = reported.get();
        let text = if raw.starts_with('"') { serde_json::from_str::<String>(raw)? } else { raw.to_owned() };
        if text.parse::<u64>().ok() != Some(user_id) {
            bail!("asked for the {what} of user {user_id} but got user {text}'s");
        }
    }
    Ok(())
}

/// Extracts a user's `amount` and `reserved` from a balance response body, checking it is about `user_id`.
pub fn parse_user_balance(body: &[u8], user_id: u64) -> anyhow::Result<UserBalance> {
    let fields: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).context("balance response is not a JSON object")?;
    check_user_id(&fields, user_id, "balance")?;
    let amount = decimal_field(&fields, "amount").context("balance response")?;
    let reserved = decimal_field(&fields, "reserved").context("balance response")?;
    Ok(UserBalance { amount, reserved })
}

/// One line of a user's history, as the bench checks it; changes in kopecks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// `deposit`, `transfer`, `reservation` and so on.
    pub transaction_type: String,
    /// The line's signed effect on the available balance.
    pub available_change: i64,
    /// The line's signed effect on the reserved money.
    pub reserved_change: i64,
}

/// A page of a user's history as `GET /api/users/{user_id}/transactions/` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The lines, in the server's order (newest first by default).
    pub lines: Vec<HistoryLine>,
    /// Whether this is the last page (`next_cursor` is null), so the lines are the whole rest of the history.
    pub last: bool,
}

impl HistoryPage {
    /// What the page's lines add up to: available and reserved money, as the server says a whole history
    /// adds up to the balance. Saturating: the server's numbers are untrusted, and an absurd one must show up
    /// as a mismatch, not a panic.
    pub fn sum(&self) -> UserBalance {
        self.lines.iter().fold(UserBalance::default(), |sum, line| UserBalance {
            amount: sum.amount.saturating_add(line.available_change),
            reserved: sum.reserved.saturating_add(line.reserved_change),
        })
    }
}

/// Extracts a history page from its body, checking every line is about `user_id`; amounts are read from
/// their literal text (never through `f64`).
pub fn parse_history_page(body: &[u8], user_id: u64) -> anyhow::Result<HistoryPage> {
    let fields: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).context("history page is not a JSON object")?;
    let results = fields.get("results").context("history page has no \"results\"")?.get();
    let raw_lines: Vec<HashMap<String, Box<RawValue>>> =
        serde_json::from_str(results).context("history page: \"results\" is not a list of objects")?;
    let last = match fields.get("next_cursor").map(|raw| raw.get()) {
        Some("null") => true,
        Some(raw) if raw.starts_with('"') => false,
        Some(raw) => bail!("history page: bad \"next_cursor\" {raw}"),
        None => bail!("history page has no \"next_cursor\""),
    };
    let mut lines = Vec::with_capacity(raw_lines.len());
    for (index, line) in raw_lines.iter().enumerate() {
        lines.push(parse_history_line(line, user_id).with_context(|| format!("history page, line {index}"))?);
    }
    Ok(HistoryPage { lines, last })
}

/// One line of a history page, checked to be about `user_id`.
fn parse_history_line(line: &HashMap<String, Box<RawValue>>, user_id: u64) -> anyhow::Result<HistoryLine> {
    check_user_id(line, user_id, "history")?;
    let kind = line.get("transaction_type").context("no \"transaction_type\"")?.get();
    Ok(HistoryLine {
        transaction_type: serde_json::from_str(kind).context("\"transaction_type\" is not a string")?,
        available_change: decimal_field(line, "available_change")?,
        reserved_change: decimal_field(line, "reserved_change")?,
    })
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
    decimal_field(&fields, "balance").context("balance response")
}

/// `GET`s a balance `path`, returning the 200 body, or `None` for a 404 (an account not created yet).
///
/// Transport failures and 5xx answers are retried with a short backoff: a balance read is idempotent, and
/// one lost read must not sink a run whose payments all went through.
async fn get_balance_body(client: &mut Client, path: &str, what: &str) -> anyhow::Result<Option<Bytes>> {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        let problem = match client.get(path).await {
            Ok(response) if response.status == StatusCode::OK => return Ok(Some(response.body)),
            Ok(response) if response.status == StatusCode::NOT_FOUND => return Ok(None),
            Ok(response) if response.status.is_server_error() => format!("HTTP {}", response.status),
            Ok(response) => bail!(
                "balance of {what}: unexpected HTTP {}{}: {}",
                response.status,
                auth_hint(response.status),
                String::from_utf8_lossy(&response.body)
            ),
            Err(failure) => failure.to_string(),
        };
        if attempt >= BALANCE_ATTEMPTS {
            bail!("balance of {what}: giving up after {attempt} attempts: {problem}");
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Reads one organization's balance in kopecks; an organization the server has not seen yet has 0.
pub async fn read_balance(client: &mut Client, inn: &str) -> anyhow::Result<i64> {
    match get_balance_body(client, &balance_path(inn), inn).await? {
        Some(body) => parse_balance(&body, inn).with_context(|| format!("balance of {inn}")),
        None => Ok(0),
    }
}

/// Reads one user's balance; a user the server has not seen yet (404) owns nothing.
pub async fn read_user_balance(client: &mut Client, user_id: u64) -> anyhow::Result<UserBalance> {
    let what = format!("user {user_id}");
    match get_balance_body(client, &user_balance_path(user_id), &what).await? {
        Some(body) => parse_user_balance(&body, user_id).with_context(|| format!("balance of {what}")),
        None => Ok(UserBalance::default()),
    }
}

/// Reads every user's balance, `concurrency` at a time, each reader on its own connection.
pub async fn read_user_balances(
    target: &Target,
    timeout: Duration,
    users: Arc<Vec<u64>>,
    concurrency: usize,
) -> anyhow::Result<Vec<UserBalance>> {
    let next = Arc::new(AtomicUsize::new(0));
    let readers = concurrency.clamp(1, users.len().max(1));
    let mut tasks = Vec::with_capacity(readers);
    for _ in 0..readers {
        let (users, next) = (Arc::clone(&users), Arc::clone(&next));
        let mut client = Client::new(target.clone(), timeout);
        tasks.push(tokio::spawn(async move {
            let mut found = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(&user) = users.get(index) else { break };
                found.push((index, read_user_balance(&mut client, user).await?));
            }
            Ok::<_, anyhow::Error>(found)
        }));
    }
    let mut balances = vec![UserBalance::default(); users.len()];
    for task in tasks {
        for (index, balance) in task.await.context("balance reader panicked")?? {
            balances[index] = balance;
        }
    }
    Ok(balances)
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
    fn user_balance_is_read_from_the_literals() {
        let body = br#"{"user_id": 2, "amount": 100.00, "reserved": 0.00}"#;
        assert_eq!(parse_user_balance(body, 2).unwrap(), UserBalance { amount: 10_000, reserved: 0 });
        let body = br#"{"user_id": 4000000000000001, "amount": 90071992547409.93, "reserved": "0.05"}"#;
        let balance = parse_user_balance(body, 4_000_000_000_000_001).unwrap();
        assert_eq!(balance, UserBalance { amount: 9_007_199_254_740_993, reserved: 5 });
        assert_eq!(balance.total(), 9_007_199_254_740_998);
        for bad in [
            &br#"{"user_id": 3, "amount": 1.00, "reserved": 0.00}"#[..],
            br#"{"user_id": 2, "amount": 1.00}"#,
            br#"{"user_id": 2, "reserved": 0.00}"#,
            br#"{"user_id": 2, "amount": 1.001, "reserved": 0.00}"#,
            br#"{"user_id": 2, "amount": 1e2, "reserved": 0.00}"#,
            br#"{"user_id": 2, "amount": null, "reserved": 0.00}"#,
            b"[]",
        ] {
            assert!(parse_user_balance(bad, 2).is_err(), "{} was accepted", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn user_api_bodies_are_the_documented_shape() {
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(&add_funds_body(1, 10_000)).unwrap();
        assert_eq!((fields["user_id"].get(), fields["amount"].get()), ("1", "\"100.00\""));
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(&transfer_body(1, 2, 500)).unwrap();
        assert_eq!(fields["sender_id"].get(), "1");
        assert_eq!(fields["recipient_id"].get(), "2");
        assert_eq!(fields["amount"].get(), "\"5.00\"");
        assert_eq!(user_balance_path(2), "/api/balances/?user_id=2");
    }

    #[test]
    fn history_pages_are_read_exactly() {
        let body = br#"{"results": [
            {"id": 9, "user": 7, "user_id": 7, "amount": "-40.00", "available_change": "-40.00",
             "reserved_change": "0.00", "transaction_type": "transfer", "comment": "transfer to user 8",
             "counterparty_id": 8, "created_at": "2024-07-01T12:00:00.123456Z"},
            {"id": 3, "user": 7, "user_id": 7, "amount": "90071992547409.93", "available_change": "90071992547409.93",
             "reserved_change": "0.00", "transaction_type": "deposit", "comment": "deposit",
             "created_at": "2024-07-01T12:00:00Z"}
        ], "next_cursor": null}"#;
        let page = parse_history_page(body, 7).unwrap();
        assert!(page.last);
        assert_eq!(page.lines.len(), 2);
        assert_eq!(
            page.lines[1],
            HistoryLine {
                transaction_type: "deposit".into(),
                available_change: 9_007_199_254_740_993,
                reserved_change: 0
            }
        );
        assert_eq!(page.sum(), UserBalance { amount: 9_007_199_254_740_993 - 4_000, reserved: 0 });
        let more = parse_history_page(br#"{"results": [], "next_cursor": "64617465"}"#, 7).unwrap();
        assert_eq!((more.lines.len(), more.last), (0, false));
        assert_eq!(history_path(7), "/api/users/7/transactions/");
    }

    #[test]
    fn bad_history_pages_are_errors() {
        let line = |user: &str, change: &str| {
            format!(
                r#"{{"results": [{{"user_id": {user}, "available_change": {change}, "reserved_change": "0.00",
                "transaction_type": "deposit"}}], "next_cursor": null}}"#
            )
        };
        assert!(parse_history_page(line("7", "\"1.00\"").as_bytes(), 7).is_ok());
        for bad in [
            line("8", "\"1.00\""),
            line("7", "\"1.001\""),
            line("7", "1e2"),
            line("7", "null"),
            r#"{"results": [], "next_cursor": 5}"#.to_owned(),
            r#"{"results": []}"#.to_owned(),
            r#"{"next_cursor": null}"#.to_owned(),
            r#"{"results": [1], "next_cursor": null}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert!(parse_history_page(bad.as_bytes(), 7).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn error_codes_are_read_from_json_errors_only() {
        let body = br#"{"error": "Insufficient funds", "code": "insufficient_funds", "available": "1.00"}"#;
        assert_eq!(error_code(body).as_deref(), Some(INSUFFICIENT_FUNDS));
        assert_eq!(error_code(br#"{"error": "x"}"#), None);
        assert_eq!(error_code(br#"{"code": 409}"#), None);
        assert_eq!(error_code(b"<html>busy</html>"), None);
    }

    #[test]
    fn payout_api_is_the_documented_shape() {
        let value: serde_json::Value = serde_json::from_slice(&payout_body(1_234)).unwrap();
        assert_eq!(value["amount"], "12.34");
        assert_eq!(value["currency"], "RUB");
        assert_eq!(value["recipient_details"]["type"], "card");
        assert_eq!(value["recipient_details"]["number"], PAYOUT_CARD);
        assert_eq!(value["recipient_details"]["holder"], "Bench");
        assert_eq!(value["description"], "bench");
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(&payout_body(1)).unwrap();
        assert_eq!(fields["amount"].get(), "\"0.01\"");
        assert_eq!(payout_count_path(PayoutStatus::Processing), "/api/v1/payouts/?status=processing&page_size=1");
    }

    #[test]
    fn payout_counts_are_read_exactly() {
        let page = br#"{"count": 9007199254740993, "next": "/api/v1/payouts/?page=2&page_size=1", "previous": null,
                        "results": [{"id": "x", "amount": "1.00"}]}"#;
        assert_eq!(parse_payout_count(page).unwrap(), 9_007_199_254_740_993);
        assert_eq!(parse_payout_count(br#"{"count":0,"results":[]}"#).unwrap(), 0);
        for bad in [&br#"{"results": []}"#[..], br#"{"count": -1}"#, br#"{"count": 1.5}"#, br#"{"count": "3"}"#, b"[]"]
        {
            assert!(parse_payout_count(bad).is_err(), "{} was accepted", String::from_utf8_lossy(bad));
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

        let operation: serde_json::Value = serde_json::from_str(&notice_operation(&body)).unwrap();
        assert_eq!(operation["type"], "bank_notice");
        assert_eq!(operation["operation_id"], value["operation_id"]);
        assert_eq!(operation.as_object().unwrap().len(), value.as_object().unwrap().len() + 1);

        let numeric = webhook_body(id, INN, 5, 1, false);
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_slice(&numeric).unwrap();
        assert_eq!(fields["amount"].get(), "0.05");
    }
}
