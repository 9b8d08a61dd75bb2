//! Command-line interface and configuration: every flag has an environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The webhook's policies are the webhook's own types; the settings name them here too.
pub use crate::webhook::{ConflictPolicy, WebhookMode};

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
// Parsed once per process and moved, never copied in a loop: boxing `serve`'s arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background workers (the default).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate {
        /// Change nothing: exit 0 if every migration of this build is applied, 1 if some are pending (listed),
        /// 2 if the database could not be checked.
        #[arg(long)]
        check: bool,
    },
    /// Ask a running server whether it is ready (GET its `/api/health/ready/`): exit 0 if it answers 2xx, 1
    /// otherwise. For a container's HEALTHCHECK.
    Healthcheck {
        /// The URL to ask; by default the readiness endpoint of `PAYLEDGER_BIND` on this host.
        #[arg(long)]
        url: Option<String>,
    },
    /// Create demo organizations with valid INNs (idempotent: the same N give the same organizations).
    Seed {
        /// How many organizations.
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
    /// Run payout workers only (no HTTP), sharing the database's job queue with other processes.
    Worker(PayoutArgs),
    /// Manage the users of the API and the console. Passwords are read from a prompt or standard input,
    /// never from the command line.
    #[command(subcommand)]
    User(UserCommand),
    /// Recompute every balance from the ledger entries and check every invariant; exit 1 on any violation,
    /// 2 if the checks could not run.
    Verify {
        /// Print one JSON summary for monitoring (every check's code, violations, sample and duration)
        /// instead of the report for people.
        #[arg(long)]
        json: bool,
        /// Print the plan the database chooses for each check instead of running the checks (EXPLAIN QUERY
        /// PLAN on SQLite, EXPLAIN on PostgreSQL), to see that none reads a table once per row.
        #[arg(long, conflicts_with = "json")]
        explain: bool,
    },
    /// Copy the SQLite database to FILE while the servers keep writing, and verify the copy.
    ///
    /// The copy is one consistent snapshot, checked with every `verify` check before it is given its name.
    /// Exit 1 if the copy does not verify (it is deleted), 2 if no backup was made. On PostgreSQL it refuses:
    /// use `pg_dump -Fc` (docs/DEPLOY.md).
    Backup {
        /// The backup file to write. Its folder must exist; a temporary file beside it holds the copy until it
        /// has verified.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replace the SQLite database with a backup that verifies (stop the servers and workers first).
    ///
    /// The backup must pass every `verify` check first. Refused while any process has the database open. The
    /// database it replaces is kept as `<name>.before-restore-<UTC time>`. Exit 1 if the backup does not
    /// verify, 2 if nothing was restored. On PostgreSQL it refuses: use `pg_restore` (docs/DEPLOY.md).
    Restore {
        /// The backup to restore (made by `payledger backup`, or any payledger SQLite database).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace an existing database (it is kept beside the restored one under a new name).
        #[arg(long)]
        force: bool,
    },
    /// Bank statements: import one and reconcile it with the bank's notices (exit 1 on a bad file, 2 if the
    /// import could not run).
    #[command(subcommand)]
    Statement(crate::cli::statement::StatementCommand),
    /// Development: fill the database with bank payments and transfers through the ledger engine, as the
    /// server would, to measure `verify` and the queries at production size. Refused under the production
    /// profile (PAYLEDGER_PROFILE=production) unless `--force` is given.
    #[command(hide = true)]
    Populate(PopulateArgs),
}

/// Settings of `populate`.
#[derive(Debug, Clone, Args)]
pub struct PopulateArgs {
    /// Bank payments to credit, round-robin over the organizations.
    #[arg(long, default_value_t = 10_000)]
    pub payments: u64,
    /// Organizations receiving the payments (the first N demo organizations); 1 makes one hot account.
    #[arg(long, default_value_t = 1)]
    pub organizations: u32,
    /// Users, each opened by a deposit, who send and receive the transfers.
    #[arg(long, default_value_t = 1_000)]
    pub users: u32,
    /// Transfers between the users.
    #[arg(long, default_value_t = 10_000)]
    pub transfers: u64,
    /// Reservations after the transfers: a third each deducted, released and left open.
    #[arg(long, default_value_t = 0)]
    pub reservations: u64,
    /// Commands waiting for the ledger writer at once.
    #[arg(long, default_value_t = crate::cli::populate::DEFAULT_IN_FLIGHT)]
    pub in_flight: usize,
    /// Build even though the production profile is configured.
    #[arg(long)]
    pub force: bool,
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
    /// `development` relaxes what a laptop needs relaxed (and says so in a banner); `production` refuses to
    /// start unless every secret is set and strong, and requires authentication everywhere.
    #[arg(long, env = "PAYLEDGER_PROFILE", value_enum, default_value_t = Profile::Development)]
    pub profile: Profile,
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
    /// The key access tokens are signed with (HS256), at least 32 bytes. Unset: a random key per process
    /// (development; tokens do not survive a restart or reach another instance).
    #[arg(long, env = "PAYLEDGER_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// How long an access token is valid, in seconds.
    #[arg(long, env = "PAYLEDGER_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900)]
    pub access_token_ttl_seconds: u64,
    /// How long a refresh token is valid, in seconds.
    #[arg(long, env = "PAYLEDGER_REFRESH_TOKEN_TTL_SECONDS", default_value_t = 1_209_600)]
    pub refresh_token_ttl_seconds: u64,
    /// Requests per minute one client address may make to the token endpoints (429 past it).
    #[arg(long, env = "PAYLEDGER_LOGIN_RATE_PER_MINUTE", default_value_t = 10)]
    pub login_rate_per_minute: u32,
    /// Failed password checks per minute at one username from all addresses together (token requests, Basic
    /// verifications, console logins; 429 past it, even for the right password). Keep it above the per-address
    /// rate so that one address cannot lock an account out; a right password never counts, but a check in
    /// progress does.
    #[arg(long, env = "PAYLEDGER_LOGIN_FAILURES_PER_USERNAME_PER_MINUTE", default_value_t = 50)]
    pub login_failures_per_username_per_minute: u32,
    /// How long, in milliseconds, an instance answers requests from its cached copy of the caller's user
    /// without reading it again. A change of a user (password, role, disabling, a revoked login) applies at
    /// once on the instance that made it and, on PostgreSQL, on every instance that hears its notification;
    /// this is the bound for any other (one that missed it, or a change made by the CLI). 0 reads the user on
    /// every request.
    #[arg(long, env = "PAYLEDGER_USER_CACHE_MS", default_value_t = 1000)]
    pub user_cache_ms: u64,
    /// The longest a request may take, in seconds: past it, 503 `unconfirmed` with `Retry-After` (a write
    /// may still be applied, so the client resends it with the same key).
    #[arg(long, env = "PAYLEDGER_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// On a shutdown signal, how many seconds to keep serving with readiness failing (503 `draining`) before
    /// the listener closes, so that a load balancer stops sending requests first. Then the requests in hand
    /// are finished. Behind a balancer, set it above the balancer's health-check interval.
    #[arg(long, env = "PAYLEDGER_SHUTDOWN_DRAIN_SECONDS", default_value_t = 0)]
    pub shutdown_drain_seconds: u64,
    /// After the drain, the most seconds a shutdown waits for the requests in hand and the workers' jobs in
    /// hand before it cuts them off (a job cut off is retried once its lease ends). Keep the service manager's
    /// stop timeout above drain + grace.
    #[arg(long, env = "PAYLEDGER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Reverse proxies whose forwarded headers are believed, comma-separated CIDRs or addresses
    /// (`127.0.0.1,10.0.0.0/8`). From such a peer the client is the rightmost address of `X-Forwarded-For`
    /// that is not a trusted proxy, the scheme is `X-Forwarded-Proto`'s and the request id `X-Request-Id`'s.
    /// Unset: forwarded headers are ignored, and the client is the TCP peer.
    #[arg(long, env = "PAYLEDGER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// The first admin's name, created on the first start when there are no users.
    #[arg(long, env = "PAYLEDGER_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// The first admin's password (environment only in practice: never put it on a command line).
    #[arg(long, env = "PAYLEDGER_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Secrets the bank signs its webhooks with (`X-Payledger-Signature`), comma-separated so a secret can
    /// rotate. Unset: unsigned webhooks are accepted (development).
    #[arg(long, env = "PAYLEDGER_WEBHOOK_SECRET", hide_env_values = true, value_delimiter = ',')]
    pub webhook_secret: Vec<String>,
    /// How far a webhook signature's timestamp may be from now, in seconds.
    #[arg(long, env = "PAYLEDGER_WEBHOOK_TOLERANCE_SECONDS", default_value_t = 300)]
    pub webhook_tolerance_seconds: u32,
    /// Networks the bank's webhooks may come from, comma-separated (`10.0.0.0/8,2001:db8::/32`). Unset: any.
    #[arg(long, env = "PAYLEDGER_WEBHOOK_ALLOWED_NETWORKS", value_delimiter = ',')]
    pub webhook_allowed_networks: Vec<String>,
    /// The largest bank statement `POST /api/v1/statements/` accepts, in bytes (413 past it).
    #[arg(long, env = "PAYLEDGER_STATEMENT_MAX_BYTES", default_value_t = DEFAULT_STATEMENT_MAX_BYTES)]
    pub statement_max_bytes: u64,
    /// Days after a payment's document date within which its statement line may be booked; past them a
    /// notice with no line is a discrepancy (the same setting as `statement import`'s).
    #[arg(long, env = "PAYLEDGER_STATEMENT_DATE_TOLERANCE_DAYS", default_value_t = 3)]
    pub statement_date_tolerance_days: u32,
    /// The most lines an uploaded statement may have.
    #[arg(long, env = "PAYLEDGER_STATEMENT_MAX_LINES", default_value_t = 5_000_000)]
    pub statement_max_lines: u64,
    /// Payout processing.
    #[command(flatten)]
    pub payouts: PayoutArgs,
}

/// How long a shutdown waits for the work in hand by default: the longest a request may take.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = DEFAULT_REQUEST_TIMEOUT;

/// The largest statement upload by default: a month of a busy account's 1C file is a few MiB.
pub const DEFAULT_STATEMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Access and refresh tokens.
#[derive(Clone)]
pub struct TokenSettings {
    /// The signing key; `None` for a random key per process.
    pub secret: Option<String>,
    /// How long an access token is valid.
    pub access_ttl: std::time::Duration,
    /// How long a refresh token is valid.
    pub refresh_ttl: std::time::Duration,
    /// Requests per minute one client address may make to the token endpoints.
    pub login_attempts_per_minute: u32,
    /// Failed password checks per minute at one username, from any addresses (token, Basic, console).
    pub login_failures_per_username_per_minute: u32,
    /// How long a cached user is served without reading it again (`store/principal_cache.rs`).
    pub user_cache: std::time::Duration,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

impl Default for TokenSettings {
    fn default() -> TokenSettings {
        TokenSettings {
            secret: None,
            access_ttl: std::time::Duration::from_secs(900),
            refresh_ttl: std::time::Duration::from_secs(1_209_600),
            login_attempts_per_minute: 10,
            login_failures_per_username_per_minute: 50,
            user_cache: crate::store::principal_cache::DEFAULT_FRESH_FOR,
        }
    }
}

/// Who may post bank notices.
#[derive(Debug, Clone, Default)]
pub struct WebhookGuard {
    /// Secrets a signature may be made with; empty accepts unsigned notices.
    pub secrets: Vec<String>,
    /// How far a signature's timestamp may be from now, in seconds.
    pub tolerance_seconds: i64,
    /// Networks notices may come from; empty allows any.
    pub allowed_networks: Vec<crate::networks::Network>,
}

impl ServeArgs {
    /// The webhook guard these arguments describe, or why a network is malformed.
    pub fn webhook_guard(&self) -> anyhow::Result<WebhookGuard> {
        let allowed_networks = parse_networks(&self.webhook_allowed_networks, "PAYLEDGER_WEBHOOK_ALLOWED_NETWORKS")?;
        Ok(WebhookGuard {
            secrets: self.webhook_secret.iter().filter(|secret| !secret.trim().is_empty()).cloned().collect(),
            tolerance_seconds: i64::from(self.webhook_tolerance_seconds),
            allowed_networks,
        })
    }
}

impl ServeArgs {
    /// The trusted proxies these arguments name, or why one is malformed.
    pub fn trusted_proxies(&self) -> anyhow::Result<crate::origin::TrustedProxies> {
        Ok(crate::origin::TrustedProxies::new(parse_networks(&self.trusted_proxies, "PAYLEDGER_TRUSTED_PROXIES")?))
    }
}

/// A comma-separated list of networks from `variable`; blank entries are skipped.
fn parse_networks(list: &[String], variable: &str) -> anyhow::Result<Vec<crate::networks::Network>> {
    list.iter()
        .filter(|text| !text.trim().is_empty())
        .map(|text| text.parse().map_err(|error: String| anyhow::anyhow!("{variable}: {error}")))
        .collect()
}

/// `payledger user …`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user (the password is asked for, or read from standard input).
    Create {
        /// The login name.
        username: String,
        /// `viewer`, `operator` or `admin`.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Set a user's password (asked for, or read from standard input).
    Passwd {
        /// The login name.
        username: String,
    },
    /// Stop a user from logging in.
    Disable {
        /// The login name.
        username: String,
    },
    /// Let a disabled user log in again.
    Enable {
        /// The login name.
        username: String,
    },
    /// Change a user's role.
    Role {
        /// The login name.
        username: String,
        /// `viewer`, `operator` or `admin`.
        role: String,
    },
    /// List the users.
    List,
}

/// Payout workers, the payment gateway and the card vault.
#[derive(Debug, Clone, Args)]
pub struct PayoutArgs {
    /// Payout workers in this process (0: none; run `payledger worker` processes instead).
    #[arg(long, env = "PAYLEDGER_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// The payment gateway: `simulated` (default) or `http`.
    #[arg(long, env = "PAYLEDGER_GATEWAY", value_enum, default_value_t = GatewayKind::Simulated)]
    pub gateway: GatewayKind,
    /// The HTTP gateway's URL.
    #[arg(long, env = "PAYLEDGER_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// The HTTP gateway's HMAC-SHA256 signing secret.
    #[arg(long, env = "PAYLEDGER_GATEWAY_SECRET", hide_env_values = true)]
    pub gateway_secret: Option<String>,
    /// The HTTP gateway's timeout per call (connect, send and answer), in seconds.
    #[arg(long, env = "PAYLEDGER_GATEWAY_TIMEOUT_SECONDS", default_value_t = 20)]
    pub gateway_timeout_seconds: u64,
    /// The simulated gateway's latency per call, in milliseconds.
    #[arg(long, env = "PAYLEDGER_GATEWAY_LATENCY_MS", default_value_t = 20)]
    pub gateway_latency_ms: u64,
    /// Card-number encryption keys, comma-separated hex (32 bytes each, the first encrypts). Without them a
    /// generated development key in the data directory is used.
    #[arg(long, env = "PAYLEDGER_CARD_KEYS", hide_env_values = true, value_delimiter = ',')]
    pub card_keys: Vec<String>,
    /// Gateway attempts per payout before its job is dead and the payout failed.
    #[arg(long, env = "PAYLEDGER_PAYOUT_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: i32,
    /// The first retry delay in milliseconds; each next one doubles (with jitter), up to 5 minutes.
    #[arg(long, env = "PAYLEDGER_PAYOUT_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// How long a worker holds a claimed job before another worker may take it over, in seconds. Must be
    /// longer than a gateway call can take.
    #[arg(long, env = "PAYLEDGER_JOB_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,
    /// Outbound events, delivered by the same processes' workers.
    #[command(flatten)]
    pub events: crate::events::settings::EventArgs,
}

/// Which payment gateway pays payouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GatewayKind {
    /// Deterministic outcomes by card number, for development and tests.
    Simulated,
    /// JSON over HTTP(S) to `PAYLEDGER_GATEWAY_URL`, signed with `PAYLEDGER_GATEWAY_SECRET`.
    Http,
}

/// How strict the server is about its own configuration and its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// The default: unsigned webhooks, anonymous balance reads, generated keys and passwords, all listed in a
    /// banner at start-up.
    Development,
    /// Every secret set and strong, authentication on every endpoint but the signed webhook, health and
    /// metrics; start-up is refused otherwise.
    Production,
}

