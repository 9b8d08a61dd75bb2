//! `payledger statement import` as an operator runs it: the real binary, beside a running server on the same
//! database, with `--json`; a bad file (exit 1, the file, the line and the reason); and a run that cannot
//! start (exit 2).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::statements::{Credit, PAYER, one_c};
use crate::common::{self, Backend, TestDb, TestServer, on_both_backends};

/// Runs `payledger statement import ARGS…` against `database_url`, off the async threads.
async fn import(database_url: &str, args: &[&str]) -> Output {
    let database_url = database_url.to_owned();
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_payledger"))
            .args(["statement", "import"])
            .args(&args)
            .env("DATABASE_URL", database_url)
            .env("PAYLEDGER_LOG", "warn")
            .output()
            .expect("run payledger statement import")
    })
    .await
    .expect("join")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the statement");
    path.display().to_string()
}

async fn the_command_line_imports_beside_a_running_server(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = TestServer::start(common::settings(&db)).await;
    let mut notice = crate::common::notice(uuid::Uuid::new_v4(), "1500.00".into(), PAYER);
    notice["document_number"] = "PAY-1".into();
    assert_eq!(server.post_webhook(&notice).await.0, 200);
    let statement = one_c(&[
        Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER },
        Credit { number: "PAY-2", date: "28.04.2024", kopecks: 70_000, payer_inn: PAYER },
    ]);
    let file = write(db.dir.path(), "april.txt", &statement);

    let output = import(&db.url, &[&file, "--json"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stdout {stdout} stderr {}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!((summary["lines_read"].as_u64(), summary["matched"].as_u64()), (Some(2), Some(1)), "{summary}");
    assert_eq!(summary["discrepancies"]["missing_notice"], 1, "{summary}");
    assert_eq!(summary["file_name"], "april.txt");

    // The server sees the import the command made, and the same file again changes nothing.
    let (status, list) = server.get("/api/v1/statements/").await;
    assert_eq!((status, list["results"][0]["id"].clone()), (200, summary["id"].clone()), "{list}");
    let again = import(&db.url, &[&file]).await;
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("imported before"), "{again:?}");
    server.stop().await;
    db.assert_verified().await;
}

on_both_backends!(the_command_line_imports_beside_a_running_server);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_file_exits_1_naming_the_file_and_line_and_stores_nothing() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    db.store().await.migrate().await.expect("a migrated database");
    let good = one_c(&[Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER }]);
    let bad = good.replace("Сумма=1500.00", "Сумма=1.505");
    let line = bad.lines().position(|line| line == "Сумма=1.505").expect("amount line") + 1;
    let file = write(db.dir.path(), "bad.txt", &bad);
    let output = import(&db.url, &[&file]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{file}: line {line}: ")) && stderr.contains("1.505"), "{stderr}");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM statement_imports").await, 0, "nothing stored");

    let missing = import(&db.url, &[&format!("{file}.absent")]).await;
    assert_eq!(missing.status.code(), Some(2), "an unreadable file: the import could not run");
    let csv = import(&db.url, &[&file, "--format", "csv"]).await;
    assert_eq!(csv.status.code(), Some(2), "CSV without a mapping: {}", String::from_utf8_lossy(&csv.stderr));
    // An error of the file as a whole names no line.
    let large = import(&db.url, &[&file, "--max-file-bytes", "10"]).await;
    let stderr = String::from_utf8_lossy(&large.stderr);
    assert_eq!(large.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{file}: the file has ")) && !stderr.contains("line 0"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_line_never_creates_or_migrates_a_database() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let good = one_c(&[Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER }]);
    let file = write(db.dir.path(), "good.txt", &good);

    let absent = db.dir.path().join("typo").join("absent.db");
    let output = import(&format!("sqlite://{}", absent.display()), &[&file]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("no database at {}", absent.display())), "{stderr}");
    assert!(!absent.exists() && !absent.parent().is_some_and(Path::exists), "nothing created");

    // An empty file is a database with no migrations applied: refused, not migrated.
    let empty = db.dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("an empty database file");
    let output = import(&format!("sqlite://{}", empty.display()), &[&file]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the database needs `payledger migrate` (pending: 1_"), "{stderr}");
    assert_eq!(std::fs::metadata(&empty).map(|meta| meta.len()).ok(), Some(0), "not migrated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mapping_that_could_not_be_saved_is_refused_before_anything_is_imported() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    db.store().await.migrate().await.expect("a migrated database");
    let good = one_c(&[Credit { number: "PAY-1", date: "28.04.2024", kopecks: 150_000, payer_inn: PAYER }]);
    let file = write(db.dir.path(), "good.txt", &good);
    let account = "40702810900000000001";
    let cases: [(&[&str], &str); 3] = [
        (&["--account", account, "--csv-columns", "booking_date=Дата", "--save-mapping"], "--format csv"),
        (&["--format", "csv", "--account", account, "--csv-columns", "nonsense", "--save-mapping"], "--csv-columns"),
        (&["--format", "csv", "--account", account, "--csv-columns", &"a".repeat(4001), "--save-mapping"], "4000"),
    ];
    for (args, named) in cases {
        let output = import(&db.url, &[&[file.as_str()][..], args].concat()).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    assert_eq!(db.scalar("SELECT COUNT(*) FROM statement_imports").await, 0, "nothing imported");
    assert_eq!(db.scalar("SELECT COUNT(*) FROM statement_csv_mappings").await, 0, "nothing saved");
}
