//! `payledger backup` and `payledger restore`, for the embedded SQLite database.
//!
//! **Backup.** `VACUUM INTO` a temporary file beside the destination, through a read-only connection: the
//! copy is one read transaction, so it is one consistent snapshot while the server keeps committing (in WAL
//! mode a reader never blocks the writer, nor the writer a reader). The copy is switched to rollback-journal
//! mode (one self-contained file, which a read-only connection opens without creating a `-wal` or `-shm`),
//! fsynced, checked with every `verify` check, and only then renamed to its name and its folder fsynced: a
//! copy that is half written or does not verify never carries the name.
//!
//! **Restore.** The backup is checked first (read-only), then the target is claimed: SQLite's EXCLUSIVE
//! lock on the database file, taken by leaving WAL mode (`journal_mode = DELETE`). Every connection to a
//! WAL database holds a SHARED lock on the file for as long as it is open, busy or idle, so the claim fails
//! while any server, worker or other process has the database open. (`BEGIN EXCLUSIVE` alone would not
//! notice an idle server: in WAL mode it takes only the write lock, which a writer holds only during its
//! transactions.) Leaving WAL mode copies the log into the file and deletes the `-wal` and `-shm` files
//! under that lock, so the database is then one complete file. Holding the claim (`BEGIN EXCLUSIVE`, which
//! in rollback mode keeps every other connection from even reading), restore keeps that file as
//! `<name>.before-restore-<UTC time>` and renames the verified, fsynced copy into place.
//!
//! What the lock cannot stop: a process that opens the target during the moment of the swap, waits for the
//! lock, and then uses the old file under its new name. The servers must be stopped for a restore, and
//! restore refuses while they run; it cannot keep one from being started in those milliseconds.
//!
//! Exit status, as `verify`'s: 0 done; 1 the copy (of `backup`) or the backup (given to `restore`) does not
//! verify; 2 nothing was done (a PostgreSQL URL, a bad path, an existing file without `--force`, a database
//! in use, a copy or check that could not run), or, the one exception the message names, the file was renamed
//! into place but its folder could not be fsynced.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::HumanBytes;
use rusqlite::{Connection, OpenFlags};

use super::verify::{self, EXIT_NOT_CHECKED, EXIT_VIOLATIONS};
use crate::store::{Store, VerifyReport};

/// How long `restore` waits for SQLite's locks on the target before it says the database is in use.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// How long the copy's read-only connection waits for a lock (only recovering a WAL left by a crash takes one).
const COPY_BUSY_WAIT: Duration = Duration::from_secs(10);
/// How often the copy's progress bar looks at the size of the file being written.
const COPY_POLL: Duration = Duration::from_millis(250);
/// The copy's progress: bytes written against the source file's size (an estimate: the copy leaves out free
/// pages and takes in what is still only in the WAL).
const COPY_TEMPLATE: &str = "{prefix} {elapsed_precise} [{bar:24}] {bytes} of ~{total_bytes} copied";

/// What `backup` says on PostgreSQL.
const POSTGRES_BACKUP: &str = "payledger backup copies the embedded SQLite database only. Back up PostgreSQL \
    with `pg_dump -Fc` (one consistent snapshot while the servers keep writing), and archive its WAL for \
    point-in-time recovery; see docs/DEPLOY.md";
/// What `restore` says on PostgreSQL.
const POSTGRES_RESTORE: &str = "payledger restore replaces the embedded SQLite database only. Restore a \
    PostgreSQL dump with `pg_restore` into a new database, check it with `payledger verify` (DATABASE_URL \
    naming it) before the servers use it; see docs/DEPLOY.md";

/// Why a backup or a restore stopped: its exit status and the sentence for the operator, which names the file
/// and the reason.
#[derive(Debug)]
struct Stop {
    code: u8,
    message: String,
}

impl Stop {
    /// Nothing was done ([`EXIT_NOT_CHECKED`]).
    fn not_done(message: impl Into<String>) -> Stop {
        Stop { code: EXIT_NOT_CHECKED, message: message.into() }
    }

