//! The payouts scenario: payouts created under load, then the drain of the server's payout queue timed and
//! every created payout checked to have completed.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::run_workers;
use crate::args::Args;
use crate::client::{Client, Target};
use crate::report::{AuthReport, Check, PayoutCheck, Summary};
use crate::{load, payouts, rss, verify};

/// The payouts scenario: baseline counts, creation (measured like the other scenarios), then the counts
/// polled until the queue has drained, and the check.
pub async fn run_payouts(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let timeout = Duration::from_secs(args.timeout);
    let connections = args.connections as usize;
    let patience_secs = args.converge_secs();
    eprintln!(
        "payledger-bench: payouts, {} ({}), {connections} connections, {} after {} s warm-up, then up to {} s \
         for the queue to drain",
        args.url,
        target.addr(),
        args.window_text(),
        args.warmup,
        patience_secs
    );

    let baseline = payouts::read_queue_counts(&mut Client::new(target.clone(), timeout))
        .await
        .context("reading the payout counts before the load")?;
    if baseline.unfinished() > 0 {
        eprintln!(
            "payledger-bench: {} payouts pending and {} processing before the run; they will finish during it",
            baseline.pending, baseline.processing
        );
    }

    let shared = Arc::new(payouts::Shared::default());
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup);
    let plan = Arc::new(payouts::Plan { pace: args.pace(target, timeout, warmup_end, stop) });
    let load = run_workers(
        connections,
        || payouts::worker(Arc::clone(&plan), Arc::clone(&shared)),
        payouts::WorkerReport::merge,
    )
    .await?;
    let elapsed = load.tally.elapsed(warmup_end);

    let first_sent = load.first_sent.unwrap_or(start);
    let patience = Duration::from_secs(patience_secs);
    let drain = payouts::drain(target, timeout, patience, first_sent, &plan.pace.stop).await?;
    let outcomes = load.outcomes;
    let verification = verify::PayoutVerification {
        created: outcomes.created,
        in_doubt: outcomes.in_doubt(),
        baseline,
        last: drain.last,
    };

    Ok(Summary {
        measured: load.tally.measured,
        elapsed,
        warmup_requests: load.tally.warmup_requests,
        acknowledged_ops: outcomes.created,
        connects: load.tally.connects,
        first_error: load.tally.first_error,
        settled: load::Settled::default(),
        unresolved: usize::try_from(outcomes.in_doubt()).unwrap_or(usize::MAX),
        verification: Check::Payouts(PayoutCheck { outcomes, drain, patience_secs, verification }),
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::super::run;
    use super::super::test_support::*;
    use crate::exit_code;
    use crate::mock::{Mock, MockConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payouts_against_a_correct_server_are_counted_and_drained() {
        // One simulated worker at 2 ms a payout: creation outruns it, so there is a queue left to drain.
        let mock = Mock::start(MockConfig { payout_micros: 2_000, ..MockConfig::default() }).await;
        let summary =
            bench_payouts(&mock, &["--connections", "4", "--requests", "300", "--converge", "20", "--json"]).await;
        let m = &summary.measured;
        let p = payouts(&summary);
        let v = &p.verification;
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!((m.requests, m.status.created, m.payouts.created, m.latency.count()), (300, 300, 300, 300));
        assert_eq!((p.outcomes.created, p.outcomes.refused, p.outcomes.in_doubt()), (300, 0, 0));
        assert_eq!((v.created, v.completed(), v.failed(), v.last.unfinished()), (300, 300, 0, 0));
        assert_eq!((mock.payout_posts(), mock.payouts_created()), (300, 300));
        assert!(p.drain.drained && p.drain.at_stop.unfinished() > 0, "{}", summary.render_text());
        assert!(p.drain.completed_during_drain() > 0 && p.drain.drain_rate_tenths().is_some_and(|r| r > 0));
        assert!(p.overall_rate_tenths().is_some_and(|r| r > 0));
        assert!(p.drain.since_first_creation > p.drain.elapsed);
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
        let text = summary.render_text();
        assert!(
            text.contains("statuses:    201: 300  4xx: 0  other 2xx: 0  1xx/3xx: 0  5xx: 0 (503: 0, of which"),
            "{text}"
        );
        assert!(
            text.contains("created:     300 payouts (warm-up included; connections opened: 4); 0 certainly"),
            "{text}"
        );
        assert!(text.contains("drain:       nothing pending or processing "), "{text}");
        assert!(text.contains("by status:   completed 300 (+300), failed 0 (+0), pending 0, processing 0"), "{text}");
        assert!(
            text.ends_with(
                "payouts: OK (completed + failed grew by 300, expected 300 from 300 created; none failed)\n"
            ),
            "{text}"
        );
        let json = summary.to_json();
        assert_eq!(json["scenario"], "payouts");
        assert_eq!(json["status"]["201"], 300);
        let j = &json["payouts"];
        assert_eq!(
            (j["ok"].as_bool(), j["created"].as_u64(), j["completed"].as_i64()),
            (Some(true), Some(300), Some(300))
        );
        assert_eq!(
            (j["failed"].as_i64(), j["in_doubt"].as_u64(), j["drained"].as_bool()),
            (Some(0), Some(0), Some(true))
        );
        assert_eq!(j["counts_final"]["completed"], 300);
        assert!(j["drain_payouts_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{j}");
        assert!(j["overall_payouts_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{j}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payouts_in_doubt_are_counted_and_never_resent() {
        // Every 7th creation is refused with 503 overloaded, every 7th + 6 is created but answered 503
        // unconfirmed, and connections are cut: nothing may be resent, and the counts must still add up.
        let config = MockConfig { fail_every: 7, close_every: 11, ..MockConfig::default() };
        let mock = Mock::start(config).await;
        let summary = bench_payouts(&mock, &["--connections", "8", "--requests", "350", "--converge", "5"]).await;
        let m = &summary.measured;
        let p = payouts(&summary);
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!(m.requests, 350);
        assert_eq!(p.outcomes.created + p.outcomes.refused + p.outcomes.in_doubt(), 350);
        assert!(p.outcomes.refused >= 40 && p.outcomes.unconfirmed >= 40, "{:?}", p.outcomes);
        assert_eq!(m.payouts.unconfirmed, p.outcomes.unconfirmed);
        // One request, one creation attempt at most: nothing was resent.
        assert!(mock.payout_posts() <= 350, "{} posts for 350 requests", mock.payout_posts());
        let created = i64::try_from(mock.payouts_created()).unwrap();
        assert_eq!(p.verification.completed(), created);
        let (lower, upper) = p.verification.expected_finished();
        assert!(lower < upper && (lower..=upper).contains(&created), "{lower}..={upper} vs {created}");
        assert!(summary.render_text().contains("in doubt and not resent"), "{}", summary.render_text());
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_payouts_are_caught_by_the_drain_check() {
        // Every 10th payout is answered 201 but never shows up in any count.
        let mock = Mock::start(MockConfig { lose_payout_every: 10, ..MockConfig::default() }).await;
        let summary = bench_payouts(&mock, &["--connections", "2", "--requests", "100", "--converge", "5"]).await;
        let p = payouts(&summary);
        assert!(!summary.verification.ok());
        assert!(p.drain.drained, "the queue drained; the counts just do not add up");
        assert_eq!((p.verification.created, p.verification.completed()), (100, 90));
        let text = summary.render_text();
        assert!(
            text.contains(
                "payouts: MISMATCH (completed + failed grew by 90, expected 100 from 100 created and 0 in doubt)"
            ),
            "{text}"
        );
        assert_eq!(summary.to_json()["payouts"]["ok"], false);
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_payouts_fail_the_run() {
        let mock = Mock::start(MockConfig { fail_payout_every: 25, ..MockConfig::default() }).await;
        let summary = bench_payouts(&mock, &["--connections", "2", "--requests", "100", "--converge", "5"]).await;
        let v = &payouts(&summary).verification;
        assert!(v.adds_up() && v.drained() && !v.ok());
        assert_eq!((v.completed(), v.failed()), (96, 4));
        assert!(
            summary.render_text().contains("payouts: MISMATCH (4 failed, and none should"),
            "{}",
            summary.render_text()
        );
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_that_never_drains_is_given_up_on_at_the_converge_limit() {
        let mock = Mock::start(MockConfig { stuck_payouts: true, ..MockConfig::default() }).await;
        let started = Instant::now();
        let summary = bench_payouts(&mock, &["--connections", "2", "--requests", "20", "--converge", "1"]).await;
        let p = payouts(&summary);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!p.drain.drained && p.drain.elapsed >= Duration::from_secs(1), "{:?}", p.drain);
        assert!(p.drain.polls >= 4, "{:?}", p.drain);
        assert_eq!(p.drain.last.pending, 20);
        let text = summary.render_text();
        assert!(text.contains("drain:       still 20 pending and 0 processing "), "{text}");
        assert!(
            text.contains("payouts: MISMATCH (the queue did not drain: 20 pending, 0 processing; completed"),
            "{text}"
        );
        assert_eq!(summary.to_json()["payouts"]["drained"], false);
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ctrl_c_during_the_drain_ends_it_and_still_checks() {
        let mock = Mock::start(MockConfig { stuck_payouts: true, ..MockConfig::default() }).await;
        let args =
            args(&mock, &["--scenario", "payouts", "--connections", "2", "--requests", "10", "--converge", "60"]);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            flag.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let summary = run(&args, stop).await.unwrap();
        let p = payouts(&summary);
        assert!(started.elapsed() < Duration::from_secs(5), "the drain ignored the stop");
        assert!(p.drain.interrupted && !p.drain.drained);
        let text = summary.render_text();
        assert!(text.contains("(stopped by Ctrl-C)"), "{text}");
        assert!(text.contains("payouts: MISMATCH (the queue did not drain: 10 pending"), "{text}");
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_payouts_run_counts_from_the_first_runs_totals() {
        let mock = Mock::start(MockConfig::default()).await;
        let first = bench_payouts(&mock, &["--connections", "2", "--requests", "30"]).await;
        let second = bench_payouts(&mock, &["--connections", "2", "--requests", "40"]).await;
        assert!(first.verification.ok() && second.verification.ok(), "{}", second.render_text());
        let v = &payouts(&second).verification;
        assert_eq!((v.baseline.completed, v.last.completed, v.completed()), (30, 70, 40));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicate_share_is_refused_for_payouts() {
        let mock = Mock::start(MockConfig::default()).await;
        let args = args(&mock, &["--scenario", "payouts", "--duplicate-share", "10"]);
        let error = run(&args, Arc::new(AtomicBool::new(false))).await.unwrap_err();
        assert!(format!("{error:#}").contains("--duplicate-share"), "{error:#}");
        assert_eq!(mock.payout_posts(), 0);
    }
}
