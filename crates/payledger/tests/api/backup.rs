//! `payledger backup` and `payledger restore`, run as the real binary against the real server: a backup taken
//! while the server writes holds every acknowledged write and verifies, and restores into a database that
//! answers those writes as already done; restore refuses a backup that does not verify, one of a newer build,
//! a database a server has open (idle or writing) and an existing database without `--force`, and changes
//! nothing when it refuses; backup refuses an existing file and a bad path; both refuse PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::OpenFlags;
use serde_json::json;
use uuid::Uuid;

use crate::common::{self, Backend, TestDb, TestServer, notice, rubles, settings};

const INNS: [&str; 2] = ["7707083893", "7736207543"];
/// Clients writing at once while the backup runs.
const WRITERS: usize = 8;
/// Writes acknowledged before the backup starts.
const WRITES_BEFORE: usize = 2000;

/// What one run of the binary showed: exit status, standard output, standard error.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

async fn payledger(args: &[&str], database_url: &str) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_payledger"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("PAYLEDGER_LOG", "warn")
        .env_remove("PAYLEDGER_BIND")
        .output()
        .await
        .expect("run payledger");
    Run {
        code: output.status.code(),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = if path.is_file() { std::fs::read(&path).expect("read") } else { Vec::new() };
            (path.file_name().expect("name").to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// The applied notices' operation ids (simple hex) and the history line ids in a SQLite file, read-only.
fn stored_writes(file: &Path) -> (HashSet<String>, HashSet<i64>) {
    let connection = rusqlite::Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut notices = connection
        .prepare("SELECT lower(hex(operation_id)) FROM bank_payments WHERE status = 'applied'")
        .expect("notices");
    let notices = notices.query_map([], |row| row.get(0)).expect("query").map(|id| id.expect("id")).collect();
    let mut lines = connection.prepare("SELECT id FROM account_activity").expect("lines");
    let lines = lines.query_map([], |row| row.get(0)).expect("query").map(|id| id.expect("id")).collect();
    (notices, lines)
}

/// One acknowledged write and when its answer arrived.
#[derive(Clone)]
struct Ack {
    at: Instant,
    write: Write,
}

#[derive(Clone)]
enum Write {
    Notice { id: Uuid, body: String },
    Deposit { key: String, body: String, line: i64 },
}

/// Posts a notice and a deposit in turn until `stop`, recording each acknowledgement.
async fn write_until(
    server: (reqwest::Client, String),
    worker: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) {
    let (client, base) = server;
    for i in 0_i64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = Uuid::new_v4();
        let body = notice(id, json!(rubles(100 + i)), INNS[worker % INNS.len()]).to_string();
        let response = client
            .post(format!("{base}/api/webhook/bank/"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("webhook");
        assert_eq!(response.status(), 200);
        acks.lock().expect("acks").push(Ack { at: Instant::now(), write: Write::Notice { id, body } });
        let key = format!("backup-{worker}-{i}");
        let body = json!({"user_id": worker + 1, "amount": "1.00"}).to_string();
        let response = client
            .post(format!("{base}/api/add_funds/"))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", &key)
            .body(body.clone())
            .send()
            .await
            .expect("deposit");
        assert_eq!(response.status(), 201);
        let line = response.json::<serde_json::Value>().await.expect("json")["id"].as_i64().expect("line id");
        acks.lock().expect("acks").push(Ack { at: Instant::now(), write: Write::Deposit { key, body, line } });
    }
}

/// Asserts that every write in `acks` is in the SQLite file.
fn assert_holds(file: &Path, acks: &[Ack]) {
    let (notices, lines) = stored_writes(file);
    for ack in acks {
        match &ack.write {
            Write::Notice { id, .. } => assert!(notices.contains(&id.simple().to_string()), "notice {id} in {file:?}"),
            Write::Deposit { line, key, .. } => assert!(lines.contains(line), "deposit {key} in {file:?}"),
        }
    }
}

/// The backup is taken while eight clients keep writing: it verifies, it holds every write acknowledged before
/// it began, and restored into a new path it is a database that verifies, holds them too, and answers them
/// again as already done (a notice "already processed", a deposit replayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_write_load_holds_every_acknowledged_write_and_restores() {
    let _heavy = common::load::heavy().await;
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start(settings(&db)).await;
    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<Ack>::new())));
    let mut writers = tokio::task::JoinSet::new();
    for worker in 0..WRITERS {
        let target = (server.client.clone(), server.url(""));
        writers.spawn(write_until(target, worker, stop.clone(), acks.clone()));
    }
    while acks.lock().expect("acks").len() < WRITES_BEFORE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let saved = tempfile::tempdir().expect("temp dir");
    let backup = saved.path().join("backup.db");
    let began = Instant::now();
    let run = payledger(&["backup", "--to", text(&backup)], &db.url).await;
    let ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    while let Some(joined) = writers.join_next().await {
        joined.expect("writer");
    }
    server.stop().await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    assert!(run.out.contains("backup written to") && run.out.contains("OK: every balance"), "{}", run.out);
    let acks = acks.lock().expect("acks").clone();
    let during = acks.iter().filter(|ack| ack.at > began && ack.at < ended).count();
    assert!(during > 0, "the server was writing while the backup ran");
    let before: Vec<Ack> = acks.into_iter().filter(|ack| ack.at < began).collect();

    let verified = payledger(&["verify"], &url(&backup)).await;
    assert_eq!(verified.code, Some(0), "{}{}", verified.out, verified.err);
    assert_holds(&backup, &before);

    let restored_dir = tempfile::tempdir().expect("temp dir");
    let restored = restored_dir.path().join("restored.db");
    let run = payledger(&["restore", "--from", text(&backup)], &url(&restored)).await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    assert!(run.out.contains("there was no database at"), "{}", run.out);
    let verified = payledger(&["verify"], &url(&restored)).await;
    assert_eq!(verified.code, Some(0), "{}{}", verified.out, verified.err);
    assert_holds(&restored, &before);

    // The restored database serves, and the writes acknowledged before the backup are done there, once.
    let mut config = settings(&db);
    (config.database_url, config.data_dir) = (url(&restored), restored_dir.path().to_path_buf());
    let server = TestServer::start(config).await;
    for ack in before.iter().take(20) {
        match &ack.write {
            Write::Notice { body, .. } => {
                let (status, answer) = server.post_webhook_raw(body.clone()).await;
                assert_eq!((status, answer["message"].as_str()), (200, Some("Payment already processed")));
            }
            Write::Deposit { key, body, .. } => {
                let answer = server.post("/api/add_funds/", body.clone(), Some(key)).await;
                assert_eq!((answer.status, answer.replayed), (201, true), "{}", answer.text);
            }
        }
    }
    server.stop().await;
}

