//! payledger: a self-hosted payments ledger service.
//!
//! [`launch`] runs the whole server (HTTP API, ledger writer, background applier) on a listener until a
//! shutdown future resolves; `main` and the integration tests both use it.

pub mod access_log;
pub mod api;
pub mod auth;
pub mod balances;
pub mod bulk;
pub mod cli;
pub mod client_tls;
pub mod config;
pub mod console;
pub mod engine;
pub mod error;
pub mod events;
pub mod fields;
/// The parsers the fuzz targets in `fuzz/` drive; not an API (see the module's own documentation).
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod hex;
pub mod idempotency;
pub mod networks;
pub mod origin;
pub mod payouts;
pub mod redact;
pub mod router;
pub mod seed;
pub mod statement;
pub mod store;
pub mod telemetry;
pub mod timefmt;
pub mod vault;
pub mod views;
pub mod webhook;
pub mod workers;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use axum::ServiceExt;
use tokio::net::TcpListener;
use tower::Layer;

use crate::config::{ConflictPolicy, Settings};
use crate::engine::LedgerEngine;
use crate::redact::redact_url;
use crate::store::Store;
use crate::webhook::intake::Intake;

/// What every handler can reach, shared behind one `Arc` so a request clones a pointer, not the pools.
pub type AppState = Arc<App>;

/// The application's shared parts.
pub struct App {
    /// The database, for reads.
    pub store: Store,
    /// The webhook intake service.
    pub intake: Intake,
    /// The user-balance service.
    pub balances: balances::Balances,
    /// The payout service.
    pub payouts: payouts::Payouts,
    /// The bank statement reconciliation service.
    pub reconciliation: statement::Reconciliation,
    /// The webhook endpoint service (outbound events' receivers).
    pub endpoints: events::endpoints::Endpoints,
    /// The secret the payment gateway signs its callbacks with (the HTTP gateway's), if configured.
    pub gateway_secret: Option<String>,
    /// How conflicting notices are answered.
    pub webhook_conflict: ConflictPolicy,
    /// Who may post bank notices: signature secrets and source networks.
    pub webhook_guard: config::WebhookGuard,
    /// Development or production: whether anonymous balance reads are allowed.
    pub profile: config::Profile,
    /// Basic credentials verified recently, so a password is not re-hashed on every request.
    pub credentials: api::access::CredentialMemory,
    /// The key access tokens are signed with.
    pub token_keys: auth::tokens::TokenKeys,
    /// Token lifetimes.
    pub token_settings: config::TokenSettings,
    /// Requests per client address to the token endpoints.
    pub login_limiter: auth::ratelimit::RateLimiter,
    /// Failed password checks per username from all addresses (token endpoint, Basic, console login).
    pub username_limiter: auth::ratelimit::UsernameLimiter,
    /// The OpenAPI document.
    pub openapi: Arc<utoipa::openapi::OpenApi>,
    /// The Redoc page, rendered once.
    pub redoc_html: Arc<String>,
    /// The Prometheus handle.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The longest a request may take before it is answered 503 (`PAYLEDGER_REQUEST_TIMEOUT_SECONDS`).
    pub request_timeout: std::time::Duration,
    /// The largest bank statement upload, in bytes (`PAYLEDGER_STATEMENT_MAX_BYTES`).
    pub statement_max_bytes: u64,
    /// Set when shutdown begins: readiness answers 503 from then on, so a balancer stops sending requests.
    pub draining: Arc<AtomicBool>,
    /// The reverse proxies whose forwarded headers are believed (`PAYLEDGER_TRUSTED_PROXIES`).
    pub trusted_proxies: origin::TrustedProxies,
}

/// Connects to the database, migrates it, and seeds demo organizations if it is empty.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database_url)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&settings.database_url)))?;
    store.migrate().await.context("migrating the database")?;
    let folded = store.fold_missing_names().await.context("filling in organizations' search names")?;
    if folded > 0 {
        tracing::info!(organizations = folded, "filled in search names");
    }
    if settings.demo_organizations > 0 && store.organization_count().await? == 0 {
        let orgs = seed::seed(&store, settings.demo_organizations).await?;
        for (inn, name) in &orgs {
            tracing::info!(inn = %inn, name = %name, "seeded demo organization");
        }
    }
    Ok(store)
}

