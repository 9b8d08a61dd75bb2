//! Keeping SQLite's WAL short without the writer copying it.
//!
//! Committed pages go to the WAL; a checkpoint copies them into the database file. The WAL can start over
//! from its beginning only when every frame in it has been copied, and a background checkpoint never gets
//! there under a steady load: the writer commits more while it copies. Left alone, the WAL then grows until
//! SQLite's auto-checkpoint makes the writer copy everything since the last background checkpoint (a quarter
//! of a second's pages) and sync the database file, inside a commit its callers wait for. Measured on 2 cores
//! with webhooks to 1,000 organizations (BENCHMARKS.md), that was a commit of 7–28 ms every ~160 ms, and the
//! requests' p99 followed it.
//!
//! Instead, once the WAL is long, the background checkpointer copies it twice in a row (the second pass takes
//! what was committed during the first) and, if both got to the end or nearly, tells the writer. The writer
//! copies the few frames left itself, between two batches (the next batch waits for that copy and its
//! fsyncs, a few milliseconds), so that its next batch starts the WAL over: unless a read that began before
//! still uses the WAL, in which case the next round tries again.
//!
//! SQLite's auto-checkpoint stays, far above, as the safety net for a checkpointer that stalls. It is no cap:
//! a long reader (a backup's `VACUUM INTO`) keeps every checkpoint short of its snapshot, and the WAL grows
//! until it ends. After the writer starts a WAL over, SQLite cuts a file grown past `journal_size_limit` back
//! to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;
use sqlx::sqlite::SqlitePool;

/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// From how many frames (pages) on the WAL is started over: the writer then copies a few frames itself.
const RESTART_FRAMES: i64 = 20_000;
/// How many frames a pass may leave for the writer: those a short read still used when the pass began.
const FEW_FRAMES: i64 = 2_000;
/// The WAL size (in pages) at which a commit checkpoints by itself: the safety net for a checkpointer that
/// stalls, set on every connection that writes. No cap: a long reader holds the WAL whatever this says.
pub(super) const AUTOCHECKPOINT_PAGES: i64 = 100_000;
/// What SQLite cuts the WAL file back to when the writer starts it over after it grew past this (a long reader
/// held it), in bytes.
const JOURNAL_SIZE_LIMIT: i64 = 256 * 1024 * 1024;

/// Sets the writer connection's safety net and the WAL file's size after it.
pub(super) fn keep_short(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
    connection.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
}

/// Between the background checkpointer and the writer: whether the WAL can be started over.
#[derive(Debug)]
pub struct WalRestart {
    caught_up: AtomicBool,
    /// From how many frames on the WAL is started over ([`RESTART_FRAMES`]; fewer in the tests).
    restart_frames: i64,
}

impl Default for WalRestart {
    fn default() -> WalRestart {
        WalRestart { caught_up: AtomicBool::new(false), restart_frames: RESTART_FRAMES }
    }
}

/// A `PRAGMA wal_checkpoint(PASSIVE)` result: whether it was kept from starting, the frames in the WAL, and
/// the frames copied into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    busy: bool,
    log: i64,
    copied: i64,
}

impl Checkpoint {
    /// All but a few frames of the WAL are in the database file. A pass stops at the oldest snapshot a reader
    /// is using; a short read's few frames the writer copies itself once the read is done, but more than a
    /// few mean a long reader, and the WAL cannot start over until it is done.
    fn nearly_finished(self) -> bool {
        !self.busy && self.log - self.copied <= FEW_FRAMES
    }
}

impl WalRestart {
    /// Called by the writer between batches, with no transaction open: if the checkpointer caught up with a
    /// long WAL, copies what was committed since (a few batches' pages) and syncs the database file, so the
    /// writer's next transaction starts the WAL over.
    ///
    /// A failure is only logged: the batch does not depend on it, and the WAL then grows to the next chance.
    pub(super) fn finish_checkpoint(&self, connection: &Connection) {
        if !self.caught_up.swap(false, Ordering::Relaxed) {
            return;
        }
        let started = std::time::Instant::now();
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match result {
            Ok((busy, frames, copied)) => {
                tracing::debug!(busy, frames, copied, took = ?started.elapsed(), "the writer finished a WAL checkpoint");
            }
            Err(error) => tracing::warn!(%error, "the writer's WAL checkpoint failed"),
        }
    }
}

