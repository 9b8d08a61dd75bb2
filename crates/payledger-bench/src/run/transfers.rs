//! The transfers scenario: deposits into `--users` users, transfers among them, and every balance checked
//! against the applied transfers with no money appearing or vanishing.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{converge, run_workers};
use crate::args::{Args, USER_ID_BLOCK};
use crate::client::Target;
use crate::report::{AuthReport, Check, Summary, TransferCheck};
use crate::verify::TransferBooks;
use crate::{api, money, rss, transfers, verify};

/// The first user id of the scenarios with users (transfers, balances, history): a seed-derived block of
/// [`USER_ID_BLOCK`] ids, so a rerun with another seed uses fresh users in the same database and one with
/// the same seed reuses them.
pub(super) fn first_user_id(seed: u64) -> u64 {
    u64::from(StdRng::seed_from_u64(seed).random::<u32>()) * USER_ID_BLOCK + 1
}

/// The transfers scenario: baseline, deposits (not measured), load, settling of unknown outcomes, final
/// balances and the check.
pub async fn run_transfers(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let timeout = Duration::from_secs(args.timeout);
    let connections = args.connections as usize;
    let seed = args.seed.unwrap_or_else(rand::random);
    let first_user = first_user_id(seed);
    let users: Arc<Vec<u64>> = Arc::new((first_user..first_user + u64::from(args.users)).collect());
    let deposit = args.initial_balance;

    eprintln!(
        "payledger-bench: transfers, {} ({}), {connections} connections, {} users (ids {first_user}..={}) with {} \
         each, {} after {} s warm-up, seed {seed}",
        args.url,
        target.addr(),
        users.len(),
        first_user + u64::from(args.users) - 1,
        money::format_kopecks(deposit),
        args.window_text(),
        args.warmup
    );

    let baseline = api::read_user_balances(target, timeout, Arc::clone(&users), connections)
        .await
        .context("reading baseline balances")?;
    // Everything the users will own must fit in kopecks as i64, or the check itself would overflow.
    let owned = baseline
        .iter()
        .try_fold(0i64, |sum, balance| sum.checked_add(balance.total()))
        .and_then(|sum| i64::from(args.users).checked_mul(deposit).and_then(|deposits| sum.checked_add(deposits)));
    if owned.is_none() {
        bail!("{} users × {} is too much money to check exactly", args.users, money::format_kopecks(deposit));
    }
    let patience = Duration::from_secs(args.settle.max(1));
    let deposits_resent = transfers::deposit_all(target, timeout, Arc::clone(&users), deposit, connections, patience)
        .await
        .context("depositing the initial balances")?;

    let shared = Arc::new(transfers::Shared::new(users.len()));
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup);
    let plan = Arc::new(transfers::Plan {
        pace: args.pace(target, timeout, warmup_end, stop),
        users: Arc::clone(&users),
        batch: args.batch as usize,
    });
    let mut load = run_workers(
        connections,
        || transfers::worker(Arc::clone(&plan), Arc::clone(&shared)),
        transfers::WorkerReport::merge,
    )
    .await?;
    let elapsed = load.tally.elapsed(warmup_end);

    let pending = std::mem::take(&mut load.pending);
    if !pending.is_empty() {
        eprintln!("payledger-bench: resending {} transfers whose outcome is unknown", pending.len());
    }
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle);
    let settled = transfers::settle(pending, target, timeout, settle_deadline, &shared).await;

    let (sent, received) = (shared.sent_totals(), shared.received_totals());
    let books = TransferBooks { users: &users, baseline: &baseline, deposit, sent: &sent, received: &received };
    let verification = converge(args, verify::TransferVerification::ok, async || {
        let actual = api::read_user_balances(target, timeout, Arc::clone(&users), connections)
            .await
            .context("reading final balances")?;
        Ok(verify::verify_transfers(books, &actual, &settled.unresolved))
    })
    .await?;

    Ok(Summary {
        measured: load.tally.measured,
        elapsed,
        warmup_requests: load.tally.warmup_requests,
        acknowledged_ops: load.applied + load.refused,
        connects: load.tally.connects,
        first_error: load.tally.first_error,
        settled: settled.settled,
        unresolved: settled.unresolved.len(),
        verification: Check::Transfers(TransferCheck {
            first_user,
            deposits_resent,
            applied: load.applied + settled.applied,
            refused: load.refused + settled.refused,
            verification,
        }),
        server_peak_rss_kib: args.server_pid.map(|pid| rss::peak_rss_kib(pid).map_err(|e| format!("{e:#}"))),
        // Filled in by `run`, which knows the whole run's refusals.
        auth: AuthReport::default(),
        events: None,
        batch: 1,
    })
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::super::run;
    use super::super::test_support::*;
    use super::*;
    use crate::exit_code;
    use crate::mock::{Mock, MockConfig};

    #[test]
    fn user_ids_come_from_the_seed_in_disjoint_blocks() {
        assert_eq!(first_user_id(7), first_user_id(7));
        assert_ne!(first_user_id(7), first_user_id(8));
        for seed in 0..100 {
            assert_eq!(first_user_id(seed) % USER_ID_BLOCK, 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_against_a_correct_server_are_exact() {
        let mock = Mock::start(MockConfig::default()).await;
        let summary =
            bench_transfers(&mock, &["--connections", "4", "--users", "5", "--requests", "400", "--json"]).await;
        let m = &summary.measured;
        let t = transfers(&summary);
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!(m.requests, 400);
        assert_eq!((m.status.created, m.transfers.applied, t.applied), (400, 400, 400));
        assert_eq!((t.refused, t.deposits_resent, m.kinds.retry), (0, 0, 0));
        assert_eq!(m.latency.count(), 400);
        assert_eq!(t.verification.total, 5 * 100_000_000);
        assert_eq!(t.verification.total, mock.user_total());
        assert!(t.verification.moved > 0);
        assert_eq!(mock.user_calls(), 5 + 400);
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
        let text = summary.render_text();
        assert!(text.contains("statuses:    201: 400  409 insufficient funds: 0  409 in flight: 0"), "{text}");
        assert!(text.contains("transfers:   400 applied, 0 refused"), "{text}");
        assert!(text.contains("balances: OK (5 users, total 5000000.00 as deposited, conserved;"), "{text}");
        let json = summary.to_json();
        assert_eq!(json["scenario"], "transfers");
        assert_eq!((json["applied"].as_u64(), json["refused"].as_u64()), (Some(400), Some(0)));
        assert_eq!(json["balances"]["ok"], true);
        assert_eq!(json["balances"]["total"], "5000000.00");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_transfer_outcomes_are_resent_with_the_same_key() {
        // Every 7th deposit or transfer is applied but answered 503, every 7th + 1 is refused with 503,
        // every 7th + 2 is answered "in flight", and connections are cut: every kopeck must still add up,
        // which it only does if each resend carried the first attempt's key and body.
        let config = MockConfig { fail_every: 7, close_every: 11, ..MockConfig::default() };
        let mock = Mock::start(config).await;
        let summary = bench_transfers(
            &mock,
            &["--connections", "8", "--users", "3", "--requests", "700", "--initial-balance", "50.00"],
        )
        .await;
        let m = &summary.measured;
        let t = transfers(&summary);
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!((summary.unresolved, t.verification.unverified_users), (0, 0));
        assert!(t.deposits_resent > 0, "{}", summary.render_text());
        assert!(m.status.unavailable > 0 && m.transfers.in_flight > 0 && m.kinds.retry > 0);
        assert!(summary.connects > 8, "connections were cut, so some must have been reopened");
        assert!(t.applied > 0 && t.refused > 0, "{}", summary.render_text());
        assert_eq!(t.verification.total, mock.user_total());
        assert_eq!(mock.user_total(), 3 * 5_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hot_pair_counts_refusals_apart_from_errors() {
        let mock = Mock::start(MockConfig::default()).await;
        let summary = bench_transfers(
            &mock,
            &["--connections", "4", "--users", "2", "--requests", "300", "--initial-balance", "20.00"],
        )
        .await;
        let m = &summary.measured;
        let t = transfers(&summary);
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert!(t.refused > 100 && t.applied > 0, "{}", summary.render_text());
        assert_eq!(t.applied + t.refused, 300);
        assert_eq!((m.transfers.refused, m.status.client_error), (t.refused, t.refused));
        assert_eq!(m.status.server_error + m.errors.transport + m.errors.timeout, 0);
        assert_eq!(mock.user_total(), 4_000);
        assert!(summary.render_text().contains("other 4xx: 0"), "{}", summary.render_text());
        assert_eq!(summary.to_json()["refused"].as_u64(), Some(t.refused));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_applied_twice_are_caught() {
        // The server applies resends again: the retried transfers (and deposits) move money twice.
        let config = MockConfig { fail_every: 5, ignore_idempotency_keys: true, ..MockConfig::default() };
        let mock = Mock::start(config).await;
        let summary = bench_transfers(&mock, &["--connections", "2", "--users", "4", "--requests", "200"]).await;
        assert!(!summary.verification.ok());
        let text = summary.render_text();
        assert!(text.contains("balances: MISMATCH in "), "{text}");
        assert!(text.contains("  user "), "{text}");
        assert_eq!(summary.to_json()["balances"]["ok"], false);
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn money_that_vanishes_is_caught() {
        let mock = Mock::start(MockConfig { skim: true, ..MockConfig::default() }).await;
        let summary = bench_transfers(&mock, &["--connections", "2", "--users", "10", "--requests", "50"]).await;
        let t = transfers(&summary);
        assert!(!t.verification.conserved());
        assert_eq!(t.verification.expected_total - t.verification.total, 50);
        let text = summary.render_text();
        assert!(text.contains("money not conserved: total 9999999.50, deposited 10000000.00 (off by -0.50)"), "{text}");
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_transfers_run_with_the_same_seed_starts_from_the_first() {
        let mock = Mock::start(MockConfig::default()).await;
        let same_users = ["--connections", "3", "--users", "3", "--requests", "100", "--seed", "7"];
        let first = bench_transfers(&mock, &same_users).await;
        let second = bench_transfers(&mock, &same_users).await;
        assert!(first.verification.ok() && second.verification.ok(), "{}", second.render_text());
        let (first, second) = (transfers(&first), transfers(&second));
        assert_eq!(first.first_user, second.first_user);
        assert_eq!(second.verification.total, 2 * first.verification.total);
        // Another seed is another block of users, untouched so far.
        let other = bench_transfers(&mock, &["--users", "3", "--requests", "10", "--seed", "8"]).await;
        assert_ne!(transfers(&other).first_user, first.first_user);
        assert_eq!(transfers(&other).verification.total, first.verification.total);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicate_share_is_refused_for_transfers() {
        let mock = Mock::start(MockConfig::default()).await;
        let args = args(&mock, &["--scenario", "transfers", "--duplicate-share", "10"]);
        let error = run(&args, Arc::new(AtomicBool::new(false))).await.unwrap_err();
        assert!(format!("{error:#}").contains("--duplicate-share"), "{error:#}");
        assert_eq!(mock.user_calls(), 0);
    }
}