/// Creates the first admin when there are no users: the configured one, or one with a generated password that
/// is printed once (development).
async fn bootstrap_admin(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    let configured = settings.admin.as_ref().map(|(name, password)| (name.as_str(), password.as_str()));
    let generate = settings.profile == config::Profile::Development;
    match auth::principals::bootstrap(store, configured, generate).await.context("creating the first admin")? {
        auth::principals::Bootstrap::Existing => {}
        auth::principals::Bootstrap::Configured(username) => tracing::info!(%username, "created the first admin"),
        auth::principals::Bootstrap::Generated { username, password } => {
            // Shown once, on the console only: it is not logged, and `payledger user passwd` replaces it.
            eprintln!(
                "\n  No users yet and no PAYLEDGER_ADMIN_USERNAME/PAYLEDGER_ADMIN_PASSWORD: created the admin\n  \
                 user `{username}` with the generated password\n\n      {password}\n\n  It is shown only now. \
                 Change it with `payledger user passwd {username}`.\n"
            );
            tracing::warn!(%username, "created the first admin with a generated password (printed once on stderr)");
        }
    }
    Ok(())
}

/// Tells whoever starts a development server what it relaxes, so nobody runs one in production unawares.
fn print_development_banner(settings: &Settings) {
    let relaxed = settings.development_relaxations();
    eprintln!(
        "\n  payledger is running in the DEVELOPMENT profile, which relaxes:\n{}\n  Use --profile production \
         (PAYLEDGER_PROFILE=production) for a deployment.\n",
        relaxed.iter().map(|line| format!("    - {line}")).collect::<Vec<_>>().join("\n")
    );
    tracing::warn!(relaxed = relaxed.len(), "development profile");
}

/// The access-token key: the configured secret, or (development) a random one for this process.
fn token_keys(settings: &Settings) -> anyhow::Result<auth::tokens::TokenKeys> {
    let secret = match &settings.tokens.secret {
        Some(secret) => secret.as_bytes().to_vec(),
        None => {
            let random = auth::tokens::random_secret().context("generating a token key")?;
            tracing::warn!("no PAYLEDGER_JWT_SECRET: access tokens are signed with a random key of this process");
            random.into_bytes()
        }
    };
    auth::tokens::TokenKeys::new(&secret).context("PAYLEDGER_JWT_SECRET")
}

/// The payout service and the gateway, from the settings: the card vault's keys (or the development key in
/// the data directory) and the configured gateway.
fn payout_parts(
    settings: &Settings,
    engine: &LedgerEngine,
) -> anyhow::Result<(payouts::Payouts, Arc<dyn gateway::PayoutGateway>)> {
    let vault = if settings.payouts.card_keys.is_empty() {
        vault::Vault::development(&settings.data_dir).context("opening the development card vault")?
    } else {
        vault::Vault::from_config(&settings.payouts.card_keys).context("reading PAYLEDGER_CARD_KEYS")?
    };
    let gateway = gateway::build(&settings.payouts.gateway).context("configuring the payout gateway")?;
    Ok((payouts::Payouts::new(engine.clone(), Arc::new(vault), settings.payouts.max_attempts), gateway))
}

/// Starts `payout_workers` payout workers and the configured event delivery workers, all told to stop by
/// `stop`, in one set.
fn spawn_workers(
    settings: &Settings,
    context: workers::WorkerContext,
    payout_workers: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinSet<()>> {
    let events = &settings.payouts.events;
    // Built only where deliveries are sent: the sender needs the system's root certificates.
    let deliveries = match events.workers {
        0 => None,
        _ => Some(workers::deliveries::DeliveryContext::new(
            context.store.clone(),
            context.payouts.engine(),
            context.payouts.shared_vault(),
            events.clone(),
        )?),
    };
    // One set, so a shutdown waits for both kinds alike.
    let mut running = workers::spawn(context, payout_workers, stop.clone());
    if let Some(deliveries) = deliveries {
        workers::deliveries::spawn(&mut running, deliveries, events.workers, stop);
    }
    Ok(running)
}

/// Runs payout workers only (`payledger worker`) until `shutdown` resolves: they finish the jobs in hand and
/// the ledger writer drains its queue before this returns, within the shutdown's grace period.
pub async fn run_workers(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&settings.database_url)))?;
    store.migrate().await.context("migrating the database")?;
    // A worker on another host would generate its own development key and could decrypt nothing; in the
    // development profile it may share the API's, from a data folder they share (compose's volume).
    let shared_key =
        settings.profile == config::Profile::Development && vault::Vault::has_development_key(&settings.data_dir);
    if matches!(store, Store::Postgres(_)) && settings.payouts.card_keys.is_empty() && !shared_key {
        anyhow::bail!(
            "payledger worker on PostgreSQL needs PAYLEDGER_CARD_KEYS, the same keys as the API's (or, in the \
             development profile, the API's generated key in the PAYLEDGER_DATA_DIR they share: start the API first)"
        );
    }
    let (engine, writer) = LedgerEngine::start(&store).await.context("starting the ledger engine")?;
    let (payout_service, gateway) = payout_parts(&settings, &engine)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let context =
        workers::WorkerContext { store, payouts: payout_service, gateway, settings: settings.payouts.clone() };
    let count = settings.payouts.workers.max(1);
    let mut running = spawn_workers(&settings, context, count, stopped)?;
    tracing::info!(workers = count, database = %redact_url(&settings.database_url), "payout workers running");
    shutdown.await;
    let _ = stop.send(true);
    drop(engine);
    let rest = async {
        while running.join_next().await.is_some() {}
        writer.stopped().await;
    };
    stop_by(deadline_after(settings.shutdown_grace), rest).await;
    tracing::info!("payout workers stopped");
    Ok(())
}

