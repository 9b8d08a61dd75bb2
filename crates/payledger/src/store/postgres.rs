//! The PostgreSQL store, for production and for several server instances sharing one database.
//!
//! Ledger batches write through [`PgBatch`] (`postgres_writer.rs`), a transaction on this pool.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use payledger_core::{AccountId, Inn};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use time::OffsetDateTime;

use super::postgres_writer::PgBatch;
use super::principal_cache::{CHANNEL, PrincipalCache};
use super::{StoreError, organization_account};

/// From how many commands a batch plans its statements afresh (`PgBatch::begin`).
const CUSTOM_PLAN_COMMANDS: usize = 128;

/// Connections per instance: the writer's transaction, the async applier and API reads.
pub const MAX_CONNECTIONS: u32 = 12;
/// How long a request waits for a free connection before the pool reports an error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a read-only store (`verify` runs its checks one after another in one snapshot).
const READ_ONLY_CONNECTIONS: u32 = 2;

/// How long a listening connection may hear nothing before it is replaced by a new one.
const LISTEN_IDLE: Duration = Duration::from_secs(60);

/// How one listening connection's life ended.
enum ListenEnd {
    /// Nothing was heard for [`LISTEN_IDLE`].
    Idle,
    /// It could not connect or listen, or it failed while listening (`listened`).
    Failed { error: sqlx::Error, listened: bool },
}

/// The PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub(super) pool: PgPool,
    pub(super) principal_cache: Arc<PrincipalCache>,
}

impl PgStore {
    /// Connects a pool.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("payledger");
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore { pool, principal_cache: Arc::default() })
    }

    /// Connects a small pool whose sessions default to read-only transactions and log no slow statements.
    pub async fn connect_read_only(url: &str) -> Result<PgStore, StoreError> {
        use sqlx::ConnectOptions;
        let options = PgConnectOptions::from_str(url)?
            .application_name("payledger verify")
            .options([("default_transaction_read_only", "on")])
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(READ_ONLY_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore { pool, principal_cache: Arc::default() })
    }

    /// Listens for changes of users (`NOTIFY payledger_principals`, sent by the `users` trigger at commit) and
    /// forgets each changed user's cached row, until `stop` turns true. On its own connection, outside the
    /// pool, so that it never takes one from the requests. Whenever the connection is lost, notifications may
    /// have been missed meanwhile: the whole cache is forgotten, and listening starts again a second later
    /// (warned of once per outage). A connection that heard nothing for [`LISTEN_IDLE`] is replaced, so that
    /// one a NAT or a balancer dropped without a word cannot leave the instance deaf. A cached row is served
    /// only for the cache's freshness in any case.
    pub async fn watch_principals(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let options = (*self.pool.connect_options()).clone();
        // Two: a replaced connection goes back to its pool only once its `UNLISTEN` is answered, which a
        // connection dropped by the network may not be for minutes; its successor must not wait for it.
        let own = PgPoolOptions::new().max_connections(2).acquire_timeout(ACQUIRE_TIMEOUT).connect_lazy_with(options);
        let mut warned = false;
        loop {
            let end = tokio::select! {
                end = self.listen_for_changes(&own) => end,
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            self.principal_cache.clear();
            match end {
                ListenEnd::Idle => {
                    warned = false;
                    continue;
                }
                ListenEnd::Failed { error, listened } => {
                    warned &= !listened;
                    if !warned {
                        warned = true;
                        tracing::warn!(%error, "listening for changes of users failed; retrying every second");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        // A connection cut without a word could keep the close waiting; the shutdown does not wait for it.
        let _ = tokio::time::timeout(Duration::from_secs(2), own.close()).await;
    }

    /// One listening connection's life, until it fails or stays idle for [`LISTEN_IDLE`].
    async fn listen_for_changes(&self, own: &PgPool) -> ListenEnd {
        let failed = |error, listened| ListenEnd::Failed { error, listened };
        let mut listener = match sqlx::postgres::PgListener::connect_with(own).await {
            Ok(listener) => listener,
            Err(error) => return failed(error, false),
        };
        // A lost connection ends this life (and the caller waits a second), rather than sqlx reconnecting at
        // once inside the receive, as often as the network fails.
        listener.eager_reconnect(false);
        if let Err(error) = listener.listen(CHANNEL).await {
            return failed(error, false);
        }
        // Anything cached before listening began may have changed unheard.
        self.principal_cache.clear();
        loop {
            match tokio::time::timeout(LISTEN_IDLE, listener.try_recv()).await {
                Ok(Ok(Some(notice))) => {
                    if let Some((id, version)) = PrincipalCache::parse_notice(notice.payload()) {
                        self.principal_cache.changed(id, version);
                    }
                }
                Ok(Ok(None)) => {
                    let lost = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the connection was lost");
                    return failed(sqlx::Error::Io(lost), true);
                }
                Ok(Err(error)) => return failed(error, true),
                Err(_) => return ListenEnd::Idle,
            }
        }
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        // A newer build's migrations only expand the schema (migrations/README.md): this build still runs on it,
        // so that a rolling upgrade or a rollback can restart it.
        migrator.set_ignore_missing(true).run(&self.pool).await?;
        Ok(())
    }

    /// The migrations of this build not yet applied to the database, as `version_description`.
    pub(super) async fn migration_state(&self) -> Result<super::MigrationState, StoreError> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&self.pool).await?;
        let applied: Vec<(i64, String)> = if exists {
            sqlx::query_as("SELECT version, description FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(super::migration_state(&sqlx::migrate!("./migrations/postgres"), &applied))
    }

    /// Starts a batch transaction (READ COMMITTED: row locks and unique indexes do the serializing) of
    /// `commands` commands.
    pub async fn begin_batch(&self, commands: usize) -> Result<PgBatch, StoreError> {
        PgBatch::begin(&self.pool, commands >= CUSTOM_PLAN_COMMANDS).await
    }

    pub(super) async fn clock(&self) -> Result<OffsetDateTime, StoreError> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&self.pool).await?)
    }

    pub(super) async fn ensure_organizations(
        &self,
        orgs: &[(Inn, String)],
    ) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_organizations(&mut conn, orgs).await
    }
}

