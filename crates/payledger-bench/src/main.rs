//! `payledger-bench`: drives payledger with keep-alive HTTP/1.1 load, reports throughput and latency, then
//! checks the balances to the kopeck.
//!
//! Two scenarios: `webhook` (the default) sends bank notices and checks that every acknowledged one was
//! booked exactly once; `transfers` deposits into a set of users, moves money between them, and checks
//! every user's balance against the applied transfers and that no money appeared or vanished.

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
mod transfers;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::Target;
use crate::load::{Plan, Shared, WorkerReport};
use crate::report::{Check, Summary, TransferCheck};
use crate::verify::TransferBooks;

/// What the load consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Bank notices to the webhook, paying `--orgs` organizations.
    Webhook,
    /// Transfers among `--users` users, each given `--initial-balance` first.
    Transfers,
}

/// Ids of one run's users are `first..first + USER_ID_BLOCK`, so different seeds get disjoint users.
const USER_ID_BLOCK: u64 = 1_000_000;

/// Load generator for payledger's bank webhook or user transfers, with an exact balance check at the end.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
struct Args {
    /// What to load: bank notices (`webhook`) or user-to-user transfers (`transfers`).
    #[arg(long, env = "PAYLEDGER_BENCH_SCENARIO", value_enum, default_value_t = Scenario::Webhook)]
    scenario: Scenario,

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

    /// Webhook scenario: number of distinct organizations paid; 1 puts all the load on one hot account.
    #[arg(long, env = "PAYLEDGER_BENCH_ORGS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    orgs: u32,

    /// Webhook scenario: percent of requests that resend an already acknowledged notice verbatim (0..=100).
    #[arg(long, env = "PAYLEDGER_BENCH_DUPLICATE_SHARE", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    duplicate_share: u8,

    /// Transfers scenario: number of users (2..=1000000) sending each other money; 2 puts all the load on
    /// one hot pair.
    #[arg(long, env = "PAYLEDGER_BENCH_USERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(2..=USER_ID_BLOCK as i64))]
    users: u32,

    /// Transfers scenario: roubles deposited into every user before the load, e.g. "1000000.00".
    #[arg(long, env = "PAYLEDGER_BENCH_INITIAL_BALANCE", default_value = "1000000.00", value_parser = parse_deposit)]
    initial_balance: i64,

    /// Seconds of load before measuring starts; its notices are still verified.
    #[arg(long, env = "PAYLEDGER_BENCH_WARMUP", default_value_t = 1)]
    warmup: u64,

    /// PID of the server, to report its peak RSS (VmHWM) at the end.
    #[arg(long, env = "PAYLEDGER_BENCH_SERVER_PID")]
    server_pid: Option<u32>,

    /// Also print the summary as one JSON line.
    #[arg(long, env = "PAYLEDGER_BENCH_JSON", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    json: bool,

    /// Seed for the organizations' INNs (or the users' ids), to reuse them across runs [default: random].
    #[arg(long, env = "PAYLEDGER_BENCH_SEED")]
    seed: Option<u64>,

    /// Seconds before a connect or a request without a complete answer is given up.
    #[arg(long, env = "PAYLEDGER_BENCH_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// Seconds allowed after the load for resending notices (or transfers) whose outcome is unknown; also
    /// how long each set-up deposit of the transfers scenario may take.
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

    /// The measured window, for the start-up line.
    fn window_text(&self) -> String {
        match (self.measured_window(), self.requests) {
            (Some(window), Some(n)) => format!("{} s or {n} requests", window.as_secs()),
            (Some(window), None) => format!("{} s", window.as_secs()),
            (None, n) => format!("{} requests", n.unwrap_or_default()),
        }
    }
}

/// Parses `--initial-balance`: a positive decimal amount of roubles, exact to the kopeck.
fn parse_deposit(text: &str) -> Result<i64, String> {
    match money::parse_kopecks(text) {
        Ok(kopecks) if kopecks > 0 => Ok(kopecks),
        Ok(_) => Err("must be more than 0.00".to_owned()),
        Err(error) => Err(format!("{error:#}")),
    }
}

