//! Storage: one enum over the two backends, chosen once at start-up from the database URL.
//!
//! Each backend owns its migrations and SQL. The write side is only reached through the ledger engine's
//! [`BatchTx`] (`batch.rs` holds the contract; `sqlite_writer.rs` and `postgres_writer.rs` implement it).
//! Everything else here is a read, a check, or a write that moves no money in a transaction of its own
//! (users and their audit rows, refresh tokens, console sessions, job leases, system accounts, seeded or
//! created organizations). Those whose SQL both backends share are in `queries/`, one file per area; the
//! rows they return are in `rows.rs` and `payouts.rs`.

pub mod batch;
pub(crate) mod delivery_rounds;
pub mod event_rows;
pub mod payouts;
mod postgres;
mod postgres_events;
mod postgres_writer;
pub mod principal_cache;
mod rows;
mod sqlite;
mod sqlite_events;
mod sqlite_reads;
mod sqlite_wal;
mod sqlite_writer;
mod statement_rows;

use std::path::Path;

use payledger_core::{AccountId, BankNotice, Inn, OperationId};
use time::OffsetDateTime;

use batch::HoldState;
pub use batch::{AuditEntry, BatchTx};

pub use postgres::{MAX_CONNECTIONS as PG_MAX_CONNECTIONS, PgStore};
pub use queries::jobs::Attention;
pub use queries::statements::{DiscrepancyFilter, DiscrepancyRow, ImportAccountRow, ImportRow, LineTotals};
pub use queries::verify::{VERIFY_COUNTS, VerifyProgress, check_count};
pub use rows::{
    ActivityRow, AuditFilter, AuditRow, BalanceLogRow, CheckReport, HistoryCursor, HistoryPage, HistorySort,
    PrincipalChange, PrincipalRow, PrincipalUpdate, RefreshRow, UserBalance, VerifyReport,
};
pub use sqlite::SqliteStore;
pub use sqlite_writer::SqliteWriter;

/// The most rejected notices and conflicts kept for operators; older ones are pruned on insert.
pub const MAX_KEPT_NOTICES: i64 = 10_000;

/// How much of a rejected or conflicting notice's body is kept for operators, in bytes.
pub const MAX_KEPT_BODY_BYTES: usize = 4 * 1024;

/// Keeps at most [`MAX_KEPT_BODY_BYTES`] of a body, as text.
///
/// Invalid UTF-8 (including a character split by the cut) becomes U+FFFD, and so does a NUL byte, which
/// PostgreSQL text cannot hold: a kept body must never make its batch fail.
pub fn kept_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_KEPT_BODY_BYTES)]).replace('\0', "\u{FFFD}");
    if body.len() > MAX_KEPT_BODY_BYTES { format!("{text}…") } else { text }
}

/// An organization's name as searches compare it: lower case by Unicode's rules (SQLite's `LOWER` folds only
/// ASCII, so the folding happens here, the same for both backends).
pub fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

/// The key of the system account that mirrors money received from the bank.
pub const BANK_INFLOW_ACCOUNT: &str = "bank_inflow";
/// The key of the system account that mirrors money users deposited.
pub const USER_DEPOSITS_ACCOUNT: &str = "user_deposits";
/// The key of the system account that mirrors money users withdrew.
pub const USER_WITHDRAWALS_ACCOUNT: &str = "user_withdrawals";

/// The key of the system account that completed payouts are captured into.
pub const PAYOUT_CLEARING_ACCOUNT: &str = "payout_clearing";

/// The owners of accounts the engine looks up by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// An organization, keyed by INN.
    Organization,
    /// A user of the balance service, keyed by user id.
    User,
    /// A service's revenue account, keyed by service id.
    Service,
}

impl AccountKind {
    /// The stored kind.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Organization => "organization",
            AccountKind::User => "user",
            AccountKind::Service => "service",
        }
    }
}

