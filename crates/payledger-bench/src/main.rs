//! `payledger-bench`: drives payledger with keep-alive HTTP/1.1 load, reports throughput and latency, then
//! checks the balances to the kopeck.
//!
//! Three scenarios: `webhook` (the default) sends bank notices and checks that every acknowledged one was
//! booked exactly once; `transfers` deposits into a set of users, moves money between them, and checks
//! every user's balance against the applied transfers and that no money appeared or vanished; `payouts`
//! creates payouts, then measures how fast the server's workers drain its payout queue and checks that
//! every created payout completed.
//!
//! With `--username`/`--password` the bench logs in once at the start and every request it sends carries
//! `Authorization: Bearer <access token>`, renewed before it expires; any 401 or 403 answer fails the run.

mod api;
mod auth;
mod client;
mod closed_loop;
mod histogram;
mod inn;
mod load;
#[cfg(test)]
mod mock;
mod money;
mod payouts;
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

use crate::auth::{Credentials, Session};
use crate::client::{Client, Target};
use crate::closed_loop::Pace;
use crate::load::{Plan, Shared, WorkerReport};
use crate::report::{AuthReport, Check, PayoutCheck, Summary, TransferCheck};
use crate::verify::TransferBooks;

/// What the load consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Bank notices to the webhook, paying `--orgs` organizations.
    Webhook,
    /// Transfers among `--users` users, each given `--initial-balance` first.
    Transfers,
    /// Payouts of 0.01..=100.00 to a test card, then the drain of the server's payout queue.
    Payouts,
}

/// The `--converge` default of the payouts scenario, in seconds: how long the queue may take to drain.
const PAYOUTS_CONVERGE_SECS: u64 = 120;

/// Ids of one run's users are `first..first + USER_ID_BLOCK`, so different seeds get disjoint users.
const USER_ID_BLOCK: u64 = 1_000_000;

/// Load generator for payledger's bank webhook, user transfers or payouts, with an exact check at the end.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
struct Args {
    /// What to load: bank notices (`webhook`), user-to-user transfers (`transfers`) or payout creation
    /// followed by the drain of the payout queue (`payouts`).
    #[arg(long, env = "PAYLEDGER_BENCH_SCENARIO", value_enum, default_value_t = Scenario::Webhook)]
    scenario: Scenario,

    /// Base URL of the server (plain http only).
    #[arg(long, env = "PAYLEDGER_BENCH_URL", default_value = "http://127.0.0.1:8000")]
    url: String,

    /// User to log in as (`POST /api/token/`, once per run); every request then carries its access token
    /// as `Authorization: Bearer`. Transfers and payouts need an operator (or admin). Without it no
    /// Authorization header is sent, which only a development server accepts, for webhooks and balance reads.
    #[arg(long, env = "PAYLEDGER_BENCH_USERNAME", requires = "password")]
    username: Option<String>,

    /// The --username's password (prefer the environment variable over the command line).
    #[arg(long, env = "PAYLEDGER_BENCH_PASSWORD", hide_env_values = true, requires = "username")]
    password: Option<String>,

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
    /// notices in the background (`--webhook-mode async`); 0 checks once. Payouts scenario: seconds the
    /// payout queue may take to drain after creation stops [default: 0; 120 for payouts].
    #[arg(long, env = "PAYLEDGER_BENCH_CONVERGE")]
    converge: Option<u64>,
}