    /// The copy or the backup does not verify ([`EXIT_VIOLATIONS`]).
    fn not_verified(message: impl Into<String>) -> Stop {
        Stop { code: EXIT_VIOLATIONS, message: message.into() }
    }
}

fn finish(result: Result<(), Stop>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(stop) => {
            eprintln!("error: {}", stop.message);
            ExitCode::from(stop.code)
        }
    }
}

/// `payledger backup --to FILE [--force]`: the exit status (see the module's comment).
pub async fn backup(database_url: &str, to: &Path, force: bool) -> ExitCode {
    finish(make_backup(database_url, to, force).await)
}

/// `payledger restore --from FILE [--force]`: the exit status (see the module's comment).
pub async fn restore(database_url: &str, from: &Path, force: bool) -> ExitCode {
    finish(restore_backup(database_url, from, force).await)
}

async fn make_backup(database_url: &str, to: &Path, force: bool) -> Result<(), Stop> {
    let started = Instant::now();
    let source = sqlite_path(database_url, POSTGRES_BACKUP)?;
    if !source.is_file() {
        return Err(Stop::not_done(format!("no database at {}", source.display())));
    }
    let folder = folder_of(to)?;
    utf8(to)?;
    if is_part_of(&source, to) {
        return Err(Stop::not_done(format!("--to {} is the database itself or one of its files", to.display())));
    }
    refuse_existing(to, force)?;
    let partial = sibling(to, &format!("partial-{}", temporary_tag()))?;
    if let Err(error) = copy_with_progress(&source, &partial, "backup").await {
        discard(&partial);
        return Err(Stop::not_done(format!("cannot copy {} to {}: {error}", source.display(), partial.display())));
    }
    let copied_in = started.elapsed();
    let report = match verify_file(&partial).await {
        Ok(report) => report,
        Err(error) => {
            discard(&partial);
            return Err(Stop::not_done(format!(
                "the copy {} could not be checked ({error}): it was deleted and {} was not written",
                partial.display(),
                to.display()
            )));
        }
    };
    if report.violations() > 0 {
        discard(&partial);
        return Err(Stop::not_verified(format!(
            "the copy of {} does not verify ({} problem(s), listed above): it was deleted and {} was not written. \
             The copy is a faithful snapshot, so the database itself has them: run `payledger verify`",
            source.display(),
            report.violations(),
            to.display()
        )));
    }
    put_in_place(&partial, to, &folder, force)?;
    println!(
        "backup written to {}: {}, a consistent copy of {} (copied in {:.1} s, {:.1} s in all; verify OK)",
        to.display(),
        HumanBytes(file_size(to)),
        source.display(),
        copied_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Renames the verified copy `partial` to `to` and fsyncs the folder; without `force`, refuses a `to` that
/// appeared while the copy was made. The copy is deleted if it cannot be named.
fn put_in_place(partial: &Path, to: &Path, folder: &Path, force: bool) -> Result<(), Stop> {
    if let Err(stop) = refuse_existing(to, force) {
        discard(partial);
        return Err(stop);
    }
    if let Err(error) = std::fs::rename(partial, to) {
        discard(partial);
        return Err(Stop::not_done(format!("cannot rename {} to {}: {error}", partial.display(), to.display())));
    }
    sync_folder(folder).map_err(|error| {
        Stop::not_done(format!(
            "{} was written, but its folder {} could not be synced ({error}): it may not survive a power loss",
            to.display(),
            folder.display()
        ))
    })
}

async fn restore_backup(database_url: &str, from: &Path, force: bool) -> Result<(), Stop> {
    let started = Instant::now();
    let target = sqlite_path(database_url, POSTGRES_RESTORE)?;
    if !from.is_file() {
        return Err(Stop::not_done(format!("no backup at {}", from.display())));
    }
    let folder = folder_of(&target)?;
    if is_part_of(&target, from) {
        return Err(Stop::not_done(format!("{} is the database itself or one of its files", from.display())));
    }
    let pending = backup_migrations(from).await?;
    let replacing = std::fs::symlink_metadata(&target).is_ok();
    if replacing && !force {
        return Err(Stop::not_done(format!(
            "{} already exists: restore replaces a database only with --force (it is then kept beside it as \
             {}.before-restore-<UTC time>)",
            target.display(),
            file_name(&target)
        )));
    }
    // Refuse a database in use, or a log left beside a missing one, now, before the copy; both are checked
    // again for the swap.
    if replacing {
        drop(Claim::take(&target)?);
    } else {
        clear_side_files(&target)?;
    }
    let restoring = sibling(&target, &format!("restoring-{}", temporary_tag()))?;
    if let Err(error) = copy_with_progress(from, &restoring, "restore").await {
        discard(&restoring);
        return Err(Stop::not_done(format!(
            "cannot copy {} to {}: {error}; {} was not changed",
            from.display(),
            restoring.display(),
            target.display()
        )));
    }
    // The copy is what is checked, not FILE: what is swapped in is exactly what verified, even if FILE changes
    // meanwhile.
    let report = verify_file(&restoring).await.map_err(|error| {
        discard(&restoring);
        Stop::not_done(format!("{} could not be checked ({error}); nothing was changed", from.display()))
    })?;
    if report.violations() > 0 {
        discard(&restoring);
        return Err(Stop::not_verified(format!(
            "{} does not verify ({} problem(s), listed above): refusing to restore it; nothing was changed",
            from.display(),
            report.violations()
        )));
    }
    let kept = swap_in(&target, &restoring, &folder).inspect_err(|_| discard(&restoring))?;
    // The copy now has the database's name; what is left under its temporary one is the empty -wal and -shm
    // its read-only checks made.
    discard(&restoring);
    println!(
        "restored {} to {}: {} in {:.1} s",
        from.display(),
        target.display(),
        HumanBytes(file_size(&target)),
        started.elapsed().as_secs_f64()
    );
    match kept {
        Some(kept) => println!("the database it replaced is kept as {}", kept.display()),
        None => println!("there was no database at {} before", target.display()),
    }
    if !pending.is_empty() {
        println!(
            "the backup lacks this build's migrations {}: the server applies them when it starts (or run \
             `payledger migrate`)",
            pending.join(", ")
        );
    }
    Ok(())
}

/// This build's migrations the backup lacks; refuses a backup with migrations this build does not know.
async fn backup_migrations(from: &Path) -> Result<Vec<String>, Stop> {
    let url = format!("sqlite://{}", utf8(from)?);
    let state = Store::check_migrations(&url).await.map_err(|error| {
        Stop::not_done(format!("cannot read {} as a payledger database: {error}; nothing was changed", from.display()))
    })?;
    if !state.unknown.is_empty() {
        return Err(Stop::not_done(format!(
            "{} was made by a newer build of payledger ({}): this build does not know its schema; restore it with \
             that build. Nothing was changed",
            from.display(),
            state.notes().join("; ")
        )));
    }
    Ok(state.pending)
}

/// Puts the verified, fsynced `copy` in place of `target` and fsyncs the folder. Holding the claim on an
/// existing target, the old file is kept under a new name first; returns that name.
fn swap_in(target: &Path, copy: &Path, folder: &Path) -> Result<Option<PathBuf>, Stop> {
    let replacing = std::fs::symlink_metadata(target).is_ok();
    // Held until the copy has the name: no other connection can open a transaction on the old file meanwhile.
    let claim = if replacing { Some(Claim::take(target)?) } else { None };
    clear_side_files(target)?;
    let kept = if replacing { Some(keep_previous(target)?) } else { None };
    if let Err(error) = std::fs::rename(copy, target) {
        let state = match &kept {
            Some(kept) => kept.undo(target),
            None => format!("{} was not changed", target.display()),
        };
        return Err(Stop::not_done(format!(
            "cannot rename {} to {}: {error}; {state}",
            copy.display(),
            target.display()
        )));
    }
    drop(claim);
    let kept = kept.map(Kept::into_path);
    sync_folder(folder).map_err(|error| {
        Stop::not_done(format!(
            "{} was restored, but its folder {} could not be synced ({error}): the rename may not survive a power \
             loss",
            target.display(),
            folder.display()
        ))
    })?;
    Ok(kept)
}

/// SQLite's EXCLUSIVE lock on a database file in rollback-journal mode, held while this lives.
struct Claim(Connection);

impl Claim {
    /// Claims `target`, or says it is in use (see the module's comment for why leaving WAL mode is the test).
    fn take(target: &Path) -> Result<Claim, Stop> {
        let in_use = |detail: &dyn std::fmt::Display| {
            Stop::not_done(format!(
                "{} is in use ({detail}): another process has it open. Stop every `payledger serve` and \
                 `payledger worker` using it (and anything else that has it open), then run restore again; nothing \
                 was changed",
                target.display()
            ))
        };
        let cannot = |error: rusqlite::Error| {
            Stop::not_done(format!(
                "cannot open {} as a SQLite database: {error}; nothing was changed",
                target.display()
            ))
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(target, flags).map_err(cannot)?;
        connection.busy_timeout(CLAIM_WAIT).map_err(cannot)?;
        match connection.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("delete") => {}
            Ok(mode) => return Err(in_use(&format!("it stays in journal mode {mode}"))),
            Err(error) if is_busy(&error) => return Err(in_use(&error)),
            Err(error) => return Err(cannot(error)),
        }
        match connection.execute_batch("BEGIN EXCLUSIVE") {
            Ok(()) => Ok(Claim(connection)),
            Err(error) if is_busy(&error) => Err(in_use(&error)),
            Err(error) => Err(cannot(error)),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Nothing was written in the transaction: ending it only releases the lock (closing would too).
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Removes what SQLite left beside `target` when that is safe, and refuses when it is not: a `-shm` file is
/// only an index of a `-wal` file (and a claimed database has none); an empty `-wal` or `-journal` holds
/// nothing. A non-empty `-wal` or `-journal` would be replayed into the restored database, so restore stops:
/// beside a missing database it is left from a database that is gone, and beside a claimed one SQLite
/// should have consumed it.
fn clear_side_files(target: &Path) -> Result<(), Stop> {
    for suffix in ["-shm", "-wal", "-journal"] {
        let mut name = target.as_os_str().to_owned();
        name.push(suffix);
        let side = PathBuf::from(name);
        let Ok(metadata) = std::fs::symlink_metadata(&side) else { continue };
        if suffix != "-shm" && metadata.len() > 0 {
            return Err(Stop::not_done(format!(
                "{} is not empty: SQLite would replay it into the restored database. It belongs to the database \
                 that was at {}; move it away if that database is gone, then run restore again. Nothing was changed",
                side.display(),
                target.display()
            )));
        }
        std::fs::remove_file(&side)
            .map_err(|error| Stop::not_done(format!("cannot remove {}: {error}", side.display())))?;
    }
    Ok(())
}

/// Where the database a restore replaced is kept.
enum Kept {
    /// A second name of the old file: the target's name never goes missing.
    Linked(PathBuf),
    /// The old file renamed (the file system has no hard links).
    Moved(PathBuf),
}

impl Kept {
    fn into_path(self) -> PathBuf {
        match self {
            Kept::Linked(path) | Kept::Moved(path) => path,
        }
    }

    /// Puts the old database back after the copy could not be renamed into place; says where it is.
    fn undo(&self, target: &Path) -> String {
        match self {
            Kept::Linked(path) => match std::fs::remove_file(path) {
                Ok(()) => format!("{} was not changed", target.display()),
                Err(error) => {
                    format!("{} was not changed (its second name {} stays: {error})", target.display(), path.display())
                }
            },
            Kept::Moved(path) => match std::fs::rename(path, target) {
                Ok(()) => format!("{} was put back", target.display()),
                Err(error) => format!("the old database could not be put back ({error}): it is {}", path.display()),
            },
        }
    }
}

/// Gives the claimed target's file a second name, `<name>.before-restore-<UTC time>`.
fn keep_previous(target: &Path) -> Result<Kept, Stop> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .map_err(|error| Stop::not_done(format!("cannot format the time: {error}")))?;
    let kept = sibling(target, &format!("before-restore-{stamp}"))?;
    if std::fs::symlink_metadata(&kept).is_ok() {
        return Err(Stop::not_done(format!("{} already exists; nothing was changed", kept.display())));
    }
    match std::fs::hard_link(target, &kept) {
        Ok(()) => Ok(Kept::Linked(kept)),
        Err(_) => match std::fs::rename(target, &kept) {
            Ok(()) => Ok(Kept::Moved(kept)),
            Err(error) => Err(Stop::not_done(format!(
                "cannot keep {} as {}: {error}; nothing was changed",
                target.display(),
                kept.display()
            ))),
        },
    }
}

/// Copies one snapshot of `source` to the new file `dest` (see [`copy_snapshot`]) on a blocking thread, with a
/// progress bar on a terminal that follows the size of `dest`.
async fn copy_with_progress(source: &Path, dest: &Path, label: &'static str) -> Result<(), String> {
    let bar = super::progress_bar(file_size(source), COPY_TEMPLATE);
    bar.set_prefix(label);
    let (from, to) = (source.to_path_buf(), dest.to_path_buf());
    let mut copy = tokio::task::spawn_blocking(move || copy_snapshot(&from, &to));
    let mut poll = tokio::time::interval(COPY_POLL);
    let joined = loop {
        tokio::select! {
            joined = &mut copy => break joined,
            _ = poll.tick() => {
                let written = file_size(dest);
                if written > bar.length().unwrap_or(0) {
                    bar.set_length(written);
                }
                bar.set_position(written);
            }
        }
    };
    bar.finish_and_clear();
    match joined {
        Ok(copied) => copied.map_err(|error| format!("{error:#}")),
        Err(error) => Err(format!("the copy stopped: {error}")),
    }
}

/// Writes one consistent snapshot of the database `source` to the new file `dest` with `VACUUM INTO`, through a
/// read-only connection (one read transaction: writers go on), switches the copy to rollback-journal mode so
/// that it is one self-contained file, and fsyncs it.
fn copy_snapshot(source: &Path, dest: &Path) -> anyhow::Result<()> {
    // No SQLITE_OPEN_URI: the paths are file names, never `file:` URIs.
    let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let reader = Connection::open_with_flags(source, read_only).context("opening it read-only")?;
    reader.busy_timeout(COPY_BUSY_WAIT)?;
    let dest_name = dest.to_str().context("the destination's path is not UTF-8")?;
    reader.execute("VACUUM INTO ?1", [dest_name])?;
    reader.close().map_err(|(_, error)| error).context("closing the source")?;
    let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .context("opening the copy")?;
    let mode: String = copy.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    copy.close().map_err(|(_, error)| error).context("closing the copy")?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("delete"), "the copy stayed in journal mode {mode}");
    std::fs::File::open(dest).and_then(|file| file.sync_all()).context("syncing the copy")?;
    Ok(())
}

/// Every `verify` check on the SQLite file (opened read-only), with verify's report printed.
async fn verify_file(file: &Path) -> Result<VerifyReport, String> {
    let started = Instant::now();
    let url = format!("sqlite://{}", utf8(file).map_err(|stop| stop.message)?);
    let report = verify::check_read_only(&url).await.map_err(|error| error.to_string())?;
    verify::print_human(&report, verify::millis(started.elapsed()));
    Ok(report)
}

/// The file of a `sqlite://` URL; a PostgreSQL URL is refused with `postgres`, what to use instead.
fn sqlite_path(database_url: &str, postgres: &str) -> Result<PathBuf, Stop> {
    if let Some(path) = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:")) {
        return Ok(PathBuf::from(path));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Err(Stop::not_done(postgres));
    }
    Err(Stop::not_done("unsupported database URL (expected sqlite:// or postgres://)"))
}

/// The folder `file` is in (`.` for a bare name). It must exist: nothing here creates folders, so a mistyped
/// path is an error rather than a new directory.
fn folder_of(file: &Path) -> Result<PathBuf, Stop> {
    if file.file_name().is_none() {
        return Err(Stop::not_done(format!("{} does not name a file", file.display())));
    }
    let folder = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(Stop::not_done(format!(
            "cannot write {}: the folder {} does not exist",
            file.display(),
            folder.display()
        )));
    }
    Ok(folder)
}

/// `<file>.<tag>` in the same folder (so a rename to `file` stays on one file system). A bare name gets `./`
/// in front, so that no name is ever read as a `file:` URI.
fn sibling(file: &Path, tag: &str) -> Result<PathBuf, Stop> {
    let folder = folder_of(file)?;
    Ok(folder.join(format!("{}.{tag}", file_name(file))))
}

/// A temporary file's tag: the process id and random bits, so that neither a container's pid (often the same on
/// every run) nor a file a killed run left behind collides with this run's.
fn temporary_tag() -> String {
    let mut bytes = [0u8; 4];
    let random = match rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes) {
        Ok(()) => crate::hex::encode(&bytes),
        Err(_) => format!(
            "{:08x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.subsec_nanos())
        ),
    };
    format!("{}-{random}", std::process::id())
}