/// Admin passwords that ship in examples and tutorials: production refuses them even when long enough.
const DEFAULT_PASSWORDS: [&str; 8] = [
    "administrator",
    "password1234",
    "changeme1234",
    "123456789012",
    "admin1234567",
    "adminadminadmin",
    "qwertyuiop12",
    "payledger-admin",
];

/// The shortest payment-gateway secret production accepts, in bytes.
pub const MIN_GATEWAY_SECRET_LEN: usize = 32;

/// How long a request may take by default before it is answered 503 `unconfirmed`
/// (`PAYLEDGER_REQUEST_TIMEOUT_SECONDS`).
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The shortest webhook secret production accepts, in bytes.
pub const MIN_WEBHOOK_SECRET_LEN: usize = 16;

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
    /// Development or production.
    pub profile: Profile,
    /// The database URL.
    pub database_url: String,
    /// Whether the database was named explicitly (production refuses the implicit embedded default).
    pub database_configured: bool,
    /// How webhooks are applied.
    pub webhook_mode: WebhookMode,
    /// How conflicting notices are answered.
    pub webhook_conflict: ConflictPolicy,
    /// Demo organizations to seed into an empty database.
    pub demo_organizations: u32,
    /// Where generated development files (the card vault's key) live.
    pub data_dir: PathBuf,
    /// Who may post bank notices.
    pub webhook_guard: WebhookGuard,
    /// The first admin to create when there are no users: name and password.
    pub admin: Option<(String, String)>,
    /// Access and refresh tokens.
    pub tokens: TokenSettings,
    /// Payout processing.
    pub payouts: PayoutSettings,
    /// The longest a request may take before it is answered 503.
    pub request_timeout: std::time::Duration,
    /// How long readiness fails before the listener closes on shutdown.
    pub shutdown_drain: std::time::Duration,
    /// After the drain, the most a shutdown waits for requests and jobs in hand.
    pub shutdown_grace: std::time::Duration,
    /// The proxies whose forwarded headers are believed.
    pub trusted_proxies: crate::origin::TrustedProxies,
    /// The largest bank statement upload, in bytes.
    pub statement_max_bytes: u64,
    /// The reconciliation's date tolerance and line limit (its file limit is the upload's).
    pub reconcile: crate::statement::ReconcileSettings,
}

