//! The ceiling and the read scenarios: the set-up of the accounts read (none for the ceiling), a closed loop
//! of `GET`s, and the check of every answer against the set-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::{SmallRng, StdRng};
use rand::{Rng, SeedableRng};

use super::run_workers;
use super::transfers::first_user_id;
use crate::api::{self, LIVENESS_PATH, UserBalance};
use crate::args::Args;
use crate::client::Target;
use crate::load::{MAX_AMOUNT_KOPECKS, Settled};
use crate::reads::{self, Plan, Read, ReadKind, ReadTally, WorkerReport};
use crate::report::{AuthReport, CeilingCheck, Check, ReadCheck, Summary};
use crate::{inn, money, rss, transfers};

/// How often the `balance` scenario re-reads the set-up's balances while it waits for them (`--converge`).
const SETUP_POLL: Duration = Duration::from_millis(200);

/// The ceiling: the liveness probe under the same client and closed loop as every scenario, no set-up, and
/// nothing to check but that every answer was 2xx.
pub async fn run_ceiling(args: &Args, target: &Target, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    eprintln!(
        "payledger-bench: ceiling, {} ({}), {} connections, GET {LIVENESS_PATH}, {} after {} s warm-up",
        args.url,
        target.addr(),
        args.connections,
        args.window_text(),
        args.warmup
    );
    let (load, elapsed) = measure(args, target, stop, vec![Read::ceiling()]).await?;
    let check = CeilingCheck::from_stats(&load.tally.measured);
    Ok(summary(args, load, elapsed, Check::Ceiling(check)))
}

/// A read scenario: the set-up of its accounts (not measured), the reads, and their check.
pub async fn run_reads(args: &Args, target: &Target, stop: Arc<AtomicBool>, kind: ReadKind) -> anyhow::Result<Summary> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let (reads, mut check) = match kind {
        ReadKind::Balance => set_up_organizations(args, target, seed).await?,
        ReadKind::Balances | ReadKind::History => set_up_users(args, target, seed, kind).await?,
    };
    let (mut load, elapsed) = measure(args, target, stop, reads).await?;
    check.reads = std::mem::take(&mut load.reads);
    check.not_answered = CeilingCheck::from_stats(&load.tally.measured).failed;
    Ok(summary(args, load, elapsed, Check::Reads(check)))
}

/// Runs the closed-loop workers over `reads`; returns what they did and the measured window.
async fn measure(
    args: &Args,
    target: &Target,
    stop: Arc<AtomicBool>,
    reads: Vec<Read>,
) -> anyhow::Result<(WorkerReport, Duration)> {
    let timeout = Duration::from_secs(args.timeout);
    let warmup_end = Instant::now() + Duration::from_secs(args.warmup);
    let plan = Arc::new(Plan { pace: args.pace(target, timeout, warmup_end, stop), reads, issued: AtomicU64::new(0) });
    let load = run_workers(args.connections as usize, || reads::worker(Arc::clone(&plan)), WorkerReport::merge).await?;
    let elapsed = load.tally.elapsed(warmup_end);
    Ok((load, elapsed))
}

/// The summary of a ceiling or read run: no operations to acknowledge or settle.
fn summary(args: &Args, load: WorkerReport, elapsed: Duration, verification: Check) -> Summary {
    Summary {
        measured: load.tally.measured,
        elapsed,
        warmup_requests: load.tally.warmup_requests,
        acknowledged_ops: 0,
        connects: load.tally.connects,
        first_error: load.tally.first_error,
        settled: Settled::default(),
        unresolved: 0,
        verification,
        server_peak_rss_kib: args.server_pid.map(|pid| rss::peak_rss_kib(pid).map_err(|e| format!("{e:#}"))),
        // Filled in by `run`, which knows the whole run's refusals.
        auth: AuthReport::default(),
        events: None,
        batch: 1,
    }
}