fn file_name(file: &Path) -> String {
    file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

fn utf8(path: &Path) -> Result<&str, Stop> {
    path.to_str().ok_or_else(|| Stop::not_done(format!("{} is not a UTF-8 path", path.display())))
}

/// Whether `file` (which need not exist) is `database` or one of SQLite's files beside it: writing a backup
/// there, or restoring from there, would destroy the database.
fn is_part_of(database: &Path, file: &Path) -> bool {
    let Ok(database) = std::fs::canonicalize(database) else { return false };
    let resolved = std::fs::canonicalize(file).or_else(|_| {
        let folder = file.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::canonicalize(folder).map(|folder| folder.join(file.file_name().unwrap_or_default()))
    });
    let Ok(resolved) = resolved else { return false };
    ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        resolved == Path::new(&name)
    })
}

fn refuse_existing(file: &Path, force: bool) -> Result<(), Stop> {
    if !force && std::fs::symlink_metadata(file).is_ok() {
        return Err(Stop::not_done(format!("{} already exists (--force replaces it)", file.display())));
    }
    Ok(())
}

fn file_size(file: &Path) -> u64 {
    std::fs::metadata(file).map(|metadata| metadata.len()).unwrap_or(0)
}

/// Deletes a temporary copy and any journal SQLite left beside it; one that cannot be deleted is named, so
/// that it can be deleted by hand.
fn discard(file: &Path) {
    let side = ["-wal", "-shm", "-journal"].map(|suffix| PathBuf::from(format!("{}{suffix}", file.display())));
    for path in std::iter::once(file.to_path_buf()).chain(side) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => eprintln!("warning: cannot delete the temporary copy {}: {error}", path.display()),
        }
    }
}

