//! SQLite's hot reads (the caller's user, a balance, a page of history) on rusqlite connections with cached
//! statements, run on the calling thread.
//!
//! sqlx's SQLite driver runs each connection on a thread of its own and hands every query there and back:
//! two thread switches per query, more than these reads cost themselves. Each of them is a lookup by a
//! unique key or one bounded page (at most `MAX_HISTORY_PAGE` + 1 lines) of one index range, so it takes
//! microseconds and can run where the request runs; in WAL mode a reader never waits for the writer. The
//! rare read SQLite refuses as busy (a WAL being recovered after a crash) is not waited for there: it is
//! retried on a blocking thread for as long as any other connection would wait, so it never holds up the
//! other requests of its runtime thread. (A page missing from the caches is still read from the disk there,
//! as sqlx's driver thread would: a read touches a handful of pages.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::queries::hot_reads::{
    ORGANIZATION_BALANCE, PRINCIPAL_BY_ID, PRINCIPAL_BY_NAME, USER_ACCOUNT, USER_BALANCE, history_bounds, history_sql,
};
use super::sqlite_writer::parse_time;
use super::{ActivityRow, HistoryPage, PrincipalRow, SqliteStore, StoreError, UserBalance};

/// How many idle read connections are kept at least. A read holds one only while it runs, without awaiting,
/// so no more are ever in use than threads run reads at once (the runtime's workers, one per core, and the
/// blocking threads of the rare retries); one beyond the limit is closed after its read.
const MIN_IDLE: usize = 8;
/// The pause between a blocking thread's attempts at a read SQLite refused as busy (these connections do not
/// wait inside SQLite, so a refusal on a runtime thread comes back at once).
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// The statements each connection keeps prepared (every hot read's, with room to spare).
const STATEMENT_CACHE: usize = 16;
/// Each connection's page cache, in KiB (SQLite's negative `cache_size`). The operating system caches the
/// file as well; this keeps the indexes' upper levels at hand without growing the process by much.
const CACHE_KIB: i64 = 1024;

/// The idle read connections of one database file.
pub(super) struct HotReads {
    path: PathBuf,
    /// How long a read refused as busy is retried, on a blocking thread.
    busy_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for HotReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotReads").field("path", &self.path).finish_non_exhaustive()
    }
}

impl HotReads {
    pub(super) fn new(path: &Path, busy_timeout: Duration) -> HotReads {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        HotReads { path: path.to_path_buf(), busy_timeout, max_idle: MIN_IDLE.max(2 * cores), idle: Mutex::default() }
    }