/// The `balance` scenario's set-up: `--orgs` organizations, each paid one bank notice of a random amount on
/// top of whatever it had; returns their reads and the check to fill in.
async fn set_up_organizations(args: &Args, target: &Target, seed: u64) -> anyhow::Result<(Vec<Read>, ReadCheck)> {
    let timeout = Duration::from_secs(args.timeout);
    let connections = args.connections as usize;
    let inns = Arc::new(inn::distinct(args.orgs as usize, &mut StdRng::seed_from_u64(seed)));
    eprintln!(
        "payledger-bench: balance, {} ({}), {connections} connections, {} orgs given one bank notice each, {} \
         after {} s warm-up, seed {seed}",
        args.url,
        target.addr(),
        inns.len(),
        args.window_text(),
        args.warmup
    );
    let baseline = api::read_balances(target, timeout, Arc::clone(&inns), connections)
        .await
        .context("reading baseline balances")?;
    // Amounts come from the OS generator, like the webhook scenario's: only the INNs follow the seed.
    let mut rng = SmallRng::from_os_rng();
    let amounts: Arc<Vec<i64>> = Arc::new(inns.iter().map(|_| rng.random_range(1..=MAX_AMOUNT_KOPECKS)).collect());
    let mut expected = Vec::with_capacity(inns.len());
    for (before, amount) in baseline.iter().zip(amounts.iter()) {
        // The expected balance must fit in kopecks as i64, or the check itself would overflow.
        let Some(after) = before.checked_add(*amount) else {
            bail!("an organization's balance {} is too large to check exactly", money::format_kopecks(*before));
        };
        expected.push(after);
    }
    let seeded = amounts.iter().try_fold(0i64, |sum, amount| sum.checked_add(*amount)).unwrap_or(i64::MAX);
    let patience = Duration::from_secs(args.settle.max(1));
    let setup_resent = reads::notify_all(target, timeout, Arc::clone(&inns), amounts, connections, patience)
        .await
        .context("sending the set-up's bank notices")?;
    if args.converge_secs() > 0 {
        await_organizations(args, target, &inns, &expected).await?;
    }
    let reads = inns.iter().zip(&expected).map(|(inn, balance)| Read::organization(inn, *balance)).collect();
    let check = ReadCheck {
        kind: ReadKind::Balance,
        accounts: inns.len(),
        first_user: None,
        seeded,
        setup_resent,
        reads: ReadTally::default(),
        not_answered: 0,
    };
    Ok((reads, check))
}

/// Waits up to `--converge` for the set-up's notices to show in the balances, for a server that books
/// acknowledged notices in the background (`--webhook-mode async`); if they never do, the reads say so.
async fn await_organizations(
    args: &Args,
    target: &Target,
    inns: &Arc<Vec<String>>,
    expected: &[i64],
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.converge_secs());
    loop {
        let actual = api::read_balances(target, timeout, Arc::clone(inns), args.connections as usize)
            .await
            .context("reading the set-up's balances")?;
        if actual == expected {
            eprintln!("payledger-bench: the set-up's balances showed after {} ms", started.elapsed().as_millis());
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "payledger-bench: the set-up's balances still differ after --converge {} s; reading them anyway",
                args.converge_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(SETUP_POLL).await;
    }
}