super::console::balances::console_balance_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::dashboard::console_dashboard_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::jobs::console_job_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::organizations::console_organization_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::payments::console_payment_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::sessions::console_session_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

super::console::users::console_user_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity
);

// The queries both backends share (see `queries/`), with what differs here.
super::queries::accounts::account_queries!(PgStore, reader: pool, writer: pool);
super::queries::notices::notice_queries!(PgStore, reader: pool);
super::queries::statements::statement_queries!(PgStore, reader: pool, bind_date: std::convert::identity, bind_time: std::convert::identity);
super::queries::balances::balance_queries!(PgStore, reader: pool, bind_time: std::convert::identity);
super::queries::payouts::payout_queries!(PgStore, reader: pool, bind_time: std::convert::identity);
super::queries::jobs::job_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    bind_time: std::convert::identity,
    claim_jobs_sql: super::queries::jobs::claim_jobs_sql!("FOR UPDATE SKIP LOCKED")
);
super::queries::principals::principal_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    begin_write: "BEGIN",
    for_update: " FOR UPDATE",
    bind_time: std::convert::identity
);
super::queries::events::event_queries!(
    PgStore,
    reader: pool,
    writer: pool,
    begin_write: "BEGIN",
    skip_locked: "FOR UPDATE OF d SKIP LOCKED",
    next_seq: "nextval('events_seq')",
    bind_time: std::convert::identity
);
super::queries::csv_mappings::csv_mapping_queries!(PgStore, writer: pool, bind_time: std::convert::identity);
super::queries::tokens::token_queries!(PgStore, writer: pool, begin_write: "BEGIN", bind_time: std::convert::identity);
super::queries::audit::audit_queries!(PgStore, reader: pool, writer: pool, bind_time: std::convert::identity);
super::queries::verify::verify_queries!(
    PgStore,
    reader: pool,
    begin_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    uuid_text: "uuid_hex(",
    moscow_date: "((({}) AT TIME ZONE 'UTC') + INTERVAL '3 hours')::date",
    explain: "EXPLAIN"
);

/// Creates the organizations and accounts that do not exist yet and returns every account id.
///
/// Keys are inserted in ascending INN order, so two writers creating overlapping sets never wait on each
/// other in a cycle.
pub(super) async fn insert_organizations(
    conn: &mut sqlx::PgConnection,
    orgs: &[(Inn, String)],
) -> Result<Vec<(Inn, AccountId)>, StoreError> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&(Inn, String)> = orgs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let inns: Vec<&str> = sorted.iter().map(|(inn, _)| inn.as_str()).collect();
    let names: Vec<&str> = sorted.iter().map(|(_, name)| name.as_str()).collect();
    let folded: Vec<String> = sorted.iter().map(|(_, name)| super::fold_name(name)).collect();
    sqlx::query(
        "INSERT INTO organizations (inn, name, name_folded)
         SELECT inn, name, folded FROM UNNEST($1::text[], $2::text[], $3::text[])
              WITH ORDINALITY AS o(inn, name, folded, n) ORDER BY n
         ON CONFLICT (inn) DO NOTHING",
    )
    .bind(&inns)
    .bind(&names)
    .bind(&folded)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO accounts (kind, external_key, currency)
         SELECT 'organization', inn, 'RUB' FROM UNNEST($1::text[]) WITH ORDINALITY AS o(inn, n) ORDER BY n
         ON CONFLICT (kind, external_key, currency) DO NOTHING",
    )
    .bind(&inns)
    .execute(&mut *conn)
    .await?;
    let found = sqlx::query(
        "SELECT external_key, id FROM accounts WHERE kind = 'organization' AND currency = 'RUB'
         AND external_key = ANY($1)",
    )
    .bind(&inns)
    .fetch_all(&mut *conn)
    .await?;
    found.into_iter().map(|row| organization_account(row.try_get(0)?, row.try_get(1)?)).collect()
}
