//! The webhook scenario: bank notices paying `--orgs` organizations, each acknowledged one booked exactly once.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{converge, run_workers};
use crate::args::Args;
use crate::client::Target;
use crate::load::{self, Plan, Shared, WorkerReport};
use crate::report::{AuthReport, Check, Summary};
use crate::{api, inn, rss, verify};

/// The webhook scenario: baseline, load, settling of unknown outcomes, final balances and the check.
pub async fn run_webhook(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let timeout = Duration::from_secs(args.timeout);
    let connections = args.connections as usize;
    let seed = args.seed.unwrap_or_else(rand::random);
    let inns = Arc::new(inn::distinct(args.orgs as usize, &mut StdRng::seed_from_u64(seed)));

    let window = args.window_text();
    eprintln!(
        "payledger-bench: {} ({}), {connections} connections, {} orgs, {}% duplicates, {window} after {} s warm-up, seed {seed}",
        args.url,
        target.addr(),
        inns.len(),
        args.duplicate_share,
        args.warmup
    );

    let baseline = api::read_balances(target, timeout, Arc::clone(&inns), connections)
        .await
        .context("reading baseline balances")?;

    let shared = Arc::new(Shared::new(inns.len()));
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup);
    let plan = Arc::new(Plan {
        pace: args.pace(target, timeout, warmup_end, stop),
        inns: Arc::clone(&inns),
        duplicate_percent: args.duplicate_share,
    });
    let mut load =
        run_workers(connections, || load::worker(Arc::clone(&plan), Arc::clone(&shared)), WorkerReport::merge).await?;
    let elapsed = load.tally.elapsed(warmup_end);

    let pending = std::mem::take(&mut load.pending);
    if !pending.is_empty() {
        eprintln!("payledger-bench: resending {} notices whose outcome is unknown", pending.len());
    }
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle);
    let (settled, unresolved) = load::settle(pending, target, timeout, settle_deadline, &shared).await;

    let verification = converge(args, verify::Verification::ok, async || {
        let actual = api::read_balances(target, timeout, Arc::clone(&inns), connections)
            .await
            .context("reading final balances")?;
        Ok(verify::verify(&inns, &baseline, &shared.acknowledged_totals(), &actual, &unresolved))
    })
    .await?;

    Ok(Summary {
        measured: load.tally.measured,
        elapsed,
        warmup_requests: load.tally.warmup_requests,
        acknowledged_ops: load.acknowledged_ops,
        connects: load.tally.connects,
        first_error: load.tally.first_error,
        settled,
        unresolved: unresolved.len(),
        verification: Check::Webhook(verification),
        server_peak_rss_kib: args.server_pid.map(|pid| rss::peak_rss_kib(pid).map_err(|e| format!("{e:#}"))),
        // Filled in by `run`, which knows the whole run's refusals.
        auth: AuthReport::default(),
    })
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use clap::Parser;

    use super::super::run;
    use super::super::test_support::*;
    use crate::args::Args;
    use crate::exit_code;
    use crate::mock::{Mock, MockConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_correct_server_passes_with_duplicates() {
        let mock = Mock::start(MockConfig::default()).await;
        let summary =
            bench(&mock, &["--connections", "4", "--orgs", "5", "--requests", "400", "--duplicate-share", "30"]).await;
        let m = &summary.measured;
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!(m.requests, 400);
        assert_eq!(m.status.ok, 400);
        assert_eq!(m.latency.count(), 400);
        assert!(m.kinds.duplicate > 50, "{:?}", m.kinds);
        assert_eq!(summary.total_acknowledged(), m.kinds.fresh);
        assert_eq!(webhook(&summary).total, mock.total());
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_outcomes_are_resent_until_settled() {
        // Every 7th notice is booked but answered 503, every 7th + 1 is refused with 503, and connections are
        // cut without warning: the bench must still account for every kopeck.
        let mock = Mock::start(MockConfig { fail_every: 7, close_every: 11, ..MockConfig::default() }).await;
        let summary = bench(&mock, &["--connections", "8", "--orgs", "3", "--requests", "700"]).await;
        let m = &summary.measured;
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!(summary.unresolved, 0);
        assert!(m.status.unavailable > 0 && m.kinds.retry > 0, "{}", summary.render_text());
        assert!(summary.connects > 8, "connections were cut, so some must have been reopened");
        assert_eq!(webhook(&summary).total, mock.total());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn double_booked_duplicates_are_caught() {
        let mock = Mock::start(MockConfig { book_duplicates: true, ..MockConfig::default() }).await;
        let summary =
            bench(&mock, &["--connections", "2", "--orgs", "3", "--requests", "200", "--duplicate-share", "50"]).await;
        assert!(!summary.verification.ok());
        assert!(summary.render_text().contains("balances: MISMATCH"));
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_run_starts_from_the_first_runs_balances() {
        let mock = Mock::start(MockConfig::default()).await;
        let same_orgs = ["--connections", "3", "--orgs", "1", "--requests", "100", "--seed", "7"];
        let first = bench(&mock, &same_orgs).await;
        let second = bench(&mock, &same_orgs).await;
        assert!(first.verification.ok() && second.verification.ok());
        let (first, second) = (webhook(&first), webhook(&second));
        assert!(second.total > first.total);
        assert_eq!(second.total, first.total + second.acknowledged);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duration_mode_measures_after_the_warmup() {
        let mock = Mock::start(MockConfig::default()).await;
        let mut args = args(&mock, &["--connections", "2", "--orgs", "10", "--duration", "1", "--json"]);
        args.warmup = 1;
        let summary = run(&args, Arc::new(AtomicBool::new(false))).await.unwrap();
        assert!(summary.verification.ok());
        assert!(summary.warmup_requests > 0 && summary.measured.requests > 0);
        assert!(summary.elapsed >= Duration::from_millis(900) && summary.elapsed < Duration::from_secs(3));
        // Warm-up notices are booked too, so they are part of what was verified.
        assert_eq!(summary.total_acknowledged(), summary.warmup_requests + summary.measured.requests);
        assert_eq!(summary.to_json()["balances"]["ok"], true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_server_fails_up_front() {
        let mock = Mock::start(MockConfig::default()).await;
        let url = format!("http://{}", mock.addr());
        drop(mock);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let args = Args::try_parse_from(["payledger-bench", "--url", &url, "--timeout", "1", "--orgs", "1"]).unwrap();
        let error = run(&args, Arc::new(AtomicBool::new(false))).await.unwrap_err();
        assert!(format!("{error:#}").contains("baseline"), "{error:#}");
    }
}
