//! `payledger-bench`: drives payledger's bank webhook with keep-alive HTTP/1.1 load, reports throughput and
//! latency, then checks to the kopeck that every acknowledged notice was booked exactly once.

mod api;
mod client;
mod histogram;
mod inn;
mod load;
#[cfg(test)]
mod mock;
mod money;
mod report;
mod rss;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::client::Target;
use crate::load::{Plan, Shared, WorkerReport};
use crate::report::Summary;

/// Load generator for payledger's bank webhook, with an exact balance check at the end.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
struct Args {
    /// Base URL of the server (plain http only).
    #[arg(long, env = "PAYLEDGER_BENCH_URL", default_value = "http://127.0.0.1:8000")]
    url: String,

    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, env = "PAYLEDGER_BENCH_CONNECTIONS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,

    /// Seconds of measured load after the warm-up [default: 10, unless only --requests is given].
    #[arg(long, env = "PAYLEDGER_BENCH_DURATION", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,

    /// Stop after this many measured requests (whichever of this and --duration comes first).
    #[arg(long, env = "PAYLEDGER_BENCH_REQUESTS", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Number of distinct organizations paid; 1 puts all the load on one hot account.
    #[arg(long, env = "PAYLEDGER_BENCH_ORGS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    orgs: u32,

    /// Percent of requests that resend an already acknowledged notice verbatim (0..=100).
    #[arg(long, env = "PAYLEDGER_BENCH_DUPLICATE_SHARE", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    duplicate_share: u8,

    /// Seconds of load before measuring starts; its notices are still verified.
    #[arg(long, env = "PAYLEDGER_BENCH_WARMUP", default_value_t = 1)]
    warmup: u64,

    /// PID of the server, to report its peak RSS (VmHWM) at the end.
    #[arg(long, env = "PAYLEDGER_BENCH_SERVER_PID")]
    server_pid: Option<u32>,

    /// Also print the summary as one JSON line.
    #[arg(long, env = "PAYLEDGER_BENCH_JSON", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    json: bool,

    /// Seed for the organizations' INNs, to reuse the same organizations across runs [default: random].
    #[arg(long, env = "PAYLEDGER_BENCH_SEED")]
    seed: Option<u64>,

    /// Seconds before a connect or a request without a complete answer is given up.
    #[arg(long, env = "PAYLEDGER_BENCH_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Seconds allowed after the load for resending notices whose outcome is unknown.
    #[arg(long, env = "PAYLEDGER_BENCH_SETTLE", default_value_t = 30)]
    settle: u64,

    /// Seconds to keep re-reading balances until they match, for a server that applies acknowledged
    /// notices in the background (`--webhook-mode async`); 0 checks once.
    #[arg(long, env = "PAYLEDGER_BENCH_CONVERGE", default_value_t = 0)]
    converge: u64,
}

impl Args {
    /// When measured load ends relative to the end of the warm-up, if by time at all.
    fn measured_window(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(seconds), _) => Some(Duration::from_secs(seconds)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(stop_on_ctrl_c(Arc::clone(&stop)));
    match run(&args, stop).await {
        Ok(summary) => {
            print!("{}", summary.render_text());
            if args.json {
                println!("{}", summary.to_json());
            }
            exit_code(&summary)
        }
        Err(error) => {
            eprintln!("payledger-bench: {error:#}");
            // 2, not 1: the run never got as far as checking anything.
            ExitCode::from(2)
        }
    }
}

/// The first Ctrl-C ends the load gracefully so the balances are still checked; a second one aborts.
async fn stop_on_ctrl_c(stop: Arc<AtomicBool>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        stop.store(true, Ordering::Relaxed);
        eprintln!("stopping: finishing in-flight requests, then verifying (Ctrl-C again to abort)");
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    }
}

