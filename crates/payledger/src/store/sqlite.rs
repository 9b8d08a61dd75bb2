//! The embedded SQLite store: migrations, and reads through a pool of readers (the WAL checkpointer it starts
//! is in `sqlite_wal.rs`).
//!
//! The database runs in WAL mode with `synchronous=FULL`. The ledger engine writes through its own
//! connection ([`super::SqliteWriter`]); readers never wait for it.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use payledger_core::{AccountId, Inn};
use serde_json::json;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::principal_cache::PrincipalCache;
use super::sqlite_reads::HotReads;
use super::sqlite_wal::{AUTOCHECKPOINT_PAGES, WalRestart, checkpoint_in_background};
use super::{StoreError, organization_account};

/// How many read connections serve API reads while the writer works.
const READER_CONNECTIONS: u32 = 4;
/// The database page size. 4 KiB (SQLite's default) measured faster than 1 KiB pages: smaller pages write
/// less WAL per random index update but cost more CPU per batch (see BENCHMARKS.md).
const PAGE_SIZE: u32 = 4096;
/// How long a connection waits for SQLite's file lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The writer's page cache, in KiB (SQLite's negative `cache_size`): the hot parts of the indexes stay in
/// memory, so a batch's inserts rarely read from disk.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// The SQLite database: the writer connection and the reader pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    path: std::path::PathBuf,
    writer: SqlitePool,
    reader: SqlitePool,
    /// The hot reads' rusqlite connections (`sqlite_reads.rs`).
    pub(super) hot: Arc<HotReads>,
    pub(super) principal_cache: Arc<PrincipalCache>,
    /// Between the background checkpointer and the writer (`sqlite_wal.rs`).
    wal_restart: Arc<WalRestart>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its folder.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| StoreError::Database(sqlx::Error::Io(error)))?;
        }
        SqliteStore::open_with(path, true).await
    }

    async fn open_with(path: &Path, create: bool) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL makes every commit durable before the writer answers its callers.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .page_size(PAGE_SIZE)
            // The WAL sits at tens of thousands of pages under load (`sqlite_wal.rs`): with SQLite's default
            // of 1,000, every commit of this pool (jobs, tokens, sessions) would checkpoint inside its request.
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES.to_string());
        // Migrations, seeding and system accounts write through this small pool; the ledger engine has its
        // own connection (see `open_writer`).
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let reader = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(READER_CONNECTIONS)
            .connect_with(options)
            .await?;
        let store = SqliteStore::assemble(path, writer, reader);
        tokio::spawn(checkpoint_in_background(store.reader.clone(), Arc::clone(&store.wal_restart)));
        Ok(store)
    }

    /// Opens an existing database file read-only (`mode=ro`): a missing file is an error, nothing is created
    /// and no checkpointer runs. Both pools are the same read-only pool, so nothing can write through it.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        use sqlx::ConnectOptions;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(BUSY_TIMEOUT)
            .disable_statement_logging();
        let reader =
            SqlitePoolOptions::new().test_before_acquire(false).max_connections(2).connect_with(options).await?;
        Ok(SqliteStore::assemble(path, reader.clone(), reader))
    }

    fn assemble(path: &Path, writer: SqlitePool, reader: SqlitePool) -> SqliteStore {
        SqliteStore {
            path: path.to_path_buf(),
            writer,
            reader,
            hot: Arc::new(HotReads::new(path, BUSY_TIMEOUT)),
            principal_cache: Arc::default(),
            wal_restart: Arc::default(),
        }
    }

    /// Opens an existing database file as [`SqliteStore::open`] does, but never creates it (nor its folder).
    pub async fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NoDatabase(path.display().to_string()));
        }
        SqliteStore::open_with(path, false).await
    }

    /// Closes both pools (the checkpointer stops with them) and waits until every connection is closed.
    pub(super) async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        self.hot.close();
    }

    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        // A newer build's migrations only expand the schema (migrations/README.md): this build still runs on it,
        // so that a rolling upgrade or a rollback can restart it.
        migrator.set_ignore_missing(true).run(&self.writer).await?;
        Ok(())
    }

    /// The migrations of this build not yet applied to the database, as `version_description`.
    pub(super) async fn migration_state(&self) -> Result<super::MigrationState, StoreError> {
        let applied: Vec<(i64, String)> =
            match sqlx::query_as("SELECT version, description FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.reader)
                .await
            {
                Ok(applied) => applied,
                // No migration table: nothing was ever applied.
                Err(sqlx::Error::Database(error)) if error.message().contains("no such table") => Vec::new(),
                Err(error) => return Err(error.into()),
            };
        Ok(super::migration_state(&sqlx::migrate!("./migrations/sqlite"), &applied))
    }

    /// Opens the ledger engine's own write connection to the same file.
    pub fn open_writer(&self) -> Result<super::sqlite_writer::SqliteWriter, StoreError> {
        super::sqlite_writer::SqliteWriter::open(
            &self.path,
            WRITER_CACHE_KIB,
            Arc::clone(&self.wal_restart),
            BUSY_TIMEOUT,
        )
    }

    pub(super) async fn ensure_organizations(
        &self,
        orgs: &[(Inn, String)],
    ) -> Result<Vec<(Inn, AccountId)>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let found = insert_organizations(&mut tx, orgs).await?;
        tx.commit().await?;
        Ok(found)
    }
}