/// Payout processing, resolved from [`PayoutArgs`].
#[derive(Debug, Clone)]
pub struct PayoutSettings {
    /// Workers in this process.
    pub workers: usize,
    /// The gateway.
    pub gateway: crate::gateway::GatewayConfig,
    /// Card-number encryption keys (hex); empty for the generated development key.
    pub card_keys: Vec<String>,
    /// Gateway attempts per payout.
    pub max_attempts: i32,
    /// The first retry delay.
    pub retry_base: std::time::Duration,
    /// A job's lease.
    pub lease: std::time::Duration,
    /// How long an idle worker waits before looking for due jobs again.
    pub poll: std::time::Duration,
    /// Outbound events' delivery workers, receivers and retries.
    pub events: crate::events::settings::EventSettings,
}

impl Default for PayoutSettings {
    fn default() -> PayoutSettings {
        PayoutSettings {
            workers: 2,
            gateway: crate::gateway::GatewayConfig::default(),
            card_keys: Vec::new(),
            max_attempts: 8,
            retry_base: std::time::Duration::from_secs(1),
            lease: std::time::Duration::from_secs(60),
            poll: std::time::Duration::from_millis(200),
            events: crate::events::settings::EventSettings::default(),
        }
    }
}

impl PayoutArgs {
    /// The settings these arguments describe, or why they are inconsistent.
    pub fn settings(&self) -> anyhow::Result<PayoutSettings> {
        let gateway = match self.gateway {
            GatewayKind::Simulated => crate::gateway::GatewayConfig::Simulated {
                latency: std::time::Duration::from_millis(self.gateway_latency_ms),
            },
            GatewayKind::Http => {
                let url = self
                    .gateway_url
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("PAYLEDGER_GATEWAY=http needs PAYLEDGER_GATEWAY_URL"))?;
                let secret = self
                    .gateway_secret
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("PAYLEDGER_GATEWAY=http needs PAYLEDGER_GATEWAY_SECRET"))?;
                let timeout = std::time::Duration::from_secs(self.gateway_timeout_seconds.max(1));
                crate::gateway::GatewayConfig::Http {
                    url,
                    secret,
                    timeout,
                    connect_timeout: crate::gateway::DEFAULT_CONNECT_TIMEOUT.min(timeout),
                }
            }
        };
        if self.max_attempts < 1 {
            anyhow::bail!("PAYLEDGER_PAYOUT_MAX_ATTEMPTS must be at least 1");
        }
        // A lease that can expire while its worker still waits for the gateway lets a second worker call the
        // gateway for the same payout at the same time; the idempotency key keeps that safe, but it is waste.
        if let crate::gateway::GatewayConfig::Http { timeout, .. } = &gateway
            && std::time::Duration::from_secs(self.lease_seconds) <= *timeout
        {
            anyhow::bail!(
                "PAYLEDGER_JOB_LEASE_SECONDS ({}) must be longer than the HTTP gateway's timeout ({} s)",
                self.lease_seconds,
                timeout.as_secs()
            );
        }
        Ok(PayoutSettings {
            workers: self.workers,
            gateway,
            card_keys: self.card_keys.iter().filter(|key| !key.trim().is_empty()).cloned().collect(),
            max_attempts: self.max_attempts,
            retry_base: std::time::Duration::from_millis(self.retry_base_ms.max(1)),
            lease: std::time::Duration::from_secs(self.lease_seconds.max(1)),
            poll: PayoutSettings::default().poll,
            events: self.events.settings()?,
        })
    }
}