/// 1 when the balances are wrong or nothing at all was acknowledged; errors and 5xx are only reported.
fn exit_code(summary: &Summary) -> ExitCode {
    if !summary.verification.ok() {
        return ExitCode::from(1);
    }
    if summary.total_acknowledged() == 0 {
        eprintln!("payledger-bench: the server acknowledged nothing");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The whole run: baseline, load, settling of unknown outcomes, final balances and the check.
async fn run(args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let target = Target::resolve(&args.url).await?;
    let timeout = Duration::from_secs(args.timeout);
    let connections = args.connections as usize;
    let seed = args.seed.unwrap_or_else(rand::random);
    let inns = Arc::new(inn::distinct(args.orgs as usize, &mut StdRng::seed_from_u64(seed)));

    let window = match (args.measured_window(), args.requests) {
        (Some(window), Some(n)) => format!("{} s or {n} requests", window.as_secs()),
        (Some(window), None) => format!("{} s", window.as_secs()),
        (None, n) => format!("{} requests", n.unwrap_or_default()),
    };
    eprintln!(
        "payledger-bench: {} ({}), {connections} connections, {} orgs, {}% duplicates, {window} after {} s warm-up, seed {seed}",
        args.url,
        target.addr(),
        inns.len(),
        args.duplicate_share,
        args.warmup
    );

    let baseline = api::read_balances(&target, timeout, Arc::clone(&inns), connections)
        .await
        .context("reading baseline balances")?;

    let shared = Arc::new(Shared::new(inns.len()));
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup);
    let plan = Arc::new(Plan {
        target: target.clone(),
        inns: Arc::clone(&inns),
        duplicate_percent: args.duplicate_share,
        warmup_end,
        deadline: args.measured_window().map(|window| warmup_end + window),
        max_requests: args.requests,
        timeout,
        stop,
    });
    let workers: Vec<_> =
        (0..connections).map(|_| tokio::spawn(load::worker(Arc::clone(&plan), Arc::clone(&shared)))).collect();
    let mut load = WorkerReport::default();
    for worker in workers {
        // A lost worker would take its acknowledged amounts with it, making the check meaningless.
        load.merge(worker.await.context("a load worker panicked")?);
    }
    let elapsed = load.last_measured.map(|last| last.saturating_duration_since(warmup_end)).unwrap_or_default();

    let pending = std::mem::take(&mut load.pending);
    if !pending.is_empty() {
        eprintln!("payledger-bench: resending {} notices whose outcome is unknown", pending.len());
    }
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle);
    let (settled, unresolved) = load::settle(pending, &target, timeout, settle_deadline, &shared).await;

    let converge_started = Instant::now();
    let converge_deadline = converge_started + Duration::from_secs(args.converge);
    let verification = loop {
        let actual = api::read_balances(&target, timeout, Arc::clone(&inns), connections)
            .await
            .context("reading final balances")?;
        let verification = verify::verify(&inns, &baseline, &shared.acknowledged_totals(), &actual, &unresolved);
        if verification.ok() || Instant::now() >= converge_deadline {
            if args.converge > 0 {
                eprintln!("balances checked {} ms after the load ended", converge_started.elapsed().as_millis());
            }
            break verification;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    Ok(Summary {
        measured: load.measured,
        elapsed,
        warmup_requests: load.warmup_requests,
        acknowledged_ops: load.acknowledged_ops,
        connects: load.connects,
        first_error: load.first_error,
        settled,
        unresolved: unresolved.len(),
        verification,
        server_peak_rss_kib: args.server_pid.map(|pid| rss::peak_rss_kib(pid).map_err(|e| format!("{e:#}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{Mock, MockConfig};

    fn args(mock: &Mock, extra: &[&str]) -> Args {
        let url = format!("http://{}", mock.addr());
        let mut argv = vec!["payledger-bench", "--url", &url, "--warmup", "0", "--timeout", "5", "--settle", "10"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    async fn bench(mock: &Mock, extra: &[&str]) -> Summary {
        run(&args(mock, extra), Arc::new(AtomicBool::new(false))).await.unwrap()
    }

    #[test]
    fn defaults_match_the_documentation() {
        let args = Args::try_parse_from(["payledger-bench"]).unwrap();
        assert_eq!(args.url, "http://127.0.0.1:8000");
        assert_eq!((args.connections, args.orgs, args.duplicate_share, args.warmup), (64, 1000, 0, 1));
        assert_eq!(args.measured_window(), Some(Duration::from_secs(10)));
        assert!(!args.json);
        let only_requests = Args::try_parse_from(["payledger-bench", "--requests", "5", "--json"]).unwrap();
        assert_eq!(only_requests.measured_window(), None);
        assert!(only_requests.json);
        assert!(Args::try_parse_from(["payledger-bench", "--duplicate-share", "101"]).is_err());
        assert!(Args::try_parse_from(["payledger-bench", "--connections", "0"]).is_err());
    }

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
        assert_eq!(summary.verification.total, mock.total());
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
        assert_eq!(summary.verification.total, mock.total());
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
        assert!(second.verification.total > first.verification.total);
        assert_eq!(second.verification.total, first.verification.total + second.verification.acknowledged);
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