/// A backup whose balance was tampered with does not verify: restore refuses it (exit 1, naming the file) and
/// changes nothing, not a byte of the database it would replace; nor does it for a backup of a newer build.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_refuses_a_backup_that_does_not_verify_and_changes_nothing() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start(settings(&db)).await;
    for kopecks in [10_000, 20_000, 30_000] {
        let (status, _) = server.post_webhook(&notice(Uuid::new_v4(), json!(rubles(kopecks)), INNS[0])).await;
        assert_eq!(status, 200);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let backup = dir.path().join("backup.db");
    assert_eq!(payledger(&["backup", "--to", text(&backup)], &db.url).await.code, Some(0));
    server.stop().await;
    // The database to replace: a restored one, which no process has open, so its bytes hold still.
    let target = url(&dir.path().join("target.db"));
    assert_eq!(payledger(&["restore", "--from", text(&backup)], &target).await.code, Some(0));

    let tampered = dir.path().join("tampered.db");
    std::fs::copy(&backup, &tampered).expect("copy");
    let connection = rusqlite::Connection::open(&tampered).expect("open");
    let changed = connection
        .execute(
            "UPDATE accounts SET balance = balance + 1 WHERE kind = 'organization' AND external_key = ?1",
            [INNS[0]],
        )
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(connection);
    let before = files(dir.path());
    let run = payledger(&["restore", "--from", text(&tampered), "--force"], &target).await;
    assert_eq!(run.code, Some(1), "{}{}", run.out, run.err);
    assert!(run.err.contains(text(&tampered)) && run.err.contains("does not verify"), "{}", run.err);
    assert!(run.out.contains("PROBLEM"), "verify's report names the problem: {}", run.out);
    assert!(files(dir.path()) == before, "nothing in the folder changed, nothing was added");

    let newer = dir.path().join("newer.db");
    std::fs::copy(&backup, &newer).expect("copy");
    let connection = rusqlite::Connection::open(&newer).expect("open");
    connection
        .execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             SELECT 9999, 'from a newer build', success, checksum, execution_time FROM _sqlx_migrations LIMIT 1",
            [],
        )
        .expect("a newer migration");
    drop(connection);
    let before = files(dir.path());
    let run = payledger(&["restore", "--from", text(&newer), "--force"], &target).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains("newer build") && run.err.contains("9999"), "{}", run.err);
    assert!(files(dir.path()) == before, "nothing in the folder changed, nothing was added");
}

