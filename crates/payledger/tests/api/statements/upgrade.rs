//! Upgrading a database that already holds reconciliation rows: migrations 0012 (late notices say how they
//! repeat their payment) and 0013 (the lines' keys lead with a date; SQLite rebuilds the table) keep every
//! line with its id, and the matches and discrepancies that name them, and verify stays clean. On SQLite, 0014
//! then writes the CHECK constraints' lists as comparisons (no temporary B-tree per checked row).

use sqlx::{Connection, Row};

use crate::common::{Backend, TestDb, on_both_backends};

on_both_backends!(upgrading_through_the_line_key_migrations_keeps_every_line_and_what_names_it);

/// The last migration before the late-notice and line-key changes.
const BEFORE: i64 = 11;

/// An import of two credit lines on 28 April: line 1 matched to a waiting (async-mode) notice, line 2 with an
/// open `missing_notice` discrepancy. `{blob}` and `{time}` stand for the backend's literals.
const ROWS: [&str; 6] = [
    "INSERT INTO statement_imports (id, sha256, format, state, line_count, started_at, completed_at)
     VALUES (1, {blob}, '1c', 'complete', 2, {time}, {time})",
    "INSERT INTO statement_accounts (id, import_id, account, currency, period_start, period_end, opening, credits,
                                     debits, closing, credit_lines, debit_lines)
     VALUES (1, 1, '40702810900000000001', 'RUB', '2024-04-28', '2024-04-28', 0, 3000, 0, 3000, 2, 0)",
    "INSERT INTO statement_lines (id, import_id, account, fingerprint, occurrence, direction, amount, currency,
                                  booking_date, document_number, document_date, payer_inn, source_line, raw)
     VALUES (1, 1, '40702810900000000001', {blob}, 1, 'credit', 1000, 'RUB', '2024-04-28', 'PAY-1', '2024-04-28',
             '7707083893', 10, '{}')",
    "INSERT INTO statement_lines (id, import_id, account, fingerprint, occurrence, direction, amount, currency,
                                  booking_date, document_number, document_date, payer_inn, source_line, raw)
     VALUES (2, 1, '40702810900000000001', {blob}, 2, 'credit', 2000, 'RUB', '2024-04-28', 'PAY-2', '2024-04-28',
             '7707083893', 20, '{}')",
    "INSERT INTO bank_payments (id, operation_id, amount, currency, payer_inn, document_number, document_date, status,
                                received_at)
     VALUES (1, {uuid}, 1000, 'RUB', '7707083893', 'PAY-1', {time}, 'received', {time})",
    "INSERT INTO statement_matches (id, line_id, payment_id, rule, matched_at) VALUES (1, 1, 1, 'document', {time})",
];
const DISCREPANCY: &str = "INSERT INTO statement_discrepancies (id, kind, state, line_id, account, day, amount,
    currency, created_at) VALUES (1, 'missing_notice', 'open', 2, '40702810900000000001', '2024-04-28', 2000, 'RUB',
    {time})";
/// What the upgraded rows must read back as.
const READ_BACK: &str = "SELECT (SELECT COUNT(*) FROM statement_lines WHERE id IN (1, 2))
    + (SELECT COUNT(*) FROM statement_matches WHERE line_id = 1 AND payment_id = 1)
    + (SELECT COUNT(*) FROM statement_discrepancies WHERE line_id = 2 AND state = 'open')";
/// A line with line 1's identity again: the new unique key must still refuse it.
const SAME_LINE: &str = "INSERT INTO statement_lines (import_id, account, fingerprint, occurrence, direction, amount,
    currency, booking_date, document_number, document_date, payer_inn, source_line, raw)
    VALUES (1, '40702810900000000001', {blob}, 1, 'credit', 1000, 'RUB', '2024-04-28', 'PAY-1', '2024-04-28',
            '7707083893', 10, '{}')
    ON CONFLICT (account, booking_date, fingerprint, occurrence) DO NOTHING";

fn literal(sql: &str, backend: Backend) -> String {
    let (blob, time, uuid) = match backend {
        Backend::Sqlite => (
            "x'0101010101010101010101010101010101010101010101010101010101010101'",
            "'2024-04-27T21:00:00.000000Z'",
            "x'0000000000000000000000000000000a'",
        ),
        Backend::Postgres => (
            "'\\x0101010101010101010101010101010101010101010101010101010101010101'::bytea",
            "'2024-04-27T21:00:00Z'",
            "'00000000-0000-0000-0000-00000000000a'",
        ),
    };
    // Each of the two lines needs its own fingerprint; the second line's ends in 02.
    sql.replace("{blob}, 2, 'credit'", &format!("{}, 2, 'credit'", blob.replacen("0101'", "0102'", 1)))
        .replace("{blob}", blob)
        .replace("{time}", time)
        .replace("{uuid}", uuid)
}