/// Makes the folder's entries (a rename into it) durable.
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_gets_a_folder_so_it_is_never_a_uri() {
        assert_eq!(sibling(Path::new("file:x.db"), "partial-1").unwrap(), Path::new("./file:x.db.partial-1"));
        assert_eq!(sibling(Path::new("/tmp/x.db"), "t").unwrap(), Path::new("/tmp/x.db.t"));
    }

    #[test]
    fn the_database_and_its_side_files_are_part_of_it_and_a_neighbour_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("ledger.db");
        std::fs::write(&database, b"").unwrap();
        assert!(is_part_of(&database, &database));
        assert!(is_part_of(&database, &dir.path().join("ledger.db-wal")));
        assert!(!is_part_of(&database, &dir.path().join("ledger.db.backup")));
        assert!(!is_part_of(&dir.path().join("missing.db"), &dir.path().join("missing.db")));
    }

    #[test]
    fn postgres_and_unknown_urls_are_refused_with_exit_2() {
        let stop = sqlite_path("postgres://u@h/db", POSTGRES_BACKUP).unwrap_err();
        assert_eq!(stop.code, EXIT_NOT_CHECKED);
        assert!(stop.message.contains("pg_dump -Fc"));
        assert_eq!(sqlite_path("sqlite://./a.db", "").unwrap(), Path::new("./a.db"));
        assert_eq!(sqlite_path("mysql://x", "").unwrap_err().code, EXIT_NOT_CHECKED);
    }
}