/// A storage failure. None of these is the client's fault; they surface as 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or lost the operation.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The embedded database's write connection refused or lost the operation.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse back into its domain type: the data is corrupt.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database URL is not one we support.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// `connect_existing`: the SQLite file does not exist (a command that only uses a database never creates one).
    #[error("no database at {0}")]
    NoDatabase(String),
    /// `connect_existing`: the database is behind this build's migrations (a command other than `migrate` and
    /// `serve` never migrates, so two versions never race to change the schema).
    #[error("the database needs `payledger migrate` (pending: {0})")]
    NeedsMigration(String),
    /// A newer build's migration removed or tightened what this build still uses (a `contract after N`
    /// migration, crates/payledger/migrations/README.md): this build must not run on the database.
    #[error("{0}")]
    TooOld(String),
}

impl StoreError {
    /// Whether the database could not be reached or cannot write at all (an outage rather than a bad
    /// statement): a lost connection, a server shutting down or refusing connections, a lock wait that
    /// timed out, out of resources, or (SQLite) a full disk or a failing file. Some of these also follow
    /// from a statement's size (too many locks, a temp-file limit), so this is only trusted for ONE command
    /// that fails alone (see the engine), never for a whole batch.
    ///
    /// `Protocol` is not here: sqlx also reports a statement with too many bind parameters so, which is the
    /// batch's size, not an outage (a broken stream shows up as `Io` on the next statement anyway).
    pub fn is_connection_failure(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(error)) => error.code().is_some_and(|code| {
                // Class 08: connection exception; 57P01-57P03: administrator or crash shutdown, cannot
                // connect now; 55P03: lock not available (lock_timeout); 57014: statement cancelled (timeout);
                // 53xxx: out of resources (disk full, out of memory, too many connections).
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "55P03"
                    || code == "57014"
            }),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }

    /// Whether no connection could be had at all (the pool's acquire timed out, or it is closed): nothing of
    /// the work was sent, so its size or content cannot be the cause.
    pub fn is_no_connection(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed))
    }

    /// Whether the connection a statement ran on was lost (closed by a database restart, say), rather than the
    /// database being unreachable. A batch that failed so before its COMMIT was sent cannot have been
    /// applied, and a fresh connection from the pool may well succeed.
    pub fn is_lost_connection(&self) -> bool {
        match self {
            // Not `Protocol`: sqlx reports deterministic errors so too (too many bind parameters), and a batch
            // must not run again and again for one of those.
            StoreError::Database(sqlx::Error::Io(_)) => true,
            StoreError::Database(sqlx::Error::Database(error)) => {
                // Class 08: connection exception; 57P01 and 57P02: the server ended the session (a fast or a
                // crash shutdown).
                error.code().is_some_and(|code| code.starts_with("08") || code == "57P01" || code == "57P02")
            }
            _ => false,
        }
    }

    /// Whether a unique constraint refused a row another transaction committed first.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => error.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => {
                error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

/// The sqlx database type of a store, for statements shared by both backends.
pub trait Backend {
    /// The sqlx database.
    type Db: sqlx::Database;
}

impl Backend for SqliteStore {
    type Db = sqlx::Sqlite;
}

impl Backend for PgStore {
    type Db = sqlx::Postgres;
}

/// Runs the same expression on whichever backend the store is: each backend implements the method itself.
macro_rules! on_backend {
    ($self:expr, $store:ident => $body:expr) => {
        match $self {
            Store::Sqlite($store) => $body,
            Store::Postgres($store) => $body,
        }
    };
}

pub mod console;
mod queries;

/// The database, whichever backend it is.
#[derive(Clone, Debug)]
pub enum Store {
    /// The embedded default.
    Sqlite(SqliteStore),
    /// The production store.
    Postgres(PgStore),
}

