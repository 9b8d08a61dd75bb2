//! The `payledger` command: `serve` (the default), `migrate`, `seed`, `worker`, `user`, `verify`, `backup`,
//! `restore`, `statement`, `healthcheck` and (for development) `populate`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use payledger::config::{Cli, Command, Settings};
use payledger::{open_store, store::Store, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_tracing(&cli.common.log, cli.common.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let database_url = cli.common.database_url();
    if let Some(code) = without_server_settings(&cli, &database_url).await {
        return Ok(code);
    }
    let serve = match &cli.command {
        Some(Command::Serve(serve)) => serve.clone(),
        _ => cli.serve.clone(),
    };
    let payout_args = match &cli.command {
        Some(Command::Worker(args)) => args.clone(),
        _ => serve.payouts.clone(),
    };
    let mut payouts = payout_args.settings()?;
    payouts.events.require_https = serve.profile == payledger::config::Profile::Production;
    let settings = Settings {
        profile: serve.profile,
        database_url: database_url.clone(),
        database_configured: cli.common.database_url.is_some(),
        webhook_mode: serve.webhook_mode,
        webhook_conflict: serve.webhook_conflict,
        demo_organizations: serve.demo_organizations,
        data_dir: cli.common.data_dir.clone(),
        webhook_guard: serve.webhook_guard()?,
        admin: serve.admin_username.clone().zip(serve.admin_password.clone()),
        tokens: payledger::config::TokenSettings {
            secret: serve.jwt_secret.clone(),
            access_ttl: std::time::Duration::from_secs(serve.access_token_ttl_seconds.max(1)),
            refresh_ttl: std::time::Duration::from_secs(serve.refresh_token_ttl_seconds.max(1)),
            login_attempts_per_minute: serve.login_rate_per_minute,
            login_failures_per_username_per_minute: serve.login_failures_per_username_per_minute,
            user_cache: std::time::Duration::from_millis(serve.user_cache_ms),
        },
        payouts,
        request_timeout: std::time::Duration::from_secs(serve.request_timeout_seconds.max(1)),
        shutdown_drain: std::time::Duration::from_secs(serve.shutdown_drain_seconds),
        shutdown_grace: std::time::Duration::from_secs(serve.shutdown_grace_seconds),
        trusted_proxies: serve.trusted_proxies()?,
        statement_max_bytes: serve.statement_max_bytes,
        reconcile: payledger::statement::ReconcileSettings {
            date_tolerance_days: serve.statement_date_tolerance_days,
            max_file_bytes: serve.statement_max_bytes,
            max_lines: serve.statement_max_lines,
        },
    };
    match cli.command.unwrap_or(Command::Serve(serve.clone())) {
        Command::Serve(_) => {
            let listener =
                tokio::net::TcpListener::bind(serve.bind).await.with_context(|| format!("binding {}", serve.bind))?;
            payledger::launch(settings, listener, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(_) => {
            payledger::run_workers(settings, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(command) => {
            let store = Store::connect(&database_url).await?;
            store.migrate().await?;
            user_command(&store, command).await
        }
        Command::Migrate { .. } => {
            let store = Store::connect(&database_url).await?;
            store.migrate().await?;
            println!("migrations applied ({})", store.backend());
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed { count } => {
            let store = open_store(&Settings { demo_organizations: 0, ..settings }).await?;
            let orgs = payledger::seed::seed(&store, count).await?;
            for (inn, name) in &orgs {
                println!("{inn}  {name}");
            }
            println!("{} demo organizations present", orgs.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Populate(args) => populate(&settings, &args).await,
        Command::Verify { .. }
        | Command::Statement(_)
        | Command::Healthcheck { .. }
        | Command::Backup { .. }
        | Command::Restore { .. } => {
            anyhow::bail!("this command is answered before the server's settings are read")
        }
    }
}

/// The commands that need only the database (or a URL), answered before the server's settings are read: the
/// settings of a server they do not start (a bad payout or webhook variable in the environment) must not make
/// them fail, least of all with the exit status of a finding.
async fn without_server_settings(cli: &Cli, database_url: &str) -> Option<ExitCode> {
    use payledger::cli::{backup, deploy, statement, verify};
    Some(match cli.command.as_ref()? {
        Command::Verify { json, explain } => verify::main(database_url, *json, *explain).await,
        Command::Migrate { check: true } => deploy::migrate_check(database_url).await,
        Command::Healthcheck { url } => {
            let url = url.clone().unwrap_or_else(|| deploy::local_readiness_url(cli.serve.bind));
            deploy::healthcheck(&url).await
        }
        Command::Backup { to, force } => backup::backup(database_url, to, *force).await,
        Command::Restore { from, force } => backup::restore(database_url, from, *force).await,
        // An import needs its own ledger engine on the database, but no server's settings either.
        Command::Statement(command) => statement::main(database_url, command).await,
        _ => return None,
    })
}

/// `payledger populate`: refuses a production configuration unless forced, then builds and reports.
async fn populate(settings: &Settings, args: &payledger::config::PopulateArgs) -> anyhow::Result<ExitCode> {
    use payledger::cli::populate;
    anyhow::ensure!(
        settings.profile != payledger::config::Profile::Production || args.force,
        "populate fills the database with made-up payments; refusing under the production profile (use --force \
         on a copy that is not production)"
    );
    let store = open_store(&Settings { demo_organizations: 0, ..settings.clone() }).await?;
    let shape = populate::Shape {
        payments: args.payments,
        organizations: args.organizations,
        users: args.users,
        transfers: args.transfers,
        reservations: args.reservations,
        in_flight: args.in_flight,
    };
    let started = std::time::Instant::now();
    let summary = populate::populate(&store, &shape).await?;
    let elapsed = started.elapsed();
    for (phase, took) in &summary.phases {
        println!("{phase}: {:.1} s", took.as_secs_f64());
    }
    // A reservation that was deducted or released is two operations.
    let settled = summary.reservations - summary.reservations / 3;
    let operations = summary.payments + summary.deposits + summary.transfers + summary.reservations + settled;
    println!(
        "populated {} bank payments to {} organizations, {} deposits, {} transfers, {} reservations ({} refused) in \
         {:.1?}: {} operations/s",
        summary.payments,
        args.organizations,
        summary.deposits,
        summary.transfers,
        summary.reservations,
        summary.refused,
        elapsed,
        // Whole operations per second in integers: a count over a duration, never a float.
        u128::from(operations) * 1000 / elapsed.as_millis().max(1)
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a password: from a prompt without echo on a terminal, else one line of standard input.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(password)
}

async fn user_command(store: &Store, command: payledger::config::UserCommand) -> anyhow::Result<ExitCode> {
    use payledger::auth::principals;
    use payledger::config::UserCommand;
    match command {
        UserCommand::Create { username, role } => {
            let password = read_password(&format!("Password for {username}: "))?;
            principals::create(store, "cli", &username, &password, &role, false).await?;
            println!("created {username} ({role})");
        }
        UserCommand::Passwd { username } => {
            let password = read_password(&format!("New password for {username}: "))?;
            principals::set_password(store, "cli", &username, &password).await?;
            println!("password of {username} changed");
        }
        UserCommand::Disable { username } => {
            principals::set_active(store, "cli", &username, false).await?;
            println!("{username} disabled");
        }
        UserCommand::Enable { username } => {
            principals::set_active(store, "cli", &username, true).await?;
            println!("{username} enabled");
        }
        UserCommand::Role { username, role } => {
            principals::set_role(store, "cli", &username, &role).await?;
            println!("{username} is now {role}");
        }
        UserCommand::List => {
            for user in store.principals().await? {
                let state = if user.active { "active" } else { "disabled" };
                let generated = if user.password_generated { " (generated password)" } else { "" };
                println!("{}\t{}\t{}{}", user.username, user.role, state, generated);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}