super::console::balances::console_balance_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

super::console::dashboard::console_dashboard_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

super::console::jobs::console_job_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

super::console::organizations::console_organization_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

super::console::payments::console_payment_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

super::console::sessions::console_session_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

super::console::users::console_user_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);

// The queries both backends share (see `queries/`), with what differs here.
super::queries::accounts::account_queries!(SqliteStore, reader: reader, writer: writer);
super::queries::notices::notice_queries!(SqliteStore, reader: reader);
super::queries::statements::statement_queries!(SqliteStore, reader: reader, bind_date: crate::timefmt::sqlite_date, bind_time: crate::timefmt::sqlite_text);
super::queries::balances::balance_queries!(SqliteStore, reader: reader, bind_time: crate::timefmt::sqlite_text);
super::queries::payouts::payout_queries!(SqliteStore, reader: reader, bind_time: crate::timefmt::sqlite_text);
super::queries::jobs::job_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text,
    claim_jobs_sql: super::queries::jobs::claim_jobs_sql!("")
);
super::queries::principals::principal_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    begin_write: "BEGIN IMMEDIATE",
    for_update: "",
    bind_time: crate::timefmt::sqlite_text
);
super::queries::events::event_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    begin_write: "BEGIN IMMEDIATE",
    skip_locked: "",
    next_seq: "NULL",
    bind_time: crate::timefmt::sqlite_text
);
super::queries::csv_mappings::csv_mapping_queries!(SqliteStore, writer: writer, bind_time: crate::timefmt::sqlite_text);
super::queries::tokens::token_queries!(
    SqliteStore,
    writer: writer,
    begin_write: "BEGIN IMMEDIATE",
    bind_time: crate::timefmt::sqlite_text
);
super::queries::audit::audit_queries!(
    SqliteStore,
    reader: reader,
    writer: writer,
    bind_time: crate::timefmt::sqlite_text
);
super::queries::verify::verify_queries!(
    SqliteStore,
    reader: reader,
    begin_snapshot: "BEGIN",
    uuid_text: "hex(",
    // Stored instants are RFC 3339 text in UTC; Moscow is UTC+3 all year.
    moscow_date: "date({}, '+3 hours')",
    explain: "EXPLAIN QUERY PLAN",
    // The checks read every table once, and where they look rows up by key (an entry's transaction, a
    // payment's entries) each lookup is a page read; mapping the file makes that a memory access instead of a
    // system call (a third of verify's CPU at a million payments). 2 GiB is SQLite's default ceiling.
    tune: "PRAGMA mmap_size = 2147418112"
);

/// Creates the organizations and accounts that do not exist yet and returns every account id.
async fn insert_organizations(
    conn: &mut sqlx::SqliteConnection,
    orgs: &[(Inn, String)],
) -> Result<Vec<(Inn, AccountId)>, StoreError> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let rows =
        json!(orgs.iter().map(|(inn, name)| json!([inn.as_str(), name, super::fold_name(name)])).collect::<Vec<_>>())
            .to_string();
    sqlx::query(
        "INSERT INTO organizations (inn, name, name_folded) SELECT value->>0, value->>1, value->>2
         FROM json_each($1) WHERE true ON CONFLICT (inn) DO NOTHING",
    )
    .bind(&rows)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO accounts (kind, external_key, currency) SELECT 'organization', value->>0, 'RUB'
         FROM json_each($1) WHERE true ON CONFLICT (kind, external_key, currency) DO NOTHING",
    )
    .bind(&rows)
    .execute(&mut *conn)
    .await?;
    let found = sqlx::query(
        "SELECT external_key, id FROM accounts WHERE kind = 'organization' AND currency = 'RUB'
         AND external_key IN (SELECT value->>0 FROM json_each($1))",
    )
    .bind(&rows)
    .fetch_all(&mut *conn)
    .await?;
    found.into_iter().map(|row| organization_account(row.try_get(0)?, row.try_get(1)?)).collect()
}