/// Resolves when the listener should close: after `shutdown`, readiness fails (`draining`) for `drain` while
/// the server still serves, so that a load balancer stops sending requests first; then the requests in hand
/// are finished.
async fn drain_then_stop(
    shutdown: impl Future<Output = ()>,
    draining: Arc<AtomicBool>,
    drain: std::time::Duration,
    closed: tokio::sync::oneshot::Sender<()>,
) {
    shutdown.await;
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    if !drain.is_zero() {
        tracing::info!(seconds = drain.as_secs(), "draining: readiness answers 503 until the listener closes");
        tokio::time::sleep(drain).await;
    }
    let _ = closed.send(());
}

/// The store, migrated, once the profile's start-up checks pass (production refuses weak or missing secrets),
/// with the first admin created and, in development, the banner shown.
async fn open_checked_store(settings: &Settings) -> anyhow::Result<Store> {
    let mut problems = match settings.profile {
        config::Profile::Production => settings.production_problems(),
        config::Profile::Development => Vec::new(),
    };
    let store = open_store(settings).await?;
    if settings.profile == config::Profile::Production {
        problems.extend(auth::principals::production_problems(&store, settings.admin.is_some()).await?);
        if !problems.is_empty() {
            anyhow::bail!(
                "refusing to start in the production profile:\n  - {}\n(see README, \"Authentication, roles and profiles\")",
                problems.join("\n  - ")
            );
        }
    }
    bootstrap_admin(&store, settings).await?;
    if settings.profile == config::Profile::Development {
        print_development_banner(settings);
    }
    Ok(store)
}