/// While a server has the database open, idle or writing, restore refuses (exit 2) and says to stop it: the
/// server keeps serving and its database keeps every write. Without `--force` an existing database is refused
/// before anything is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_refuses_while_a_server_has_the_database_open() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let server = TestServer::start(settings(&db)).await;
    let (status, _) = server.post_webhook(&notice(Uuid::new_v4(), json!("100.00"), INNS[0])).await;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let backup = dir.path().join("backup.db");
    assert_eq!(payledger(&["backup", "--to", text(&backup)], &db.url).await.code, Some(0));
    let database = db.dir.path().join("payledger.db");

    // Idle: between its transactions a server holds no write lock, but it has the file open.
    let run = payledger(&["restore", "--from", text(&backup), "--force"], &db.url).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains(&format!("{} is in use", database.display())), "{}", run.err);
    assert!(run.err.contains("Stop every `payledger serve`"), "{}", run.err);

    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<Ack>::new())));
    let writer = tokio::spawn(write_until((server.client.clone(), server.url("")), 0, stop.clone(), acks.clone()));
    while acks.lock().expect("acks").len() < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = payledger(&["restore", "--from", text(&backup), "--force"], &db.url).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains("is in use"), "{}", run.err);
    let run = payledger(&["restore", "--from", text(&backup)], &db.url).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains("already exists") && run.err.contains("--force"), "{}", run.err);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    let (status, _) = server.post_webhook(&notice(Uuid::new_v4(), json!("1.00"), INNS[1])).await;
    assert_eq!(status, 200, "the server still serves");
    let leftovers: Vec<String> = files(db.dir.path())
        .into_keys()
        .filter(|name| name.contains("before-restore") || name.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.stop().await;
    db.assert_verified().await;
    let acks = acks.lock().expect("acks").clone();
    let notices = acks.iter().filter(|ack| matches!(ack.write, Write::Notice { .. })).count() as i64;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM bank_payments").await, notices + 2);
}

