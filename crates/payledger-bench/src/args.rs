//! The command line: `--scenario` and the flags that shape the load, the login and the check.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, ValueEnum};

use crate::auth::Credentials;
use crate::client::Target;
use crate::closed_loop::Pace;
use crate::money;

/// What the load consists of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Bank notices to the webhook, paying `--orgs` organizations.
    Webhook,
    /// Transfers among `--users` users, each given `--initial-balance` first.
    Transfers,
    /// Payouts of 0.01..=100.00 to a test card, then the drain of the server's payout queue.
    Payouts,
    /// `GET /api/health/live/` without credentials: a route that touches no data, the most any route can be
    /// served at by this client; the other scenarios are reported as a share of it.
    Ceiling,
    /// `GET /api/organizations/{inn}/balance/` of `--orgs` organizations, each given one bank notice first.
    Balance,
    /// `GET /api/balances/?user_id=` of `--users` users, each given `--initial-balance` first.
    Balances,
    /// `GET /api/users/{user_id}/transactions/` (the first page) of `--users` users, each given
    /// `--initial-balance` first.
    History,
}

/// The `--converge` default of the payouts scenario, in seconds: how long the queue may take to drain.
const PAYOUTS_CONVERGE_SECS: u64 = 120;

/// The `--converge` default with `--event-receiver`, in seconds: how long the events may take to arrive.
const EVENTS_CONVERGE_SECS: u64 = 120;

/// Ids of one run's users are `first..first + USER_ID_BLOCK`, so different seeds get disjoint users.
pub const USER_ID_BLOCK: u64 = 1_000_000;

/// Load generator for payledger's bank webhook, user transfers or payouts, with an exact check at the end.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Args {
    /// What to load: bank notices (`webhook`), user-to-user transfers (`transfers`), payout creation
    /// followed by the drain of the payout queue (`payouts`), the liveness probe as the HTTP ceiling
    /// (`ceiling`), or reads checked against a set-up: organization balances (`balance`), user balances
    /// (`balances`) or a user's history page (`history`).
    #[arg(long, env = "PAYLEDGER_BENCH_SCENARIO", value_enum, default_value_t = Scenario::Webhook)]
    pub scenario: Scenario,

    /// Base URL of the server (plain http only).
    #[arg(long, env = "PAYLEDGER_BENCH_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,

    /// User to log in as (`POST /api/token/`, once per run); every request then carries its access token
    /// as `Authorization: Bearer`. Transfers, payouts and the set-up of balances and history need an
    /// operator (or admin). Without it no Authorization header is sent, which only a development server
    /// accepts, for webhooks and balance reads. The ceiling never logs in: its route is open.
    #[arg(long, env = "PAYLEDGER_BENCH_USERNAME", requires = "password")]
    pub username: Option<String>,

    /// The --username's password (prefer the environment variable over the command line). Without
    /// --username it is ignored, so the variable exported for a server's first admin does not stop an
    /// anonymous run (webhooks on a development server, the ceiling).
    #[arg(long, env = "PAYLEDGER_BENCH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Concurrent keep-alive connections, each with one request in flight.
    #[arg(long, env = "PAYLEDGER_BENCH_CONNECTIONS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,

    /// Seconds of measured load after the warm-up [default: 10, unless only --requests is given].
    #[arg(long, env = "PAYLEDGER_BENCH_DURATION", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,

    /// Stop after this many measured requests (whichever of this and --duration comes first).
    #[arg(long, env = "PAYLEDGER_BENCH_REQUESTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Webhook and balance scenarios: number of distinct organizations paid (or read); 1 puts all the load
    /// on one hot account.
    #[arg(long, env = "PAYLEDGER_BENCH_ORGS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub orgs: u32,

    /// Webhook scenario: percent of requests that resend an already acknowledged notice verbatim (0..=100).
    #[arg(long, env = "PAYLEDGER_BENCH_DUPLICATE_SHARE", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub duplicate_share: u8,

    /// Transfers scenario: number of users (2..=1000000) sending each other money; 2 puts all the load on
    /// one hot pair. Balances and history scenarios: number of users read.
    #[arg(long, env = "PAYLEDGER_BENCH_USERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(2..=USER_ID_BLOCK as i64))]
    pub users: u32,

    /// Transfers, balances and history scenarios: roubles deposited into every user before the load, e.g.
    /// "1000000.00".
    #[arg(long, env = "PAYLEDGER_BENCH_INITIAL_BALANCE", default_value = "1000000.00", value_parser = parse_deposit)]
    pub initial_balance: i64,

    /// Operations per request, for the webhook and transfers scenarios. 1 sends each notice to the webhook and
    /// each transfer to `POST /api/transfer_funds/`; more sends them together to the batch API
    /// (`POST /api/v1/batch/`, at most 1000), each transfer with its own key, and the rate is also reported
    /// in operations per second.
    #[arg(long, env = "PAYLEDGER_BENCH_BATCH", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,

    /// Seconds of load before measuring starts; its notices are still verified.
    #[arg(long, env = "PAYLEDGER_BENCH_WARMUP", default_value_t = 1)]
    pub warmup: u64,

    /// PID of the server, to report its peak RSS (VmHWM) at the end.
    #[arg(long, env = "PAYLEDGER_BENCH_SERVER_PID")]
    pub server_pid: Option<u32>,

    /// Also print the summary as one JSON line.
    #[arg(long, env = "PAYLEDGER_BENCH_JSON", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub json: bool,

    /// Seed for the organizations' INNs (or the users' ids), to reuse them across runs [default: random].
    #[arg(long, env = "PAYLEDGER_BENCH_SEED")]
    pub seed: Option<u64>,

    /// Seconds before a connect or a request without a complete answer is given up.
    #[arg(long, env = "PAYLEDGER_BENCH_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Seconds allowed after the load for resending notices (or transfers) whose outcome is unknown; also
    /// how long each set-up deposit (or set-up notice of the balance scenario) may take.
    #[arg(long, env = "PAYLEDGER_BENCH_SETTLE", default_value_t = 30)]
    pub settle: u64,

    /// Seconds to keep re-reading balances until they match, for a server that applies acknowledged
    /// notices in the background (`--webhook-mode async`); 0 checks once. Payouts scenario: seconds the
    /// payout queue may take to drain after creation stops. With --event-receiver: also seconds the events
    /// may take to arrive after the load. Balance scenario: seconds the set-up notices may take to show in the
    /// balances before the load [default: 0; 120 for payouts and with --event-receiver].
    #[arg(long, env = "PAYLEDGER_BENCH_CONVERGE")]
    pub converge: Option<u64>,

    /// Webhook scenario: receive the server's outbound events. The bench starts an HTTP receiver on
    /// 127.0.0.1 (an ephemeral port), registers it as a webhook endpoint for `bank_payment.credited` before
    /// the load (--username must be an admin, and the server needs PAYLEDGER_OUTBOUND_ALLOWED_NETWORKS=
    /// 127.0.0.0/8), waits after the load until every acknowledged notice's event has arrived, reports the
    /// delivery rate, and deletes the endpoint at the end. A missing or unexpected event fails the run.
    #[arg(long, env = "PAYLEDGER_BENCH_EVENT_RECEIVER", action = ArgAction::SetTrue,
          value_parser = BoolishValueParser::new())]
    pub event_receiver: bool,
}