/// Runs the server on `listener` until `shutdown` resolves, then drains in-flight requests, stops the
/// background applier, lets the ledger writer finish its queue, and returns.
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_checked_store(&settings).await?;
    store.set_user_cache(settings.tokens.user_cache);
    let (engine, writer) = LedgerEngine::start(&store).await.context("starting the ledger engine")?;
    let balances = balances::Balances::new(engine.clone());
    let (payout_service, gateway) = payout_parts(&settings, &engine)?;
    let reconciliation = statement::Reconciliation::new(engine.clone(), store.clone(), settings.reconcile.clone());
    let mut event_settings = settings.payouts.events.clone();
    // The production profile requires https endpoints whoever built the settings (`main` sets it too).
    event_settings.require_https |= settings.profile == config::Profile::Production;
    let endpoints = events::endpoints::Endpoints::new(store.clone(), payout_service.shared_vault(), event_settings);
    let intake = Intake::new(engine, settings.webhook_mode, settings.reconcile.date_tolerance_days);
    let (stop_applier, applier_stopped) = tokio::sync::watch::channel(false);
    // The applier runs in both modes: notices recorded in async mode (by this process before a restart,
    // or by another instance) are credited even when this process answers synchronously.
    let applier = tokio::spawn(intake.clone().run_applier(store.clone(), applier_stopped.clone()));
    let worker_context = workers::WorkerContext {
        store: store.clone(),
        payouts: payout_service.clone(),
        gateway,
        settings: settings.payouts.clone(),
    };
    let principals_stopped = applier_stopped.clone();
    let mut background = spawn_workers(&settings, worker_context, settings.payouts.workers, applier_stopped)?;
    // Other instances' changes of users reach this one's cache of them (PostgreSQL; nothing to do on SQLite).
    let watched = store.clone();
    background.spawn(async move { watched.watch_principals(principals_stopped).await });

    let (_, openapi) = router::api();
    // Only the flag goes to the shutdown future: a clone of the state there would keep the engine's handles,
    // and the writer, alive after the server stops.
    let draining = Arc::new(AtomicBool::new(false));
    let state = Arc::new(App {
        store: store.clone(),
        intake,
        balances,
        payouts: payout_service,
        reconciliation,
        endpoints,
        gateway_secret: match &settings.payouts.gateway {
            gateway::GatewayConfig::Http { secret, .. } => Some(secret.clone()),
            gateway::GatewayConfig::Simulated { .. } => None,
        },
        webhook_conflict: settings.webhook_conflict,
        webhook_guard: settings.webhook_guard.clone(),
        profile: settings.profile,
        credentials: api::access::CredentialMemory::new().context("generating the credential memory's key")?,
        token_keys: token_keys(&settings)?,
        token_settings: settings.tokens.clone(),
        login_limiter: auth::ratelimit::RateLimiter::new(
            settings.tokens.login_attempts_per_minute,
            std::time::Duration::from_secs(60),
        ),
        username_limiter: auth::ratelimit::UsernameLimiter::new(
            settings.tokens.login_failures_per_username_per_minute,
            std::time::Duration::from_secs(60),
        )
        .context("generating the username limiter's key")?,
        redoc_html: Arc::new(api::docs::redoc_html(&openapi)),
        openapi: Arc::new(openapi),
        metrics: telemetry::metrics_handle(),
        request_timeout: settings.request_timeout,
        statement_max_bytes: settings.statement_max_bytes,
        draining: draining.clone(),
        trusted_proxies: settings.trusted_proxies.clone(),
    });
    let app = axum::middleware::map_request(|request| async move { router::add_trailing_slash(request) })
        .layer(router::app(state));
    tracing::info!(
        address = %listener.local_addr()?,
        database = %redact_url(&settings.database_url),
        webhook_mode = ?settings.webhook_mode,
        "payledger is serving"
    );
    let (closed, listener_closed) = tokio::sync::oneshot::channel();
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(drain_then_stop(shutdown, draining, settings.shutdown_drain, closed))
        .into_future();
    let deadline = serve_within_grace(server, listener_closed, &stop_applier, settings.shutdown_grace).await?;

    // In-flight requests are answered (or given up on); the applier and the workers were told to stop when the
    // listener closed. Let them and the writer finish, all before the grace period ends.
    let rest = async {
        let _ = applier.await;
        while background.join_next().await.is_some() {}
        writer.stopped().await;
    };
    stop_by(deadline, rest).await;
    tracing::info!("payledger stopped");
    Ok(())
}

/// Waits for the workers and the ledger writer to stop (`rest`) until `deadline`, then gives up on them: a
/// worker's job in hand is retried by whoever takes it once its lease ends, and a batch the writer had not
/// committed was never acknowledged.
async fn stop_by(deadline: tokio::time::Instant, rest: impl Future<Output = ()>) {
    if tokio::time::timeout_at(deadline, rest).await.is_err() {
        tracing::warn!("the shutdown's grace period ended before the workers and the ledger writer stopped");
    }
}

/// Runs `server` until it has answered the requests in hand after the listener closed, or until `grace` after
/// the close. When the listener closes, `stop_workers` tells the applier and the payout workers to finish the
/// job in hand, so they have the whole grace period too. Returns when the rest of the shutdown must end.
async fn serve_within_grace(
    server: impl Future<Output = std::io::Result<()>>,
    listener_closed: tokio::sync::oneshot::Receiver<()>,
    stop_workers: &tokio::sync::watch::Sender<bool>,
    grace: std::time::Duration,
) -> anyhow::Result<tokio::time::Instant> {
    tokio::pin!(server);
    let deadline = tokio::select! {
        result = &mut server => {
            result.context("serving HTTP")?;
            deadline_after(grace)
        }
        Ok(()) = listener_closed => {
            let _ = stop_workers.send(true);
            let deadline = deadline_after(grace);
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(result) => result.context("serving HTTP")?,
                // Each connection is a task of its own: those still running end with the process.
                Err(_) => tracing::warn!(
                    seconds = grace.as_secs(),
                    "the shutdown's grace period ended with requests in hand; they are no longer waited for"
                ),
            }
            deadline
        }
    };
    let _ = stop_workers.send(true);
    Ok(deadline)
}

/// `grace` from now, or a year for a grace too long to add.
fn deadline_after(grace: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(grace).unwrap_or_else(|| now + std::time::Duration::from_secs(365 * 24 * 3600))
}