/// Copies committed WAL frames into the database file off the writer's path, every [`CHECKPOINT_INTERVAL`]
/// and, once the WAL is long, twice in a row before telling the writer (see the module's comment).
///
/// A PASSIVE checkpoint never blocks the writer or readers. The task ends when the pool is closed.
pub(super) async fn checkpoint_in_background(pool: SqlitePool, restart: Arc<WalRestart>) {
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if pool.is_closed() {
            break;
        }
        // The second pass copies what was committed during the first, which leaves the writer little to copy.
        let long = restart.restart_frames;
        let mut finished = checkpoint(&pool).await.is_some_and(|first| first.nearly_finished() && first.log >= long);
        if finished {
            finished = checkpoint(&pool).await.is_some_and(Checkpoint::nearly_finished);
        }
        if finished {
            restart.caught_up.store(true, Ordering::Relaxed);
        }
    }
}

/// One PASSIVE checkpoint on a reader connection; `None` if it failed (logged unless the pool is closing).
async fn checkpoint(pool: &SqlitePool) -> Option<Checkpoint> {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await {
        Ok((busy, log, copied)) => Some(Checkpoint { busy: busy != 0, log, copied }),
        Err(error) => {
            if !pool.is_closed() {
                tracing::warn!(%error, "background WAL checkpoint failed");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};

    use super::*;

    /// Commits a page's worth of rows, again and again for `for_how_long`, as the ledger writer does: the
    /// restart is finished between two transactions. Returns the WAL file's largest size, in pages.
    fn write_steadily(path: &std::path::Path, restart: &WalRestart, for_how_long: Duration) -> u64 {
        let mut connection = Connection::open(path).unwrap();
        connection.pragma_update(None, "synchronous", "OFF").unwrap();
        // No auto-checkpoint: what keeps the WAL short here is the restart alone.
        connection.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let wal = path.with_extension("db-wal");
        let (mut largest, started) = (0, std::time::Instant::now());
        while started.elapsed() < for_how_long {
            restart.finish_checkpoint(&connection);
            let tx = connection.transaction().unwrap();
            tx.execute("INSERT INTO pages (filler) VALUES (randomblob(3000))", []).unwrap();
            tx.commit().unwrap();
            // A few thousand commits a second, each of a page or two: a WAL of several times the restart's
            // length between two checkpoints, and thousands of pages in all.
            std::thread::sleep(Duration::from_micros(200));
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()) / 4096);
        }
        largest
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steadily_written_wal_is_started_over_once_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let options = SqliteConnectOptions::from_str("sqlite:").unwrap().filename(&path).create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Off),
            )
            .await
            .unwrap();
        sqlx::query("CREATE TABLE pages (id INTEGER PRIMARY KEY, filler BLOB)").execute(&pool).await.unwrap();
        let restart = Arc::new(WalRestart { caught_up: AtomicBool::new(false), restart_frames: 200 });
        tokio::spawn(checkpoint_in_background(pool.clone(), Arc::clone(&restart)));

        let writer_path = path.clone();
        let writer_restart = Arc::clone(&restart);
        let largest =
            tokio::task::spawn_blocking(move || write_steadily(&writer_path, &writer_restart, Duration::from_secs(4)))
                .await
                .unwrap();
        let written: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pages").fetch_one(&pool).await.unwrap();
        pool.close().await;
        // Each commit adds a row of most of a page, and changes two or three pages in all: without the restart
        // the WAL holds them all (about three times as many pages as rows); with it, a fraction.
        assert!(written > 3_000, "the writer wrote only {written} rows");
        assert!(largest < written as u64, "the WAL reached {largest} pages for {written} rows");
    }

    #[test]
    fn a_wal_copied_but_for_a_batch_counts_as_finished() {
        let done = |log, copied| Checkpoint { busy: false, log, copied };
        assert!(done(50_000, 50_000).nearly_finished());
        assert!(done(50_000, 50_000 - FEW_FRAMES).nearly_finished(), "a short read held these back");
        assert!(!done(50_000, 40_000).nearly_finished(), "a reader held it back");
        assert!(!Checkpoint { busy: true, ..done(50_000, 50_000) }.nearly_finished());
    }
}
