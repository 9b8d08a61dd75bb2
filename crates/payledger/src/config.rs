//! Command-line interface and configuration: every flag has an environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default SQLite location, inside the default data folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/payledger.db";

/// payledger: a self-hosted payments ledger service.
#[derive(Debug, Parser)]
#[command(name = "payledger", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to run; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Settings of the server when no subcommand is given (`serve` is the default).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background workers (the default).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create demo organizations with valid INNs (idempotent: the same N give the same organizations).
    Seed {
        /// How many organizations.
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
    /// Recompute every balance from the ledger entries and check every invariant; exit 1 on any problem.
    Verify,
}

/// Settings every subcommand uses.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Database URL: `sqlite://path/to/file.db` (embedded) or `postgres://user@host/db`.
    /// Defaults to `sqlite://<data dir>/payledger.db`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Folder for the embedded database and other local state.
    #[arg(long, env = "PAYLEDGER_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Log filter, e.g. `info`, `payledger=debug,sqlx=warn`.
    #[arg(long, env = "PAYLEDGER_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format.
    #[arg(long, env = "PAYLEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("payledger.db").display()))
    }
}

/// Settings of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PAYLEDGER_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// `sync`: a webhook is applied before it is answered. `async`: it is durably recorded, answered at
    /// once, and applied by a background worker.
    #[arg(long, env = "PAYLEDGER_WEBHOOK_MODE", value_enum, default_value_t = WebhookMode::Sync)]
    pub webhook_mode: WebhookMode,
    /// What to answer when a known operation_id arrives with different data: `record` (200, the conflict is
    /// recorded for operators, as the original contract says) or `reject` (409).
    #[arg(long, env = "PAYLEDGER_WEBHOOK_CONFLICT", value_enum, default_value_t = ConflictPolicy::Record)]
    pub webhook_conflict: ConflictPolicy,
    /// Demo organizations created on an empty database at start-up (0 to create none).
    #[arg(long, env = "PAYLEDGER_DEMO_ORGANIZATIONS", default_value_t = 5)]
    pub demo_organizations: u32,
}

/// How webhooks are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WebhookMode {
    /// Applied before the answer.
    Sync,
    /// Recorded before the answer, applied in the background.
    Async,
}

/// The answer to a known operation id with different data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConflictPolicy {
    /// 200 and a recorded conflict.
    Record,
    /// 409.
    Reject,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the server needs to start, independent of where it came from (CLI or a test).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database URL.
    pub database_url: String,
    /// How webhooks are applied.
    pub webhook_mode: WebhookMode,
    /// How conflicting notices are answered.
    pub webhook_conflict: ConflictPolicy,
    /// Demo organizations to seed into an empty database.
    pub demo_organizations: u32,
}

impl Settings {
    /// Settings for a database URL with every other value at its default.
    pub fn for_database(database_url: impl Into<String>) -> Settings {
        Settings {
            database_url: database_url.into(),
            webhook_mode: WebhookMode::Sync,
            webhook_conflict: ConflictPolicy::Record,
            demo_organizations: 0,
        }
    }
}

/// Hides the password of a database URL for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/ledger"), "postgres://app:***@db:5432/ledger");
        assert_eq!(redact_url("postgres://app@db/ledger"), "postgres://app@db/ledger");
        assert_eq!(redact_url("sqlite://./data/payledger.db"), "sqlite://./data/payledger.db");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