/// With `--force`, the database restore replaces is kept beside it, whole (a WAL the last process left is
/// folded into it first), and says so; a non-empty write-ahead log left beside a missing database is refused
/// rather than replayed into the restored one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_with_force_keeps_the_database_it_replaces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = url(&dir.path().join("source.db"));
    assert_eq!(payledger(&["seed", "--count", "2"], &source).await.code, Some(0));
    let backup = dir.path().join("backup.db");
    assert_eq!(payledger(&["backup", "--to", text(&backup)], &source).await.code, Some(0));
    let target = dir.path().join("target.db");
    assert_eq!(payledger(&["migrate"], &url(&target)).await.code, Some(0));

    let run = payledger(&["restore", "--from", text(&backup), "--force"], &url(&target)).await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    let kept: Vec<PathBuf> = files(dir.path())
        .into_keys()
        .filter(|name| name.starts_with("target.db.before-restore-"))
        .map(|name| dir.path().join(name))
        .collect();
    assert_eq!(kept.len(), 1, "{:?}", files(dir.path()).keys());
    assert!(run.out.contains(&format!("kept as {}", kept[0].display())), "{}", run.out);
    let check = payledger(&["migrate", "--check"], &url(&kept[0])).await;
    assert_eq!((check.code, check.out.trim()), (Some(0), "migrations current"), "the kept database is whole");
    assert_eq!(payledger(&["verify"], &url(&kept[0])).await.code, Some(0));
    let organizations = |file: &Path| {
        let connection = rusqlite::Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
        connection.query_row("SELECT COUNT(*) FROM organizations", [], |row| row.get::<_, i64>(0)).expect("count")
    };
    assert_eq!((organizations(&target), organizations(&kept[0])), (2, 0));
    assert_eq!(payledger(&["verify"], &url(&target)).await.code, Some(0));

    let missing = dir.path().join("missing.db");
    std::fs::write(dir.path().join("missing.db-wal"), b"frames of a database that is gone").expect("write");
    let run = payledger(&["restore", "--from", text(&backup)], &url(&missing)).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains("missing.db-wal is not empty"), "{}", run.err);
    assert!(!missing.exists());
}

/// Backup refuses to replace a file without `--force` (exit 2, the file untouched), replaces it with
/// `--force`, and names the path it cannot write, the missing database, and a `--to` that is the database
/// itself or its write-ahead log. Off a terminal it draws no progress bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_refuses_an_existing_file_and_names_a_bad_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.db");
    assert_eq!(payledger(&["migrate"], &url(&source)).await.code, Some(0));
    let existing = dir.path().join("existing.db");
    std::fs::write(&existing, b"keep me").expect("write");

    let run = payledger(&["backup", "--to", text(&existing)], &url(&source)).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains(&format!("{} already exists (--force replaces it)", existing.display())), "{}", run.err);
    assert_eq!(std::fs::read(&existing).expect("read"), b"keep me");

    let run = payledger(&["backup", "--to", text(&existing), "--force"], &url(&source)).await;
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    assert!(!run.err.contains('\u{1b}') && !run.err.contains('\r'), "no progress bar off a terminal: {:?}", run.err);
    assert_eq!(payledger(&["verify"], &url(&existing)).await.code, Some(0));

    let nowhere = dir.path().join("no/such/folder/backup.db");
    let run = payledger(&["backup", "--to", text(&nowhere)], &url(&source)).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains(text(&nowhere)) && run.err.contains("does not exist"), "{}", run.err);

    for itself in [source.clone(), dir.path().join("source.db-wal")] {
        let run = payledger(&["backup", "--to", text(&itself), "--force"], &url(&source)).await;
        assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
        assert!(run.err.contains("is the database itself or one of its files"), "{}", run.err);
    }

    let absent = dir.path().join("absent.db");
    let run = payledger(&["backup", "--to", text(&dir.path().join("x.db"))], &url(&absent)).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains(&format!("no database at {}", absent.display())), "{}", run.err);
    assert!(!absent.exists(), "nothing was created");
    let partial: Vec<String> = files(dir.path()).into_keys().filter(|name| name.contains(".partial-")).collect();
    assert!(partial.is_empty(), "{partial:?}");
}

/// On PostgreSQL both commands refuse (exit 2) and name what to use instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore_refuse_on_postgresql_and_name_the_tools() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let dump = db.dir.path().join("ledger.dump");
    let run = payledger(&["backup", "--to", text(&dump)], &db.url).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains("pg_dump -Fc") && run.err.contains("docs/DEPLOY.md"), "{}", run.err);
    assert!(!dump.exists());
    let run = payledger(&["restore", "--from", text(&dump), "--force"], &db.url).await;
    assert_eq!(run.code, Some(2), "{}{}", run.out, run.err);
    assert!(run.err.contains("pg_restore") && run.err.contains("payledger verify"), "{}", run.err);
}