    /// Closes the idle connections (the store is closing: backup and restore move the files next).
    pub(super) fn close(&self) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Runs `read` here, or, if SQLite refused it as busy, again on a blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self.with(&read) {
            Err(error) if is_busy(&error) => {
                let hot = Arc::clone(self);
                tokio::task::spawn_blocking(move || hot.patiently(&read))
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
            }
            done => done,
        }
    }

    /// Runs `read` until SQLite stops making it wait, for up to the busy timeout. SQLite's busy handler sleeps
    /// between its own attempts, but some refusals come at once (`SQLITE_LOCKED`, a WAL being recovered), so
    /// each retry here waits a little too rather than spin.
    fn patiently<T>(&self, read: &impl Fn(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let start = Instant::now();
        loop {
            match self.with(read) {
                Err(error) if is_busy(&error) && start.elapsed() < self.busy_timeout => {
                    std::thread::sleep(RETRY_PAUSE);
                }
                done => return done,
            }
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        // Read-only: nothing can write through these, whatever a query says. No mutex of SQLite's own: a
        // connection is used by one thread at a time (it is taken out of `idle` to be used).
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let connection = Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(Duration::ZERO)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        connection.pragma_update(None, "cache_size", -CACHE_KIB)?;
        plan_once(&connection)?;
        Ok(connection)
    }

    /// Runs `read` on an idle connection (opening one if none is idle) and puts it back.
    fn with<T>(&self, read: &impl Fn(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        // A connection whose read failed may be the cause (a file that went away): it is not kept, unless the
        // failure was only a busy database.
        if result.as_ref().err().is_none_or(is_busy) {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < self.max_idle {
                idle.push(connection);
            }
        }
        result
    }
}

fn is_busy(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == rusqlite::ErrorCode::DatabaseBusy
    )
}

/// Makes a cached statement keep its plan whatever values are bound to it (SQLite's query planner stability
/// guarantee). Without it, a statement whose plan looked at a bound value (a `LIMIT ?` does, to spot a small
/// constant limit) is compiled again on every execution once a new value is bound: the history page's query
/// spent more time being parsed and planned than run, and read at a third of a balance's rate.
pub(super) fn plan_once(connection: &Connection) -> Result<(), StoreError> {
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn principal_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<(PrincipalRow, String, Option<String>)> {
    Ok((
        PrincipalRow {
            id: row.get(0)?,
            username: row.get(1)?,
            password_hash: row.get(2)?,
            role: row.get(3)?,
            active: row.get(4)?,
            password_generated: row.get(5)?,
            // Parsed below, where a bad time can be reported as corrupt data.
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            tokens_valid_after: None,
            auth_version: row.get(8)?,
        },
        row.get(6)?,
        row.get(7)?,
    ))
}

fn principal_with_times(
    found: Option<(PrincipalRow, String, Option<String>)>,
) -> Result<Option<PrincipalRow>, StoreError> {
    let Some((mut principal, created_at, tokens_valid_after)) = found else { return Ok(None) };
    principal.created_at = parse_time(&created_at)?;
    principal.tokens_valid_after = tokens_valid_after.as_deref().map(parse_time).transpose()?;
    Ok(Some(principal))
}

fn uuid_from(bytes: Option<Vec<u8>>) -> Result<Option<uuid::Uuid>, StoreError> {
    bytes
        .map(|bytes| uuid::Uuid::from_slice(&bytes))
        .transpose()
        .map_err(|_| StoreError::Corrupt("a stored id is not 16 bytes".into()))
}

/// One history line as stored, before its id columns and time are parsed.
type StoredLine =
    (i64, String, i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<Vec<u8>>, String, Option<Vec<u8>>);

fn line_from(stored: StoredLine) -> Result<ActivityRow, StoreError> {
    let (id, kind, amount, held_change, counterparty, service_id, order_id, transaction, created_at, payout) = stored;
    Ok(ActivityRow {
        id,
        kind,
        amount,
        held_change,
        counterparty,
        service_id,
        order_id,
        transaction_id: uuid_from(transaction)?,
        created_at: parse_time(&created_at)?,
        payout_id: uuid_from(payout)?,
    })
}

impl SqliteStore {
    pub(super) async fn principal(&self, username: &str) -> Result<Option<PrincipalRow>, StoreError> {
        let username = username.to_owned();
        let found = self
            .hot
            .read(move |db| {
                Ok(db.prepare_cached(PRINCIPAL_BY_NAME)?.query_row([&username], principal_from).optional()?)
            })
            .await?;
        principal_with_times(found)
    }

    pub(super) async fn principal_by_id(&self, id: i64) -> Result<Option<PrincipalRow>, StoreError> {
        let found = self
            .hot
            .read(move |db| Ok(db.prepare_cached(PRINCIPAL_BY_ID)?.query_row([id], principal_from).optional()?))
            .await?;
        principal_with_times(found)
    }

    pub(super) async fn user_balance(&self, user: i64) -> Result<Option<UserBalance>, StoreError> {
        let key = user.to_string();
        self.hot
            .read(move |db| {
                Ok(db
                    .prepare_cached(USER_BALANCE)?
                    .query_row([&key], |row| Ok(UserBalance { balance: row.get(0)?, held: row.get(1)? }))
                    .optional()?)
            })
            .await
    }

    pub(super) async fn user_history(
        &self,
        user: i64,
        page: HistoryPage,
    ) -> Result<Option<Vec<ActivityRow>>, StoreError> {
        let key = user.to_string();
        let stored = self
            .hot
            .read(move |db| {
                let account: Option<i64> =
                    db.prepare_cached(USER_ACCOUNT)?.query_row([&key], |row| row.get(0)).optional()?;
                let Some(account) = account else { return Ok(None) };
                let (amount, id) = history_bounds(&page);
                let mut query = db.prepare_cached(history_sql(page.sort, page.descending))?;
                let lines = query
                    .query_map(rusqlite::params![account, amount, id, page.limit], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                            row.get(8)?,
                            row.get(9)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<StoredLine>>>()?;
                Ok(Some(lines))
            })
            .await?;
        stored.map(|lines| lines.into_iter().map(line_from).collect()).transpose()
    }

    pub(super) async fn organization_balance(&self, inn: &payledger_core::Inn) -> Result<Option<i64>, StoreError> {
        let inn = inn.clone();
        self.hot
            .read(move |db| {
                Ok(db.prepare_cached(ORGANIZATION_BALANCE)?.query_row([inn.as_str()], |row| row.get(0)).optional()?)
            })
            .await
    }
}