impl Settings {
    /// Settings for a database URL with every other value at its default.
    pub fn for_database(database_url: impl Into<String>) -> Settings {
        Settings {
            profile: Profile::Development,
            database_url: database_url.into(),
            database_configured: true,
            webhook_mode: WebhookMode::Sync,
            webhook_conflict: ConflictPolicy::Record,
            demo_organizations: 0,
            data_dir: PathBuf::from("./data"),
            webhook_guard: WebhookGuard { tolerance_seconds: 300, ..WebhookGuard::default() },
            admin: None,
            tokens: TokenSettings::default(),
            payouts: PayoutSettings::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            shutdown_drain: std::time::Duration::ZERO,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            trusted_proxies: crate::origin::TrustedProxies::default(),
            statement_max_bytes: DEFAULT_STATEMENT_MAX_BYTES,
            reconcile: crate::statement::ReconcileSettings {
                max_file_bytes: DEFAULT_STATEMENT_MAX_BYTES,
                ..crate::statement::ReconcileSettings::default()
            },
        }
    }
}

impl Settings {
    /// Each setting that keeps these settings from the production profile, named with its variable and why.
    /// Empty when production may start (the database adds its own check: no generated admin password).
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.webhook_guard.secrets.is_empty() {
            problems.push("PAYLEDGER_WEBHOOK_SECRET is not set: unsigned bank webhooks would be accepted".to_owned());
        } else if self.webhook_guard.secrets.iter().any(|secret| secret.len() < MIN_WEBHOOK_SECRET_LEN) {
            problems.push(format!(
                "PAYLEDGER_WEBHOOK_SECRET: every secret must be at least {MIN_WEBHOOK_SECRET_LEN} bytes"
            ));
        }
        match &self.tokens.secret {
            None => problems.push(
                "PAYLEDGER_JWT_SECRET is not set: access tokens would be signed with a random key per process"
                    .to_owned(),
            ),
            Some(secret) if secret.len() < crate::auth::tokens::MIN_SECRET_LEN => problems.push(format!(
                "PAYLEDGER_JWT_SECRET is {} bytes: it must be at least {} bytes",
                secret.len(),
                crate::auth::tokens::MIN_SECRET_LEN
            )),
            Some(_) => {}
        }
        if let Some((username, password)) = &self.admin {
            let lowered = password.to_lowercase();
            if DEFAULT_PASSWORDS.contains(&lowered.as_str()) || lowered == username.to_lowercase() {
                problems.push("PAYLEDGER_ADMIN_PASSWORD is a well-known default password".to_owned());
            } else if password.chars().count() < crate::auth::principals::MIN_PASSWORD_CHARS {
                problems.push(format!(
                    "PAYLEDGER_ADMIN_PASSWORD is shorter than {} characters",
                    crate::auth::principals::MIN_PASSWORD_CHARS
                ));
            }
        }
        if !self.database_configured {
            problems.push("DATABASE_URL is not set: the implicit embedded database would be used".to_owned());
        }
        if self.payouts.card_keys.is_empty() {
            problems.push(
                "PAYLEDGER_CARD_KEYS is not set: card numbers would be encrypted with a generated development key"
                    .to_owned(),
            );
        }
        match &self.payouts.gateway {
            crate::gateway::GatewayConfig::Simulated { .. } => problems
                .push("PAYLEDGER_GATEWAY is `simulated`: payouts would complete without paying anyone".to_owned()),
            crate::gateway::GatewayConfig::Http { secret, .. } if secret.len() < MIN_GATEWAY_SECRET_LEN => problems
                .push(format!(
                    "PAYLEDGER_GATEWAY_SECRET is {} bytes: it must be at least {MIN_GATEWAY_SECRET_LEN} bytes (it \
                     signs the gateway's callbacks, which can move money)",
                    secret.len()
                )),
            crate::gateway::GatewayConfig::Http { .. } => {}
        }
        problems
    }

    /// What the development profile relaxes with these settings, for the start-up banner.
    pub fn development_relaxations(&self) -> Vec<String> {
        let mut relaxed = vec!["anonymous reads of balances, their history and the API docs".to_owned()];
        if self.webhook_guard.secrets.is_empty() {
            relaxed.push("unsigned bank webhooks are accepted (no PAYLEDGER_WEBHOOK_SECRET)".to_owned());
        }
        if self.tokens.secret.is_none() {
            relaxed.push(
                "access tokens are signed with a random key of this process (no PAYLEDGER_JWT_SECRET)".to_owned(),
            );
        }
        if self.admin.is_none() {
            relaxed.push(
                "the first admin gets a generated password, printed once (no PAYLEDGER_ADMIN_PASSWORD)".to_owned(),
            );
        }
        if !self.database_configured {
            relaxed.push(format!("the embedded database {} (no DATABASE_URL)", self.database_url));
        }
        if self.payouts.card_keys.is_empty() {
            relaxed.push("card numbers are encrypted with a development key file (no PAYLEDGER_CARD_KEYS)".to_owned());
        }
        if matches!(self.payouts.gateway, crate::gateway::GatewayConfig::Simulated { .. }) {
            relaxed.push("payouts go to the simulated gateway".to_owned());
        }
        relaxed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