impl Args {
    /// `--username` and `--password`, if given (clap makes sure they come together).
    fn credentials(&self) -> Option<Credentials> {
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => {
                Some(Credentials { username: username.clone(), password: password.clone() })
            }
            _ => None,
        }
    }

    /// `--converge` in seconds, with the scenario's default.
    fn converge_secs(&self) -> u64 {
        let default = if self.scenario == Scenario::Payouts { PAYOUTS_CONVERGE_SECS } else { 0 };
        self.converge.unwrap_or(default)
    }

    /// When measured load ends relative to the end of the warm-up, if by time at all.
    fn measured_window(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(seconds), _) => Some(Duration::from_secs(seconds)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// How the closed-loop workers are paced when the warm-up ends at `warmup_end`.
    fn pace(&self, target: &Target, timeout: Duration, warmup_end: Instant, stop: Arc<AtomicBool>) -> Pace {
        Pace {
            target: target.clone(),
            warmup_end,
            deadline: self.measured_window().map(|window| warmup_end + window),
            max_requests: self.requests,
            timeout,
            stop,
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

/// 1 when any request was refused for authentication (401 or 403), the balances are wrong (for payouts: the
/// queue did not drain, the counts do not add up, or a payout failed) or nothing at all was acknowledged
/// (applied, created); errors and 5xx are only reported.
fn exit_code(summary: &Summary) -> ExitCode {
    let refusals = &summary.auth.refusals;
    if refusals.total() > 0 {
        // A refused request was measured as fast as the server could say no: the numbers mean nothing.
        eprintln!(
            "payledger-bench: the server refused {} requests for authentication (401: {}, 403: {}); check \
             --username/--password and the user's role",
            refusals.total(),
            refusals.unauthorized,
            refusals.forbidden
        );
        return ExitCode::from(1);
    }
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
        Check::Payouts(p) if p.verification.created == 0 => {
            eprintln!("payledger-bench: the server created no payout");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Runs `connections` closed-loop workers to the end and merges their reports.
async fn run_workers<R, F>(connections: usize, worker: impl Fn() -> F, merge: fn(&mut R, R)) -> anyhow::Result<R>
where
    F: Future<Output = R> + Send + 'static,
    R: Default + Send + 'static,
{
    let workers: Vec<_> = (0..connections).map(|_| tokio::spawn(worker())).collect();
    let mut load = R::default();
    for worker in workers {
        // A lost worker would take what it booked with it, making the check meaningless.
        merge(&mut load, worker.await.context("a load worker panicked")?);
    }
    Ok(load)
}

/// Reads and checks the final balances until they agree or `--converge` runs out, and returns the last verdict.
async fn converge<V>(
    args: &Args,
    ok: fn(&V) -> bool,
    mut check: impl AsyncFnMut() -> anyhow::Result<V>,
) -> anyhow::Result<V> {
    let converge_started = Instant::now();
    let converge_deadline = converge_started + Duration::from_secs(args.converge_secs());
    loop {
        let verification = check().await?;
        if ok(&verification) || Instant::now() >= converge_deadline {
            if args.converge_secs() > 0 {
                eprintln!("balances checked {} ms after the load ended", converge_started.elapsed().as_millis());
            }
            return Ok(verification);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole run of the chosen scenario: the server resolved, the login (if any), the scenario, and what the
/// server refused for authentication along the way.
async fn run(args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let target = Target::resolve(&args.url).await?;
    // Kept to the end of the run: dropping it stops renewing the token.
    let session = match args.credentials() {
        Some(credentials) => {
            let user = credentials.username.clone();
            let session = Session::start(&target, credentials, Duration::from_secs(args.timeout))
                .await
                .with_context(|| format!("logging in as {user}"))?;
            let lifetime =
                session.lifetime().map_or_else(|| "unknown".to_owned(), |lifetime| format!("{} s", lifetime.as_secs()));
            eprintln!(
                "payledger-bench: logged in as {}; access token lifetime {lifetime}, renewed every {} s",
                session.username(),
                auth::renewal_delay(session.lifetime()).as_secs()
            );
            Some(session)
        }
        None => None,
    };
    let mut summary = match args.scenario {
        Scenario::Webhook => run_webhook(args, &target, stop).await,
        Scenario::Transfers => run_transfers(args, &target, stop).await,
        Scenario::Payouts => run_payouts(args, &target, stop).await,
    }?;
    summary.auth = AuthReport {
        user: session.as_ref().map(|s| s.username().to_owned()),
        logins: session.as_ref().map_or(0, Session::logins),
        refusals: target.refusals(),
    };
    Ok(summary)
}

/// The payouts scenario: baseline counts, creation (measured like the other scenarios), then the counts
/// polled until the queue has drained, and the check.
async fn run_payouts(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    if args.duplicate_share > 0 {
        bail!("--duplicate-share applies to the webhook scenario only");
    }
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
    })
}

/// The webhook scenario: baseline, load, settling of unknown outcomes, final balances and the check.
async fn run_webhook(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
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

/// The transfers scenario: baseline, deposits (not measured), load, settling of unknown outcomes, final
/// balances and the check.
async fn run_transfers(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    if args.duplicate_share > 0 {
        bail!("--duplicate-share applies to the webhook scenario only");
    }
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
    let plan =
        Arc::new(transfers::Plan { pace: args.pace(target, timeout, warmup_end, stop), users: Arc::clone(&users) });
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Refusals;
    use crate::mock::{MOCK_OPERATOR, MOCK_PASSWORD, MOCK_VIEWER, Mock, MockConfig};

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
            _ => panic!("not a webhook run"),
        }
    }

    fn transfers(summary: &Summary) -> &TransferCheck {
        match &summary.verification {
            Check::Transfers(t) => t,
            _ => panic!("not a transfers run"),
        }
    }

    fn payouts(summary: &Summary) -> &PayoutCheck {
        match &summary.verification {
            Check::Payouts(p) => p,
            _ => panic!("not a payouts run"),
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
        assert_eq!(args.converge_secs(), 0);
    }

    #[test]
    fn payouts_wait_two_minutes_for_the_drain_unless_told() {
        let parse = |extra: &[&str]| Args::try_parse_from([&["payledger-bench"], extra].concat()).unwrap();
        let payouts = parse(&["--scenario", "payouts"]);
        assert_eq!((payouts.scenario, payouts.converge_secs()), (Scenario::Payouts, 120));
        assert_eq!(parse(&["--scenario", "payouts", "--converge", "5"]).converge_secs(), 5);
        assert_eq!(parse(&["--scenario", "payouts", "--converge", "0"]).converge_secs(), 0);
        assert_eq!(parse(&["--scenario", "transfers"]).converge_secs(), 0);
        assert_eq!(parse(&["--converge", "60"]).converge_secs(), 60);
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
    async fn bench_payouts(mock: &Mock, extra: &[&str]) -> Summary {
        bench(mock, &[&["--scenario", "payouts"], extra].concat()).await
    }

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

    fn authenticated_config(token_ttl_secs: u64) -> MockConfig {
        MockConfig { token_ttl_secs, payout_micros: 100, ..MockConfig::default() }
    }

    const AS_OPERATOR: [&str; 4] = ["--username", MOCK_OPERATOR, "--password", MOCK_PASSWORD];

    #[test]
    fn username_and_password_come_together() {
        let parse = |extra: &[&str]| Args::try_parse_from([&["payledger-bench"], extra].concat());
        let both = parse(&["--username", "bench", "--password", "s3cret"]).unwrap();
        let credentials = both.credentials().unwrap();
        assert_eq!((credentials.username.as_str(), credentials.password.as_str()), ("bench", "s3cret"));
        assert!(parse(&["--username", "bench"]).is_err());
        assert!(parse(&["--password", "s3cret"]).is_err());
        assert!(parse(&[]).unwrap().credentials().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_scenario_logs_in_once_and_sends_the_token_everywhere() {
        // The mock refuses every request but the webhook's without a live token.
        let mock = Mock::start(authenticated_config(900)).await;
        let runs = [
            &["--orgs", "3"][..],
            &["--scenario", "transfers", "--users", "4"],
            &["--scenario", "payouts", "--converge", "10"],
        ];
        for (index, scenario) in runs.into_iter().enumerate() {
            let summary =
                bench(&mock, &[&AS_OPERATOR[..], &["--connections", "3", "--requests", "60"], scenario].concat()).await;
            assert!(summary.verification.ok(), "{}", summary.render_text());
            assert_eq!(summary.auth.refusals, Refusals::default(), "{}", summary.render_text());
            assert_eq!((summary.auth.user.as_deref(), summary.auth.logins), (Some(MOCK_OPERATOR), 1));
            assert_eq!(mock.logins(), index as u64 + 1, "one login per run, not per connection");
            assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
            let text = summary.render_text();
            assert!(
                text.contains("auth:        Bearer token (as user bench, logins: 1); no request refused\n"),
                "{text}"
            );
            let json = summary.to_json();
            assert_eq!((json["auth"]["user"].as_str(), json["auth"]["401"].as_u64()), (Some("bench"), Some(0)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_token_is_renewed_before_it_expires() {
        // 2 s tokens, renewed every 1.6 s: a 4 s run needs at least two renewals and must see no 401.
        let mock = Mock::start(authenticated_config(2)).await;
        let summary = bench(
            &mock,
            &[&AS_OPERATOR[..], &["--scenario", "transfers", "--users", "3", "--connections", "2", "--duration", "4"]]
                .concat(),
        )
        .await;
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!(summary.auth.refusals, Refusals::default(), "{}", summary.render_text());
        assert!(summary.auth.logins >= 3, "{:?}", summary.auth);
        assert_eq!(mock.logins(), summary.auth.logins);
        assert!(summary.measured.requests > 0 && summary.measured.status.client_error == 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_password_fails_up_front() {
        let mock = Mock::start(authenticated_config(900)).await;
        let args = args(&mock, &["--username", MOCK_OPERATOR, "--password", "wrong password", "--orgs", "1"]);
        let error = run(&args, Arc::new(AtomicBool::new(false))).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("logging in as bench") && text.contains("refused user \"bench\""), "{text}");
        assert!(!text.contains("wrong password"), "the password must not be echoed: {text}");
        assert_eq!(mock.logins(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_credentials_a_401_is_named_as_an_authentication_failure() {
        let mock = Mock::start(authenticated_config(900)).await;
        let args = args(&mock, &["--scenario", "transfers", "--users", "2"]);
        let error = run(&args, Arc::new(AtomicBool::new(false))).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("401 Unauthorized (authentication failed: pass --username and --password"), "{text}");
        // The webhook needs no token, so an anonymous webhook run still works.
        let summary = bench(&mock, &["--connections", "2", "--requests", "20"]).await;
        assert_eq!(summary.measured.status.ok, 20);
        assert_eq!(summary.auth.refusals, Refusals::default());
        assert!(!summary.render_text().contains("auth:"), "{}", summary.render_text());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_requests_are_reported_and_fail_the_run() {
        // A viewer may read the payout counts but not create payouts: every creation is answered 403.
        let mock = Mock::start(authenticated_config(900)).await;
        let summary = bench_payouts(
            &mock,
            &["--username", MOCK_VIEWER, "--password", MOCK_PASSWORD, "--connections", "2", "--requests", "30"],
        )
        .await;
        let refusals = &summary.auth.refusals;
        assert_eq!((refusals.unauthorized, refusals.forbidden), (0, 30));
        assert_eq!(payouts(&summary).outcomes.refused, 30);
        let first = refusals.first.as_deref().unwrap();
        assert!(first.starts_with("POST /api/v1/payouts/: HTTP 403 Forbidden: {"), "{first}");
        let text = summary.render_text();
        assert!(
            text.contains(
                "auth:        FAILED: 30 requests refused, 401 Unauthorized: 0  403 Forbidden: 30 (as user viewer"
            ),
            "{text}"
        );
        assert_eq!(summary.to_json()["auth"]["403"], 30);
        assert_eq!(exit_code(&summary), ExitCode::from(1));
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
