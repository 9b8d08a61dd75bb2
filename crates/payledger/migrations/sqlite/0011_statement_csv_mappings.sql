-- The CSV column mapping an operator saved for one bank account (`payledger statement import --save-mapping`),
-- so the next CSV import of that account needs no `--csv-columns`. Not money: written outside the ledger engine.
CREATE TABLE statement_csv_mappings (
    account TEXT PRIMARY KEY NOT NULL CHECK (length(account) = 20),
    spec TEXT NOT NULL CHECK (length(spec) BETWEEN 1 AND 4000),
    updated_at TEXT NOT NULL
);
