//! The webhook scenario: bank notices paying `--orgs` organizations, each acknowledged one booked exactly once;
//! with `--event-receiver`, also each one's `bank_payment.credited` event delivered to the bench.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{converge, run_workers};
use crate::args::Args;
use crate::client::{Client, Target};
use crate::events::{self, Receiver};
use crate::load::{self, Plan, Shared, WorkerReport};
use crate::report::{AuthReport, Check, Summary};
use crate::{api, inn, rss, verify};

/// The webhook scenario, with `--event-receiver` between the registration of the bench's receiver and its
/// deletion (which happens however the run went).
pub async fn run_webhook(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    if !args.event_receiver {
        return run_load(args, target, stop, None).await;
    }
    let receiver = Receiver::start().await?;
    let mut client = Client::new(target.clone(), Duration::from_secs(args.timeout));
    let endpoint = events::register(&mut client, &receiver.url()).await?;
    eprintln!("payledger-bench: receiving events at {} (endpoint {endpoint})", receiver.url());
    let result = run_load(args, target, stop, Some((&receiver, &endpoint))).await;
    let cleanup = events::unregister(&mut client, &endpoint).await;
    if let Err(why) = &cleanup {
        // Left behind, it would keep the server's workers retrying deliveries to a receiver that is gone.
        eprintln!("payledger-bench: could not delete webhook endpoint {endpoint}, delete it by hand: {why}");
    }
    let mut summary = result?;
    if let Some(check) = &mut summary.events {
        check.cleanup_error = cleanup.err();
    }
    Ok(summary)
}

