//! The run of the chosen scenario: the server resolved, the login, the scenario's own steps (one module
//! each; the ceiling and the reads share one), and the pieces they share: the closed-loop workers and the
//! converging balance check.

mod payouts;
mod reads;
#[cfg(test)]
mod test_support;
mod transfers;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::args::{Args, Scenario};
use crate::auth::{self, Session};
use crate::client::Target;
use crate::reads::ReadKind;
use crate::report::{AuthReport, Summary};

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
pub async fn run(args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<Summary> {
    if args.event_receiver && args.scenario != Scenario::Webhook {
        bail!("--event-receiver applies to the webhook scenario only");
    }
    if args.event_receiver && args.credentials().is_none() {
        // Checked before anything is sent: registering an endpoint is for an admin only.
        bail!("--event-receiver registers a webhook endpoint, which needs --username and --password of an admin");
    }
    if args.duplicate_share > 0 && args.scenario != Scenario::Webhook {
        bail!("--duplicate-share applies to the webhook scenario only");
    }
    if args.batch > 1 && !matches!(args.scenario, Scenario::Webhook | Scenario::Transfers) {
        bail!("--batch applies to the webhook and transfers scenarios only");
    }
    if args.batch > 1 && args.credentials().is_none() {
        // Checked before anything is sent: unlike the webhook, the batch API is for an operator only.
        bail!("--batch sends to the batch API, which needs --username and --password of an operator");
    }
    if args.batch > 1 && args.duplicate_share > 0 {
        // A batch may not carry one operation_id twice, and a drawn duplicate could repeat one.
        bail!("--batch and --duplicate-share cannot be combined");
    }
    let target = Target::resolve(&args.url).await?;
    // Kept to the end of the run: dropping it stops renewing the token.
    let session = match args.credentials() {
        Some(_) if args.scenario == Scenario::Ceiling => {
            // The probe is open, so the ceiling is the cost of HTTP alone; a token would only add a header.
            eprintln!("payledger-bench: the ceiling's route is open: not logging in, --username is not used");
            None
        }
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
        Scenario::Webhook => webhook::run_webhook(args, &target, stop).await,
        Scenario::Transfers => transfers::run_transfers(args, &target, stop).await,
        Scenario::Payouts => payouts::run_payouts(args, &target, stop).await,
        Scenario::Ceiling => reads::run_ceiling(args, &target, stop).await,
        Scenario::Balance => reads::run_reads(args, &target, stop, ReadKind::Balance).await,
        Scenario::Balances => reads::run_reads(args, &target, stop, ReadKind::Balances).await,
        Scenario::History => reads::run_reads(args, &target, stop, ReadKind::History).await,
    }?;
    summary.batch = args.batch;
    summary.auth = AuthReport {
        user: session.as_ref().map(|s| s.username().to_owned()),
        logins: session.as_ref().map_or(0, Session::logins),
        refusals: target.refusals(),
    };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::test_support::*;
    use super::*;
    use crate::client::Refusals;
    use crate::exit_code;
    use crate::mock::{MOCK_OPERATOR, MOCK_PASSWORD, MOCK_VIEWER, Mock, MockConfig};

    fn authenticated_config(token_ttl_secs: u64) -> MockConfig {
        MockConfig { token_ttl_secs, payout_micros: 100, ..MockConfig::default() }
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
}
