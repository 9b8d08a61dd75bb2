//! The `payledger` command: `serve` (the default), `migrate`, `seed` and `verify`.

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
    let serve = match &cli.command {
        Some(Command::Serve(serve)) => serve.clone(),
        _ => cli.serve.clone(),
    };
    let payout_args = match &cli.command {
        Some(Command::Worker(args)) => args.clone(),
        _ => serve.payouts.clone(),
    };
    let settings = Settings {
        database_url: database_url.clone(),
        webhook_mode: serve.webhook_mode,
        webhook_conflict: serve.webhook_conflict,
        demo_organizations: serve.demo_organizations,
        data_dir: cli.common.data_dir.clone(),
        webhook_guard: serve.webhook_guard()?,
        payouts: payout_args.settings()?,
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
        Command::Migrate => {
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
        Command::Verify => {
            // Read only: a database that was never migrated fails the check instead of being changed.
            let store = Store::connect(&database_url).await?;
            let report = store.verify().await?;
            println!(
                "checked {} accounts, {} transactions, {} entries, {} applied bank payments",
                report.accounts, report.transactions, report.entries, report.bank_payments
            );
            if report.problems.is_empty() {
                println!("OK: every balance equals the sum of its entries and every invariant holds");
                Ok(ExitCode::SUCCESS)
            } else {
                for problem in &report.problems {
                    println!("PROBLEM: {problem}");
                }
                println!("FAILED: {} problem(s) found", report.problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
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