/// The webhook scenario proper: baseline, load, settling of unknown outcomes, final balances and the check;
/// with a receiver, then the wait for the events and their check.
async fn run_load(
    args: &Args,
    target: &Target,
    stop: Arc<AtomicBool>,
    receiver: Option<(&Receiver, &str)>,
) -> anyhow::Result<Summary> {
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
        record_ids: receiver.is_some(),
        batch: args.batch as usize,
    });
    let mut load =
        run_workers(connections, || load::worker(Arc::clone(&plan), Arc::clone(&shared)), WorkerReport::merge).await?;
    let elapsed = load.tally.elapsed(warmup_end);
    // Events that arrive from here on were delivered after the load: the drain.
    let load_end = (Instant::now(), receiver.map_or(0, |(receiver, _)| receiver.counts().distinct));

    let pending = std::mem::take(&mut load.pending);
    if !pending.is_empty() {
        eprintln!("payledger-bench: resending {} notices whose outcome is unknown", pending.len());
    }
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle);
    let mut acknowledged_ids = std::mem::take(&mut load.acknowledged_ids);
    let (settled, unresolved) =
        load::settle(pending, target, timeout, settle_deadline, &shared, &mut acknowledged_ids).await;

    let verification = converge(args, verify::Verification::ok, async || {
        let actual = api::read_balances(target, timeout, Arc::clone(&inns), connections)
            .await
            .context("reading final balances")?;
        Ok(verify::verify(&inns, &baseline, &shared.acknowledged_totals(), &actual, &unresolved))
    })
    .await?;

    let events = match receiver {
        Some((receiver, endpoint)) => {
            let in_doubt: Vec<_> = unresolved.iter().map(|op| op.operation_id).collect();
            let expected =
                events::Expected { endpoint, acknowledged: &acknowledged_ids, in_doubt: &in_doubt, load_end };
            Some(expected.collect(receiver, args.converge_secs(), &plan.pace.stop).await)
        }
        None => None,
    };

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
        events,
        batch: 1,
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
        assert!(summary.events.is_none() && summary.to_json().get("events").is_none());
        assert!(!summary.render_text().contains("events"), "{}", summary.render_text());
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
    async fn batched_notices_are_booked_each_by_its_own_result() {
        // Every 7th notice is refused 503 in its place and every 7th + 1 booked but answered 503 in its place;
        // every 5th batch is booked and answered 503 as a whole, every 5th + 1 one result short; connections
        // are cut. Each notice must be resent (in a later batch or after the load) and booked exactly once.
        let mock = Mock::start(MockConfig {
            fail_every: 7,
            batch_fail_every: 5,
            close_every: 11,
            token_ttl_secs: 900,
            ..MockConfig::default()
        })
        .await;
        let summary = bench(
            &mock,
            &[&AS_OPERATOR[..], &["--connections", "3", "--orgs", "4", "--requests", "30", "--batch", "20"]].concat(),
        )
        .await;
        let m = &summary.measured;
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!((summary.unresolved, m.requests), (0, 30));
        assert!(m.status.ok >= 20 && m.status.unavailable >= 5, "{:?}", m.status);
        // Bodies counted per request: a request resending any notice is a retry.
        assert_eq!(m.kinds.fresh + m.kinds.retry, 30);
        assert!(m.kinds.retry > 0 && m.batched < 600 && m.batched > 150, "{:?} {}", m.kinds, m.batched);
        assert_eq!(webhook(&summary).total, mock.total());
        let text = summary.render_text();
        assert!(text.contains(" notices/s acknowledged (20 per request)\n"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_need_an_operator_no_duplicates_and_a_scenario_that_has_them() {
        let mock = Mock::start(MockConfig::default()).await;
        for (extra, said) in [
            (&["--batch", "10"][..], "--batch sends to the batch API, which needs --username and --password"),
            (
                &[&AS_OPERATOR[..], &["--batch", "10", "--duplicate-share", "20"]].concat(),
                "--batch and --duplicate-share",
            ),
            (
                &[&AS_OPERATOR[..], &["--batch", "10", "--scenario", "balance"]].concat(),
                "--batch applies to the webhook",
            ),
        ] {
            let error = run(&args(&mock, extra), Arc::new(AtomicBool::new(false))).await.unwrap_err();
            assert!(format!("{error:#}").contains(said), "{error:#}");
        }
        assert_eq!(mock.total(), 0, "nothing was sent");
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

/// `--event-receiver` against the mock, which POSTs an event to the registered receiver for every newly
/// booked notice.
#[cfg(test)]
mod event_tests {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::super::run;
    use super::super::test_support::*;
    use crate::exit_code;
    use crate::mock::{MOCK_OPERATOR, MOCK_PASSWORD, MOCK_VIEWER, Mock, MockConfig};
    use crate::report::Summary;

    /// The mock's operator stands in for the admin the real server requires.
    const AS_ADMIN: [&str; 5] = ["--event-receiver", "--username", MOCK_OPERATOR, "--password", MOCK_PASSWORD];

    fn config() -> MockConfig {
        MockConfig { token_ttl_secs: 900, ..MockConfig::default() }
    }

    async fn bench_events(mock: &Mock, extra: &[&str]) -> Summary {
        bench(mock, &[&AS_ADMIN[..], extra].concat()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acknowledged_notice_is_delivered_and_repeats_are_only_counted() {
        // Notices booked but answered 503 are acknowledged by a resend: still one event each.
        let mock = Mock::start(MockConfig { repeat_event_every: 10, fail_every: 7, close_every: 11, ..config() }).await;
        let summary = bench_events(&mock, &["--connections", "4", "--orgs", "3", "--requests", "300"]).await;
        let e = summary.events.as_ref().unwrap();
        assert!(e.ok() && summary.verification.ok(), "{}", summary.render_text());
        assert_eq!((e.expected, e.in_doubt), (summary.total_acknowledged(), 0));
        assert_eq!(e.expected, mock.events());
        assert_eq!((e.matched.delivered, e.matched.missing, e.matched.unexpected), (e.expected, 0, 0));
        assert_eq!((e.counts.distinct, e.duplicates()), (e.expected, e.expected / 10));
        assert!(e.rate_tenths().is_some_and(|rate| rate > 0), "{e:?}");
        assert!(e.cleanup_error.is_none() && !mock.has_endpoint(), "the endpoint must be deleted at the end");
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
        let text = summary.render_text();
        let expected = e.expected;
        assert!(text.contains("events:      endpoint ep_1 (http://127.0.0.1:"), "{text}");
        assert!(
            text.contains(&format!("): {expected} expected (one per acknowledged notice; 0 more in doubt)")),
            "{text}"
        );
        assert!(text.contains(&format!("delivery:    {expected} distinct in ")), "{text}");
        assert!(
            text.ends_with(&format!(
                "events: OK (all {expected} acknowledged notices' events arrived, none unexpected; {} deliveries \
                 repeated)\n",
                expected / 10
            )),
            "{text}"
        );
        let json = summary.to_json();
        let j = &json["events"];
        assert_eq!(
            (j["ok"].as_bool(), j["expected"].as_u64(), j["missing"].as_u64()),
            (Some(true), Some(expected), Some(0))
        );
        assert_eq!((j["duplicates"].as_u64(), j["endpoint_deleted"].as_bool()), (Some(expected / 10), Some(true)));
        assert!(j["deliveries_per_sec"].as_f64().is_some_and(|rate| rate > 0.0), "{j}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_event_fails_the_run_once_the_wait_runs_out() {
        let mock = Mock::start(MockConfig { drop_event_every: 25, ..config() }).await;
        let summary = bench_events(&mock, &["--connections", "2", "--requests", "100", "--converge", "1"]).await;
        let e = summary.events.as_ref().unwrap();
        assert!(summary.verification.ok(), "the balances are right; only events are lost");
        assert!(!e.ok() && e.waited >= Duration::from_secs(1), "{e:?}");
        assert_eq!((e.expected, e.matched.delivered, e.matched.missing, e.matched.unexpected), (100, 96, 4, 0));
        assert!(!mock.has_endpoint());
        assert_eq!(exit_code(&summary), ExitCode::from(1));
        let text = summary.render_text();
        assert!(
            text.contains("events: MISMATCH (4 of 100 acknowledged notices have no event after waiting 1."),
            "{text}"
        );
        assert!(text.contains(" s (--converge 1); first: "), "{text}");
        let json = summary.to_json();
        assert_eq!((json["events"]["ok"].as_bool(), json["events"]["missing"].as_u64()), (Some(false), Some(4)));
        assert!(json["events"]["first_missing"].is_string());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_for_an_operation_never_acknowledged_fails_the_run() {
        let mock = Mock::start(MockConfig { stray_event: true, ..config() }).await;
        let summary = bench_events(&mock, &["--connections", "2", "--requests", "50"]).await;
        let e = summary.events.as_ref().unwrap();
        assert_eq!((e.matched.delivered, e.matched.missing, e.matched.unexpected), (50, 0, 1), "{e:?}");
        assert_eq!(e.counts.distinct, 51);
        let text = summary.render_text();
        assert!(
            text.contains(
                "events: MISMATCH (1 unexpected events; first: an event for operation \
                 00000000-0000-4000-8000-000000000000, which the server never acknowledged)"
            ),
            "{text}"
        );
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registration_needs_an_admin_and_a_server_that_may_deliver_to_loopback() {
        let mock = Mock::start(config()).await;
        let failure = async |mock: &Mock, extra: &[&str]| {
            let error = run(&args(mock, &[&["--requests", "10"], extra].concat()), Arc::new(AtomicBool::new(false)))
                .await
                .unwrap_err();
            format!("{error:#}")
        };
        let anonymous = failure(&mock, &["--event-receiver"]).await;
        assert!(anonymous.contains("needs --username and --password of an admin"), "{anonymous}");
        assert_eq!(mock.logins(), 0, "nothing is sent before the flags are checked");
        let viewer =
            failure(&mock, &["--event-receiver", "--username", MOCK_VIEWER, "--password", MOCK_PASSWORD]).await;
        assert!(viewer.contains("--username must be an admin") && viewer.contains("403 Forbidden"), "{viewer}");
        let transfers = failure(&mock, &[&AS_ADMIN[..], &["--scenario", "transfers"]].concat()).await;
        assert!(transfers.contains("--event-receiver applies to the webhook scenario only"), "{transfers}");

        let refusing = Mock::start(MockConfig { refuse_loopback_endpoints: true, ..config() }).await;
        let loopback = failure(&refusing, &AS_ADMIN).await;
        assert!(loopback.contains("start it with PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8"), "{loopback}");
        for mock in [&mock, &refusing] {
            assert!(!mock.has_endpoint() && mock.total() == 0, "no load without a registered receiver");
        }
    }
}