/// The `balances` and `history` scenarios' set-up: `--users` users (the transfers scenario's, from the seed),
/// each given `--initial-balance` on top of whatever they had; returns their reads and the check to fill in.
async fn set_up_users(
    args: &Args,
    target: &Target,
    seed: u64,
    kind: ReadKind,
) -> anyhow::Result<(Vec<Read>, ReadCheck)> {
    let timeout = Duration::from_secs(args.timeout);
    let connections = args.connections as usize;
    let first_user = first_user_id(seed);
    let users: Arc<Vec<u64>> = Arc::new((first_user..first_user + u64::from(args.users)).collect());
    let deposit = args.initial_balance;
    eprintln!(
        "payledger-bench: {}, {} ({}), {connections} connections, {} users (ids {first_user}..={}) given {} each, \
         {} after {} s warm-up, seed {seed}",
        kind.name(),
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
    let mut reads = Vec::with_capacity(users.len());
    for (&user, before) in users.iter().zip(&baseline) {
        let Some(amount) = before.amount.checked_add(deposit) else {
            bail!("user {user}'s balance is too large to check exactly");
        };
        let balance = UserBalance { amount, reserved: before.reserved };
        reads.push(match kind {
            ReadKind::History => Read::history(user, balance, deposit),
            ReadKind::Balance | ReadKind::Balances => Read::user(user, balance),
        });
    }
    let patience = Duration::from_secs(args.settle.max(1));
    let setup_resent = transfers::deposit_all(target, timeout, Arc::clone(&users), deposit, connections, patience)
        .await
        .context("depositing the initial balances")?;
    let check = ReadCheck {
        kind,
        accounts: users.len(),
        first_user: Some(first_user),
        seeded: deposit,
        setup_resent,
        reads: ReadTally::default(),
        not_answered: 0,
    };
    Ok((reads, check))
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use super::super::test_support::*;
    use crate::exit_code;
    use crate::mock::{Mock, MockConfig};
    use crate::report::{Check, ReadCheck, Summary};

    fn reads(summary: &Summary) -> &ReadCheck {
        match &summary.verification {
            Check::Reads(r) => r,
            _ => panic!("not a read run"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ceiling_reads_the_open_probe_without_logging_in() {
        // Tokens required everywhere else: the probe must be reached without one, and no login made.
        let mock = Mock::start(MockConfig { token_ttl_secs: 900, ..MockConfig::default() }).await;
        let args = [&AS_OPERATOR[..], &["--scenario", "ceiling", "--connections", "3", "--requests", "200"]].concat();
        let summary = bench(&mock, &args).await;
        let m = &summary.measured;
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!((m.requests, m.status.ok, m.latency.count()), (200, 200, 200));
        assert_eq!((mock.logins(), summary.auth.logins, summary.auth.user.as_deref()), (0, 0, None));
        assert_eq!(mock.live_calls(), 200);
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
        let text = summary.render_text();
        assert!(text.contains("route:       GET /api/health/live/, without credentials"), "{text}");
        assert!(
            text.ends_with(
                "check: not applicable (GET /api/health/live/ reads no data); 200 answered 2xx, none failed\n"
            ),
            "{text}"
        );
        let json = summary.to_json();
        assert_eq!(json["scenario"], "ceiling");
        let check = &json["balances"];
        assert_eq!((check["applicable"].as_bool(), check["ok"].as_bool()), (Some(false), Some(true)));
        assert_eq!((check["answered_2xx"].as_u64(), check["failed"].as_u64()), (Some(200), Some(0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ceiling_with_failed_answers_is_no_ceiling() {
        let mock = Mock::start(MockConfig { fail_every: 10, ..MockConfig::default() }).await;
        let summary = bench(&mock, &["--scenario", "ceiling", "--connections", "2", "--requests", "100"]).await;
        assert_eq!((summary.measured.status.ok, summary.measured.status.unavailable), (90, 10));
        assert!(!summary.verification.ok());
        assert_eq!(exit_code(&summary), ExitCode::from(1));
        let text = summary.render_text();
        assert!(
            text.contains("check: FAILED (not applicable to the answers, but 90 answered 2xx and 10 were"),
            "{text}"
        );
        assert_eq!(summary.to_json()["balances"]["ok"], false);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn balance_reads_of_seeded_organizations_are_exact() {
        let mock = Mock::start(MockConfig { token_ttl_secs: 900, ..MockConfig::default() }).await;
        let args =
            [&AS_OPERATOR[..], &["--scenario", "balance", "--orgs", "5", "--connections", "3", "--requests", "300"]]
                .concat();
        let summary = bench(&mock, &args).await;
        let r = reads(&summary);
        assert!(summary.verification.ok(), "{}", summary.render_text());
        assert_eq!((summary.measured.status.ok, r.reads.checked, r.reads.mismatches), (300, 300, 0));
        assert_eq!((r.accounts, r.first_user, r.setup_resent), (5, None, 0));
        assert_eq!(r.seeded, mock.total(), "one notice per organization, each booked once");
        assert_eq!(mock.logins(), 1);
        assert_eq!(exit_code(&summary), ExitCode::SUCCESS);
        let text = summary.render_text();
        assert!(text.contains("setup:       5 orgs, one bank notice each, "), "{text}");
        assert!(text.contains("reads:       300 answers checked against the set-up (warm-up included), 0 mismatches"));
        assert!(text.ends_with("balances: OK (5 orgs; all 300 answers checked said exactly what the set-up left)\n"));
        let json = summary.to_json();
        assert_eq!((json["scenario"].as_str(), json["setup"]["orgs"].as_u64()), (Some("balance"), Some(5)));
        assert_eq!((json["balances"]["ok"].as_bool(), json["balances"]["checked"].as_u64()), (Some(true), Some(300)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn user_balance_and_history_reads_are_exact() {
        let mock = Mock::start(MockConfig { token_ttl_secs: 900, ..MockConfig::default() }).await;
        for scenario in ["balances", "history"] {
            let args = [&AS_OPERATOR[..], &["--scenario", scenario, "--users", "4", "--requests", "200"]].concat();
            let summary =
                bench(&mock, &[&args[..], &["--initial-balance", "12.34", "--connections", "2"]].concat()).await;
            let r = reads(&summary);
            assert!(summary.verification.ok(), "{scenario}: {}", summary.render_text());
            assert_eq!((r.reads.checked, r.reads.mismatches, r.accounts, r.seeded), (200, 0, 4, 1_234), "{scenario}");
            assert_eq!(summary.to_json()["scenario"], scenario);
            assert!(summary.render_text().contains(" users (ids "), "{}", summary.render_text());
        }
        // Each scenario drew its own random block of users: two deposits of 12.34 into 4 users each.
        assert_eq!(mock.user_total(), 2 * 4 * 1_234);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rerun_with_the_same_seed_expects_both_deposits() {
        let mock = Mock::start(MockConfig::default()).await;
        for scenario in ["balances", "history", "history"] {
            let args = ["--scenario", scenario, "--users", "3", "--requests", "50", "--seed", "9"];
            let summary = bench(&mock, &args).await;
            assert!(summary.verification.ok(), "{scenario}: {}", summary.render_text());
        }
        assert_eq!(mock.user_total(), 3 * 3 * 100_000_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_balance_is_a_mismatch_that_fails_the_run() {
        // The mock says one kopeck more than it holds, for organizations and users alike.
        let mock = Mock::start(MockConfig { misreport_balances: true, ..MockConfig::default() }).await;
        let summary =
            bench(&mock, &["--scenario", "balance", "--orgs", "3", "--connections", "2", "--requests", "100"]).await;
        let r = reads(&summary);
        assert!(!summary.verification.ok());
        assert_eq!((r.reads.checked, r.reads.mismatches), (100, 100));
        let first = r.reads.first_mismatch.as_deref().unwrap();
        assert!(first.starts_with("organization ") && first.contains(": expected "), "{first}");
        assert_eq!(exit_code(&summary), ExitCode::from(1));
        let text = summary.render_text();
        assert!(text.contains("balances: MISMATCH in 100 of 100 answers (3 orgs); first: organization "), "{text}");
        let json = summary.to_json();
        assert_eq!(
            (json["balances"]["ok"].as_bool(), json["balances"]["mismatches"].as_u64()),
            (Some(false), Some(100))
        );

        let summary = bench(&mock, &["--scenario", "balances", "--users", "2", "--requests", "40"]).await;
        let first = reads(&summary).reads.first_mismatch.clone().unwrap();
        assert!(
            first.ends_with(": expected 1000000.00 + reserved 0.00, server says 1000000.01 + reserved 0.00"),
            "{first}"
        );
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_account_is_a_mismatch() {
        let mock = Mock::start(MockConfig { forget_accounts: true, ..MockConfig::default() }).await;
        let summary = bench(&mock, &["--scenario", "balance", "--orgs", "2", "--requests", "20"]).await;
        let r = reads(&summary);
        assert_eq!((r.reads.checked, r.reads.mismatches, summary.measured.status.client_error), (20, 20, 20));
        assert!(r.reads.first_mismatch.as_deref().unwrap().ends_with(": HTTP 404 for an account the set-up created"));
        assert_eq!(exit_code(&summary), ExitCode::from(1));
    }
}
