//! `payledger verify`: runs every invariant check, with a progress bar on a terminal, and reports to a person
//! (the default) or to monitoring (`--json`). Exit status: 0 when every invariant holds, 1 on any violation,
//! 2 when the checks could not run.

use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use crate::store::{CheckReport, Store, StoreError, VerifyReport, check_count};

/// The exit status when at least one invariant is broken.
pub const EXIT_VIOLATIONS: u8 = 1;
/// The exit status when the checks could not run (no database, say): nothing is known about the ledger.
pub const EXIT_NOT_CHECKED: u8 = 2;

const PROGRESS_TEMPLATE: &str = "verify {elapsed_precise} [{bar:24}] {pos}/{len} checks done; now: {msg}";

/// `payledger verify [--json] [--explain]`: the exit status of whatever was asked. Any failure to run (no
/// database, a missing file, a refused connection) is [`EXIT_NOT_CHECKED`], never [`EXIT_VIOLATIONS`].
pub async fn main(database_url: &str, json: bool, explain: bool) -> ExitCode {
    if explain {
        return match explain_plans(database_url).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => not_checked(json, &error),
        };
    }
    run(database_url, json).await
}

/// Runs the checks against the database at `database_url` and prints the report; returns the exit status.
pub async fn run(database_url: &str, json: bool) -> ExitCode {
    let started = Instant::now();
    // Read only at the connection: a mistyped path creates nothing, and no check can change the ledger.
    let result = match Store::connect_read_only(database_url).await {
        Ok(store) => check(&store).await.map(|report| (report, store.backend())),
        Err(error) => Err(error),
    };
    let (report, backend) = match result {
        Ok(found) => found,
        Err(error) => return not_checked(json, &error),
    };
    let elapsed_ms = millis(started.elapsed());
    if json {
        print_json(&report, backend, elapsed_ms);
    } else {
        print_human(&report, elapsed_ms);
    }
    if report.violations() == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_VIOLATIONS) }
}

/// Reports that the checks could not run: on standard error, and under `--json` as the stable failure line
/// `{"ok":false,"error":"…"}` (docs/ARCHITECTURE.md), so monitoring always gets one JSON object.
fn not_checked(json: bool, error: &dyn std::fmt::Display) -> ExitCode {
    if json {
        let failure = serde_json::json!({ "ok": false, "error": error.to_string() });
        println!("{failure}");
    }
    eprintln!("error: the checks could not run: {error}");
    ExitCode::from(EXIT_NOT_CHECKED)
}

/// Runs every check on the database at `database_url`, opened read-only, with the progress bar, and closes its
/// connections before returning: `backup` and `restore` check a copy this way before they name or use it.
pub async fn check_read_only(database_url: &str) -> Result<VerifyReport, StoreError> {
    let store = Store::connect_read_only(database_url).await?;
    let result = check(&store).await;
    store.close().await;
    result
}

/// The checks, with a progress bar while they run.
async fn check(store: &Store) -> Result<VerifyReport, StoreError> {
    let bar = super::progress_bar(check_count() as u64, PROGRESS_TEMPLATE);
    let result = store
        .verify_with_progress(&|index, name| {
            bar.set_position(index as u64);
            bar.set_message(name);
        })
        .await;
    bar.finish_and_clear();
    result
}

pub(super) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The report for people: the totals, then OK or every problem sampled (also `backup`'s and `restore`'s).
pub(super) fn print_human(report: &VerifyReport, elapsed_ms: u64) {
    println!(
        "checked {} accounts, {} transactions, {} entries, {} applied bank payments",
        report.accounts, report.transactions, report.entries, report.bank_payments
    );
    let violations = report.violations();
    if violations == 0 {
        println!(
            "OK: every balance equals the sum of its entries and every invariant holds ({} checks in {}.{:03} s)",
            report.checks.len(),
            elapsed_ms / 1000,
            elapsed_ms % 1000
        );
        return;
    }
    for check in report.checks.iter().filter(|check| check.violations > 0) {
        for problem in &check.sample {
            println!("PROBLEM: {}: {problem}", check.name);
        }
        let unlisted = check.violations - check.sample.len() as i64;
        if unlisted > 0 {
            println!("PROBLEM: {}: and {unlisted} more", check.name);
        }
    }
    println!("FAILED: {violations} problem(s) found");
}

/// The `--json` summary. Its field names are stable: monitoring reads them.
#[derive(Serialize)]
struct JsonSummary<'a> {
    ok: bool,
    backend: &'static str,
    violations: i64,
    duration_ms: u64,
    totals: JsonTotals,
    checks: Vec<JsonCheck<'a>>,
}

#[derive(Serialize)]
struct JsonTotals {
    accounts: i64,
    transactions: i64,
    entries: i64,
    applied_bank_payments: i64,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    code: &'static str,
    name: &'static str,
    ok: bool,
    violations: i64,
    sample: &'a [String],
    duration_ms: u64,
}

impl<'a> From<&'a CheckReport> for JsonCheck<'a> {
    fn from(check: &'a CheckReport) -> JsonCheck<'a> {
        JsonCheck {
            code: check.code,
            name: check.name,
            ok: check.violations == 0,
            violations: check.violations,
            sample: &check.sample,
            duration_ms: millis(check.duration),
        }
    }
}

fn print_json(report: &VerifyReport, backend: &'static str, elapsed_ms: u64) {
    let violations = report.violations();
    let summary = JsonSummary {
        ok: violations == 0,
        backend,
        violations,
        duration_ms: elapsed_ms,
        totals: JsonTotals {
            accounts: report.accounts,
            transactions: report.transactions,
            entries: report.entries,
            applied_bank_payments: report.bank_payments,
        },
        checks: report.checks.iter().map(JsonCheck::from).collect(),
    };
    match serde_json::to_string(&summary) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("error: cannot print the summary: {error}"),
    }
}

/// `payledger verify --explain`: each check's plan, as the database chooses it now.
async fn explain_plans(database_url: &str) -> Result<(), StoreError> {
    let store = Store::connect_read_only(database_url).await?;
    for (code, lines) in store.explain_verify().await? {
        println!("{code}:");
        for line in lines {
            println!("    {line}");
        }
    }
    Ok(())
}