impl Args {
    /// `--username` and `--password`, if a username is given (clap makes sure its password is too).
    pub fn credentials(&self) -> Option<Credentials> {
        match (&self.username, &self.password) {
            (Some(username), Some(password)) => {
                Some(Credentials { username: username.clone(), password: password.clone() })
            }
            _ => None,
        }
    }

    /// `--converge` in seconds, with the scenario's default.
    pub fn converge_secs(&self) -> u64 {
        let default = match self.scenario {
            Scenario::Payouts => PAYOUTS_CONVERGE_SECS,
            _ if self.event_receiver => EVENTS_CONVERGE_SECS,
            _ => 0,
        };
        self.converge.unwrap_or(default)
    }

    /// When measured load ends relative to the end of the warm-up, if by time at all.
    pub fn measured_window(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (Some(seconds), _) => Some(Duration::from_secs(seconds)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    /// How the closed-loop workers are paced when the warm-up ends at `warmup_end`.
    pub fn pace(&self, target: &Target, timeout: Duration, warmup_end: Instant, stop: Arc<AtomicBool>) -> Pace {
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
    pub fn window_text(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_event_receiver_waits_two_minutes_for_the_events_unless_told() {
        let parse = |extra: &[&str]| Args::try_parse_from([&["payledger-bench"], extra].concat()).unwrap();
        assert!(!parse(&[]).event_receiver);
        let events = parse(&["--event-receiver"]);
        assert_eq!((events.event_receiver, events.converge_secs()), (true, 120));
        assert_eq!(parse(&["--event-receiver", "--converge", "7"]).converge_secs(), 7);
        assert!(Args::try_parse_from(["payledger-bench", "--event-receiver", "yes"]).is_err());
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
    fn the_ceiling_and_the_reads_are_scenarios() {
        let parse = |extra: &[&str]| Args::try_parse_from([&["payledger-bench"], extra].concat());
        for (name, scenario) in [
            ("ceiling", Scenario::Ceiling),
            ("balance", Scenario::Balance),
            ("balances", Scenario::Balances),
            ("history", Scenario::History),
        ] {
            let args = parse(&["--scenario", name]).unwrap();
            assert_eq!((args.scenario, args.converge_secs()), (scenario, 0), "{name}");
        }
        let reads = parse(&["--scenario", "history", "--users", "2", "--initial-balance", "0.01"]).unwrap();
        assert_eq!((reads.users, reads.initial_balance), (2, 1));
        assert_eq!(parse(&["--scenario", "balance", "--orgs", "1"]).unwrap().orgs, 1);
        assert!(parse(&["--scenario", "reads"]).is_err());
        assert!(parse(&["--scenario", "Ceiling"]).is_err());
    }

    #[test]
    fn a_username_needs_its_password_and_a_password_alone_is_ignored() {
        let parse = |extra: &[&str]| Args::try_parse_from([&["payledger-bench"], extra].concat());
        let both = parse(&["--username", "bench", "--password", "s3cret"]).unwrap();
        let credentials = both.credentials().unwrap();
        assert_eq!((credentials.username.as_str(), credentials.password.as_str()), ("bench", "s3cret"));
        assert!(parse(&["--username", "bench"]).is_err());
        assert!(parse(&["--password", "s3cret"]).unwrap().credentials().is_none(), "a password alone is ignored");
        assert!(parse(&[]).unwrap().credentials().is_none());
    }
}