/// Migrates `$connection` to [`BEFORE`] with `$migrator`, stores `$rows`, migrates to the last, and reads back
/// (the rows still named, the rows a repeat of line 1 inserted). A macro: the two backends' connections share
/// no trait that runs migrations, raw SQL and scalar queries alike.
macro_rules! upgrade {
    ($connection:expr, $migrator:expr, $rows:expr, $same_line:expr) => {{
        let connection = $connection;
        let migrator = $migrator;
        migrator.run_to(BEFORE, &mut *connection).await.expect("migrate to 0011");
        for sql in $rows {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut *connection).await.expect(sql);
        }
        migrator.run(&mut *connection).await.expect("migrate to the last");
        let read_back: i64 = sqlx::query_scalar(READ_BACK).fetch_one(&mut *connection).await.expect("read");
        let inserted = sqlx::raw_sql(sqlx::AssertSqlSafe($same_line)).execute(&mut *connection).await.expect("insert");
        (read_back, inserted.rows_affected())
    }};
}

async fn upgrading_through_the_line_key_migrations_keeps_every_line_and_what_names_it(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let rows: Vec<String> = ROWS.iter().chain([&DISCREPANCY]).map(|sql| literal(sql, backend)).collect();
    let same_line = literal(SAME_LINE, backend);
    let (read_back, refused) = match backend {
        Backend::Sqlite => {
            let options = db.url.parse::<sqlx::sqlite::SqliteConnectOptions>().expect("url");
            let options = options.create_if_missing(true).foreign_keys(true);
            let mut connection = sqlx::SqliteConnection::connect_with(&options).await.expect("connect");
            let upgraded = upgrade!(&mut connection, sqlx::migrate!("./migrations/sqlite"), &rows, same_line);
            let foreign_keys: i64 =
                sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut connection).await.expect("pragma");
            assert_eq!(foreign_keys, 1, "the rebuild turns foreign keys back on");
            upgraded
        }
        Backend::Postgres => {
            let mut connection = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            upgrade!(&mut connection, sqlx::migrate!("./migrations/postgres"), &rows, same_line)
        }
    };
    assert_eq!(read_back, 4, "both lines, the match and the discrepancy are kept");
    assert_eq!(refused, 0, "the identity is still unique");
    db.assert_verified().await;
}

/// After 0014 no SQLite table's CHECK builds a temporary B-tree for an IN list (what each insert paid for it
/// before), the rewritten constraints still take the values on their list (and NULL) and refuse any other, and
/// the connection that ran the migrations knows the new text: a later migration's ADD COLUMN on it keeps
/// every table whole.
#[tokio::test]
async fn sqlite_checks_build_no_temporary_table_per_row_and_still_refuse_a_value_off_their_list() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else { return };
    let options = db.url.parse::<sqlx::sqlite::SqliteConnectOptions>().expect("url").create_if_missing(true);
    // One connection migrates and goes on, as the store's one-connection write pool does.
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.expect("connect");
    sqlx::migrate!("./migrations/sqlite").run(&mut connection).await.expect("migrate");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut connection)
    .await
    .expect("tables");
    assert!(tables.iter().any(|table| table == "statement_discrepancies"), "{tables:?}");
    for table in &tables {
        // EXPLAIN compiles the insert with every CHECK and runs nothing, so NOT NULL columns need no values.
        let plan = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN INSERT INTO \"{table}\" DEFAULT VALUES")))
            .fetch_all(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("explain an insert into {table}: {error}"));
        let opcodes: Vec<String> = plan.iter().map(|row| row.get("opcode")).collect();
        assert!(opcodes.iter().any(|op| op == "Insert" || op == "IdxInsert"), "{table}: {opcodes:?}");
        assert!(!opcodes.iter().any(|op| op == "OpenEphemeral"), "an insert into {table} builds a temporary B-tree");
    }
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut connection).await.expect("pragma");
    let discrepancy = |kind: &str, resolution: &str| {
        format!(
            "INSERT INTO statement_discrepancies (kind, state, payment_id, day, amount, currency, created_at, resolution)
             VALUES ('{kind}', 'open', 1, '2024-04-28', 100, 'RUB', '2024-04-28T00:00:00Z', {resolution})"
        )
    };
    for (kind, resolution) in [("unknown_payer", "NULL"), ("lost", "NULL"), ("ambiguous", "'lost'")] {
        let inserted = sqlx::query(sqlx::AssertSqlSafe(discrepancy(kind, resolution))).execute(&mut connection).await;
        match (kind, resolution) {
            ("unknown_payer", "NULL") => assert!(inserted.is_ok(), "{inserted:?}"),
            _ => assert!(
                inserted.as_ref().is_err_and(|error| error.to_string().contains("CHECK constraint failed")),
                "{kind}, {resolution}: {inserted:?}"
            ),
        }
    }
    for table in ["accounts", "jobs", "statement_lines", "bank_payments", "payouts"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE {table} ADD COLUMN added_later TEXT")))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("add a column to {table}: {error}"));
        let last: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid DESC"
        )))
        .fetch_one(&mut connection)
        .await
        .expect("columns");
        assert_eq!(last, "added_later", "{table}");
    }
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut connection).await.expect("check");
    assert_eq!(check, "ok");
}