impl Store {
    /// Connects by URL scheme: `sqlite://path` (the file and its folder are created) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Ok(Store::Sqlite(SqliteStore::open(Path::new(path)).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Connects read-only by URL scheme, for `payledger verify`: a SQLite file must exist and is opened with
    /// `mode=ro` (nothing is created, no checkpointer runs); a PostgreSQL session defaults to read-only
    /// transactions. Neither logs slow statements: the checks read whole tables by design, and the warnings
    /// would land on top of the progress bar.
    pub async fn connect_read_only(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Ok(Store::Sqlite(SqliteStore::open_read_only(Path::new(path)).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect_read_only(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Connects read-write to a database that already exists and is fully migrated, for commands that use a
    /// database but must not create or change its schema (`payledger statement import`): a missing SQLite file
    /// is [`StoreError::NoDatabase`] (nothing is created), pending migrations are [`StoreError::NeedsMigration`],
    /// and a newer build's migration that contracted what this build uses is [`StoreError::TooOld`].
    pub async fn connect_existing(url: &str) -> Result<Store, StoreError> {
        let refuse_pending = |state: MigrationState| match (state.pending.is_empty(), state.too_old()) {
            (false, _) => Err(StoreError::NeedsMigration(state.pending.join(", "))),
            (true, Some(problem)) => Err(StoreError::TooOld(problem)),
            (true, None) => Ok(()),
        };
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = Path::new(path);
            if !path.is_file() {
                return Err(StoreError::NoDatabase(path.display().to_string()));
            }
            // Checked read-only first: opening read-write sets the journal mode, which writes to the file.
            let probe = SqliteStore::open_read_only(path).await?;
            refuse_pending(probe.migration_state().await?)?;
            Ok(Store::Sqlite(SqliteStore::open_existing(path).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = PgStore::connect(url).await?;
            refuse_pending(store.migration_state().await?)?;
            Ok(Store::Postgres(store))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// How the database's applied migrations compare with this build's.
    pub async fn migration_state(&self) -> Result<MigrationState, StoreError> {
        on_backend!(self, store => store.migration_state().await)
    }

    /// The migration state of the database at `url`, read without creating or changing anything (a SQLite file
    /// is only opened read-only): for `payledger migrate --check`. A missing SQLite file is
    /// [`StoreError::NoDatabase`].
    pub async fn check_migrations(url: &str) -> Result<MigrationState, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = Path::new(path);
            if !path.is_file() {
                return Err(StoreError::NoDatabase(path.display().to_string()));
            }
            SqliteStore::open_read_only(path).await?.migration_state().await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgStore::connect(url).await?.migration_state().await
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Closes the store's connections and waits until they are closed: `backup` and `restore` rename and delete
    /// the SQLite files they checked, so no connection may still be open on them.
    pub async fn close(&self) {
        on_backend!(self, store => store.close().await)
    }

    /// The backend's name, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies the backend's pending migrations. On PostgreSQL several instances may run it at once (sqlx holds an
    /// advisory lock); on SQLite, one process at a time. Stop every instance of an older build first: a
    /// migration may change a key its queries name (0013 does).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // A newer build's migrations are applied around this one's (expand-only), unless one of them removed
        // what this build still uses: then it must not start, nor apply its own. Checked again after the run,
        // since a newer build may have migrated meanwhile.
        self.refuse_too_old().await?;
        on_backend!(self, store => store.migrate().await)?;
        self.refuse_too_old().await
    }

    async fn refuse_too_old(&self) -> Result<(), StoreError> {
        match self.migration_state().await?.too_old() {
            Some(problem) => Err(StoreError::TooOld(problem)),
            None => Ok(()),
        }
    }
}

/// How a database's applied migrations compare with this build's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationState {
    /// This build's migrations the database has not applied, as `version_description`.
    pub pending: Vec<String>,
    /// Versions the database has applied that this build does not know: a newer build migrated it.
    pub unknown: Vec<i64>,
    /// Of those, the contracting ones this build is too old for, as `version (contract after N)`: each
    /// removes or tightens something builds whose newest migration is below N still use.
    pub too_new: Vec<String>,
}

impl MigrationState {
    /// Why this build should not serve on the database (`migrations pending: …`), or nothing. A newer build's
    /// migrations are no reason: they only expand the schema (migrations/README.md), so the build before keeps
    /// serving during a rolling upgrade and can be rolled back to.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.pending.is_empty() {
            problems.push(format!("migrations pending: {}", self.pending.join(", ")));
        }
        problems.extend(self.too_old());
        problems
    }

    /// Why this build is too old for the database, if a newer build's migration contracted what it uses.
    pub fn too_old(&self) -> Option<String> {
        (!self.too_new.is_empty())
            .then(|| format!("a newer build's migrations removed what this build uses: {}", self.too_new.join(", ")))
    }

    /// What an operator should know that is not a problem: `migrations of a newer build applied: …`.
    pub fn notes(&self) -> Vec<String> {
        if self.unknown.is_empty() {
            return Vec::new();
        }
        let versions: Vec<String> = self.unknown.iter().map(i64::to_string).collect();
        vec![format!("migrations of a newer build applied: {}", versions.join(", "))]
    }
}

/// The state of `applied` (versions and descriptions) against `migrator`'s migrations.
fn migration_state(migrator: &sqlx::migrate::Migrator, applied: &[(i64, String)]) -> MigrationState {
    let ours = || migrator.iter().filter(|migration| !migration.migration_type.is_down_migration());
    let newest = ours().map(|migration| migration.version).max().unwrap_or(0);
    let unknown: Vec<&(i64, String)> =
        applied.iter().filter(|(version, _)| !ours().any(|m| m.version == *version)).collect();
    MigrationState {
        pending: ours()
            .filter(|migration| !applied.iter().any(|(version, _)| *version == migration.version))
            .map(|migration| format!("{}_{}", migration.version, migration.description.replace(' ', "_")))
            .collect(),
        unknown: unknown.iter().map(|(version, _)| *version).collect(),
        too_new: unknown
            .iter()
            .filter_map(|(version, description)| {
                let after = contract_after(description)?;
                (newest < after).then(|| format!("{version} (contract after {after})"))
            })
            .collect(),
    }
}

/// The N of a migration named `<version>_contract_after_<N>_<what>.sql` (sqlx's description: `contract after
/// N what`): builds whose newest migration is below N must not run once it is applied.
fn contract_after(description: &str) -> Option<i64> {
    let rest = description.strip_prefix("contract after ")?;
    rest.split(' ').next()?.parse().ok()
}

/// An organization account's key and id, as both stores read them back after creating organizations.
pub(crate) fn organization_account(key: String, id: i64) -> Result<(Inn, AccountId), StoreError> {
    let inn = Inn::parse(&key).map_err(|_| StoreError::Corrupt(format!("account key {key}")))?;
    Ok((inn, AccountId(id)))
}

/// Turns a stored reservation's columns back into the engine's view of it, or says the row is corrupt.
pub(crate) fn hold_from_row(
    reference: &str,
    account: i64,
    amount: i64,
    status: &str,
    transaction_id: Option<uuid::Uuid>,
) -> Result<HoldState, StoreError> {
    let status = payledger_core::balances::HoldStatus::parse(status)
        .ok_or_else(|| StoreError::Corrupt(format!("reservation {reference}: status {status}")))?;
    Ok(HoldState { is_new: false, account: AccountId(account), amount, status, transaction_id })
}

/// Turns a stored notice's columns back into the domain type, or says the row is corrupt.
pub(crate) fn notice_from_row(
    operation_id: uuid::Uuid,
    amount: i64,
    currency: &str,
    payer_inn: &str,
    document_number: String,
    document_date: OffsetDateTime,
) -> Result<BankNotice, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("bank payment {operation_id}: bad {what}"));
    let currency = payledger_core::Currency::from_code(currency).ok_or_else(|| corrupt("currency"))?;
    Ok(BankNotice {
        operation_id: OperationId(operation_id),
        amount: payledger_core::Money::from_minor(amount, currency),
        payer_inn: Inn::parse(payer_inn).map_err(|_| corrupt("payer_inn"))?,
        document_number,
        document_date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
    }

    #[test]
    fn a_full_disk_and_a_lost_connection_are_outages_but_a_bad_row_is_not() {
        assert!(sqlite(rusqlite::ffi::SQLITE_FULL).is_connection_failure());
        assert!(sqlite(rusqlite::ffi::SQLITE_IOERR_WRITE).is_connection_failure());
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE).is_connection_failure());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_connection_failure());
        assert!(!StoreError::Corrupt("x".into()).is_connection_failure());
    }
}