/// The first of the transfers scenario's user ids: a seed-derived block of [`USER_ID_BLOCK`] ids, so a
/// rerun with another seed uses fresh users in the same database and one with the same seed reuses them.
fn first_user_id(seed: u64) -> u64 {
    u64::from(StdRng::seed_from_u64(seed).random::<u32>()) * USER_ID_BLOCK + 1
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

/// 1 when the balances are wrong or nothing at all was acknowledged (applied, for transfers); errors and
/// 5xx are only reported.
fn exit_code(summary: &Summary) -> ExitCode {
    if !summary.verification.ok() {
        return ExitCode::from(1);
    }
    match &summary.verification {
        Check::Webhook(_) if summary.total_acknowledged() == 0 => {
            eprintln!("payledger-bench: the server acknowledged nothing");
            ExitCode::from(1)
        }
        Check::Transfers(t) if t.applied == 0 => {
            eprintln!("payledger-bench: the server applied no transfer");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The whole run of the chosen scenario.
async fn run(args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    match args.scenario {
        Scenario::Webhook => run_webhook(args, stop).await,
        Scenario::Transfers => run_transfers(args, stop).await,
    }
}

/// The webhook scenario: baseline, load, settling of unknown outcomes, final balances and the check.
async fn run_webhook(args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let target = Target::resolve(&args.url).await?;
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
        verification: Check::Webhook(verification),
        server_peak_rss_kib: args.server_pid.map(|pid| rss::peak_rss_kib(pid).map_err(|e| format!("{e:#}"))),
    })
}

/// The transfers scenario: baseline, deposits (not measured), load, settling of unknown outcomes, final
/// balances and the check.
async fn run_transfers(args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    if args.duplicate_share > 0 {
        bail!("--duplicate-share applies to the webhook scenario only");
    }
    let target = Target::resolve(&args.url).await?;
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

    let baseline = api::read_user_balances(&target, timeout, Arc::clone(&users), connections)
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
    let deposits_resent = transfers::deposit_all(&target, timeout, Arc::clone(&users), deposit, connections, patience)
        .await
        .context("depositing the initial balances")?;

    let shared = Arc::new(transfers::Shared::new(users.len()));
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(args.warmup);
    let plan = Arc::new(transfers::Plan {
        target: target.clone(),
        users: Arc::clone(&users),
        warmup_end,
        deadline: args.measured_window().map(|window| warmup_end + window),
        max_requests: args.requests,
        timeout,
        stop,
    });
    let workers: Vec<_> =
        (0..connections).map(|_| tokio::spawn(transfers::worker(Arc::clone(&plan), Arc::clone(&shared)))).collect();
    let mut load = transfers::WorkerReport::default();
    for worker in workers {
        // A lost worker would take its applied transfers with it, making the check meaningless.
        load.merge(worker.await.context("a load worker panicked")?);
    }
    let elapsed = load.last_measured.map(|last| last.saturating_duration_since(warmup_end)).unwrap_or_default();

    let pending = std::mem::take(&mut load.pending);
    if !pending.is_empty() {
        eprintln!("payledger-bench: resending {} transfers whose outcome is unknown", pending.len());
    }
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle);
    let settled = transfers::settle(pending, &target, timeout, settle_deadline, &shared).await;

    let (sent, received) = (shared.sent_totals(), shared.received_totals());
    let books = TransferBooks { users: &users, baseline: &baseline, deposit, sent: &sent, received: &received };
    let converge_started = Instant::now();
    let converge_deadline = converge_started + Duration::from_secs(args.converge);
    let verification = loop {
        let actual = api::read_user_balances(&target, timeout, Arc::clone(&users), connections)
            .await
            .context("reading final balances")?;
        let verification = verify::verify_transfers(books, &actual, &settled.unresolved);
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
        acknowledged_ops: load.applied + load.refused,
        connects: load.connects,
        first_error: load.first_error,
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

    fn webhook(summary: &Summary) -> &verify::Verification {
        match &summary.verification {
            Check::Webhook(v) => v,
            Check::Transfers(_) => panic!("not a webhook run"),
        }
    }

    fn transfers(summary: &Summary) -> &TransferCheck {
        match &summary.verification {
            Check::Transfers(t) => t,
            Check::Webhook(_) => panic!("not a transfers run"),
        }
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
        assert_eq!(args.scenario, Scenario::Webhook);
        assert_eq!((args.users, args.initial_balance), (1000, 100_000_000));
    }

    #[test]
    fn transfer_flags_are_validated() {
        let parse = |extra: &[&str]| Args::try_parse_from([&["payledger-bench"], extra].concat());
        let hot = parse(&["--scenario", "transfers", "--users", "2", "--initial-balance", "0.05"]).unwrap();
        assert_eq!((hot.scenario, hot.users, hot.initial_balance), (Scenario::Transfers, 2, 5));
        assert_eq!(parse(&["--initial-balance", "12"]).unwrap().initial_balance, 1_200);
        for bad in [
            &["--users", "1"][..],
            &["--users", "1000001"],
            &["--initial-balance", "0.00"],
            &["--initial-balance", "-5.00"],
            &["--initial-balance", "1.001"],
            &["--initial-balance", "1e6"],
            &["--scenario", "payments"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn user_ids_come_from_the_seed_in_disjoint_blocks() {
        assert_eq!(first_user_id(7), first_user_id(7));
        assert_ne!(first_user_id(7), first_user_id(8));
        for seed in 0..100 {
            assert_eq!(first_user_id(seed) % USER_ID_BLOCK, 1);
        }
    }

    async fn bench_transfers(mock: &Mock, extra: &[&str]) -> Summary {
        bench(mock, &[&["--scenario", "transfers"], extra].concat()).await
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
