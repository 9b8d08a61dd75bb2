//! `payledger statement import FILE`: imports a bank statement through the reconciliation service with a
//! ledger engine of its own (so it works beside a running server, on SQLite and on PostgreSQL), with a
//! progress bar on a terminal, and reports to a person (the default) or as one JSON object (`--json`).
//! Exit status: 0 imported (or imported before), 1 the file is bad (`FILE: line N: reason`), 2 the import
//! could not run. `payledger statement generate` (hidden) writes made-up statements for tests and benchmarks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::ProgressBar;
use payledger_core::statement::read::CsvMapping;
use payledger_core::statement::{AccountNumber, StatementFormat};

use crate::engine::LedgerEngine;
use crate::statement::{
    FormatChoice, ImportOptions, ImportPhase, ImportProgress, ImportSummary, ReconcileError, ReconcileSettings,
    Reconciliation,
};
use crate::store::Store;

/// The exit status when the file is not a valid statement: nothing was stored.
pub const EXIT_BAD_FILE: u8 = 1;
/// The exit status when the import could not run (no database, an unreadable file, the ledger away).
pub const EXIT_NOT_RUN: u8 = 2;

const PROGRESS_TEMPLATE: &str = "{prefix:10} {elapsed_precise} [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec} {msg}";

/// `payledger statement …`.
#[derive(Debug, Clone, Subcommand)]
pub enum StatementCommand {
    /// Import a bank statement (1C ClientBankExchange, camt.053 or CSV), match its lines with the bank's
    /// notices and report the discrepancies. Importing the same file again changes nothing.
    Import(StatementImportArgs),
    /// Development: write a made-up statement and the webhook notices of its payments (some lost on purpose).
    #[command(hide = true)]
    Generate(StatementGenerateArgs),
}

/// The statement formats `--format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatementFormatArg {
    /// Detect the format from the file's first bytes.
    Auto,
    /// 1C ClientBankExchange (`1CClientBankExchange` … `КонецФайла`), any of its encodings.
    #[value(name = "1c")]
    OneC,
    /// ISO 20022 camt.053 (001.02 to 001.08).
    Camt053,
    /// CSV with a column mapping (`--csv-columns`, or the one saved for `--account`).
    Csv,
}

/// Settings of `payledger statement import`.
#[derive(Debug, Clone, Args)]
pub struct StatementImportArgs {
    /// The statement file.
    pub file: PathBuf,
    /// The file's format.
    #[arg(long, value_enum, default_value_t = StatementFormatArg::Auto)]
    pub format: StatementFormatArg,
    /// Import only this 20-digit account's section (an error if the file has none).
    #[arg(long)]
    pub account: Option<String>,
    /// The CSV column mapping, e.g. `booking_date=Дата,amount=Сумма,direction=Тип,…` (see README).
    #[arg(long, value_name = "SPEC")]
    pub csv_columns: Option<String>,
    /// Save `--csv-columns` for `--account`, so later `--format csv` imports of that account can omit it.
    #[arg(long, requires_all = ["csv_columns", "account"])]
    pub save_mapping: bool,
    /// Print the import's summary as one JSON object instead of the report for people.
    #[arg(long)]
    pub json: bool,
    /// Days after a payment's document date within which its statement line may be booked; past them a
    /// notice with no line is a discrepancy.
    #[arg(long, env = "PAYLEDGER_STATEMENT_DATE_TOLERANCE_DAYS", default_value_t = 3)]
    pub date_tolerance_days: u32,
    /// The largest statement file accepted, in bytes.
    #[arg(long, env = "PAYLEDGER_STATEMENT_MAX_FILE_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// The most lines a statement may have.
    #[arg(long, env = "PAYLEDGER_STATEMENT_MAX_LINES", default_value_t = 5_000_000)]
    pub max_lines: u64,
}

/// The formats `payledger statement generate --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GeneratedFormatArg {
    /// 1C ClientBankExchange in Windows-1251, as banks send it.
    #[value(name = "1c")]
    OneC,
    /// 1C ClientBankExchange in UTF-8 with a byte-order mark.
    #[value(name = "1c-utf8")]
    OneCUtf8,
    /// camt.053.001.08.
    Camt053,
    /// CSV, read with the mapping printed on standard error.
    Csv,
}

/// Settings of `payledger statement generate`.
#[derive(Debug, Clone, Args)]
pub struct StatementGenerateArgs {
    /// The random seed: the same arguments write the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Business days the statement covers.
    #[arg(long, default_value_t = 5)]
    pub days: u32,
    /// Distinct payers.
    #[arg(long, default_value_t = 20)]
    pub payers: u32,
    /// Statement lines per day.
    #[arg(long, default_value_t = 100)]
    pub lines_per_day: u32,
    /// The output format.
    #[arg(long, value_enum, default_value_t = GeneratedFormatArg::OneC)]
    pub format: GeneratedFormatArg,
    /// The share of customer payments whose webhook notice is lost, a fraction from 0 to 1 with at most three
    /// decimals (`0.05`: one in twenty).
    #[arg(long, default_value = "0.05")]
    pub lost: String,
    /// The first day of the statement, `YYYY-MM-DD`.
    #[arg(long, default_value = "2024-04-22")]
    pub start: String,
    /// Our account, the statement's only section.
    #[arg(long, default_value = "40702810900000000001")]
    pub account: String,
    /// Where to write the statement.
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the notices that were not lost, one JSON body per line.
    #[arg(long)]
    pub notices: Option<PathBuf>,
}

/// Why an import ended without a summary, and so its exit status.
#[derive(Debug)]
enum Failure {
    /// The file is bad: where and why.
    BadFile(String),
    /// Anything else.
    NotRun(String),
}

/// `payledger statement import`: the exit status of the import.
pub async fn import(database_url: &str, args: &StatementImportArgs) -> ExitCode {
    match run(database_url, args).await {
        Ok((summary, unsaved)) => {
            if args.json {
                match serde_json::to_string(&summary) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("error: cannot print the summary: {error}");
                        return ExitCode::from(EXIT_NOT_RUN);
                    }
                }
            } else {
                print_human(&summary);
            }
            match unsaved {
                None => ExitCode::SUCCESS,
                // The statement is imported (and stays so); only the mapping is missing, and saying so is the
                // one thing the exit status must not hide.
                Some(error) => {
                    eprintln!("error: imported; mapping not saved: {error}");
                    ExitCode::from(EXIT_NOT_RUN)
                }
            }
        }
        Err(Failure::BadFile(message)) => {
            if args.json {
                println!("{}", serde_json::json!({ "ok": false, "error": message }));
            }
            eprintln!("{message}");
            ExitCode::from(EXIT_BAD_FILE)
        }
        Err(Failure::NotRun(message)) => {
            if args.json {
                println!("{}", serde_json::json!({ "ok": false, "error": message }));
            }
            eprintln!("error: the import could not run: {message}");
            ExitCode::from(EXIT_NOT_RUN)
        }
    }
}

/// The longest CSV column mapping saved, in characters (the `statement_csv_mappings` CHECK).
pub const MAX_MAPPING_CHARS: usize = 4000;

/// The checks of `--csv-columns` and `--save-mapping` that need no database, so a mapping that could not be
/// saved is refused before anything is imported.
fn check_mapping_args(args: &StatementImportArgs) -> Result<(), Failure> {
    if args.save_mapping && args.format != StatementFormatArg::Csv {
        return Err(Failure::NotRun("--save-mapping needs --format csv: only a CSV import reads a mapping".into()));
    }
    if let Some(spec) = &args.csv_columns {
        if spec.chars().count() > MAX_MAPPING_CHARS {
            return Err(Failure::NotRun(format!("--csv-columns: at most {MAX_MAPPING_CHARS} characters")));
        }
        CsvMapping::parse(spec).map_err(|reason| Failure::NotRun(format!("--csv-columns: {reason}")))?;
    }
    Ok(())
}

/// The import's options from the arguments: a fixed CSV format takes `--csv-columns`, or the mapping saved for
/// `--account`.
async fn options(store: &Store, args: &StatementImportArgs) -> Result<ImportOptions, Failure> {
    let usage = |message: String| Failure::NotRun(message);
    let account = args
        .account
        .as_deref()
        .map(|text| AccountNumber::parse(text).map_err(|_| usage(format!("--account {text}: must be 20 digits"))))
        .transpose()?;
    let format = match args.format {
        StatementFormatArg::Auto => FormatChoice::Auto,
        StatementFormatArg::OneC => FormatChoice::Fixed(StatementFormat::OneC),
        StatementFormatArg::Camt053 => FormatChoice::Fixed(StatementFormat::Camt053),
        StatementFormatArg::Csv => FormatChoice::Fixed(StatementFormat::Csv),
    };
    let spec =
        match (&args.csv_columns, &account) {
            (Some(spec), _) => Some(spec.clone()),
            (None, Some(account)) if args.format == StatementFormatArg::Csv => {
                Some(store.csv_mapping(account.as_str()).await.map_err(|error| usage(error.to_string()))?.ok_or_else(
                    || usage(format!("--format csv: no --csv-columns and no mapping saved for {account}")),
                )?)
            }
            (None, None) if args.format == StatementFormatArg::Csv => {
                return Err(usage("--format csv needs --csv-columns, or --account with a saved mapping".to_owned()));
            }
            _ => None,
        };
    let file_name = args.file.file_name().map(|name| name.to_string_lossy().into_owned());
    Ok(ImportOptions { format, csv: spec, account, file_name, by: Some("cli".to_owned()) })
}

/// Connects, starts a ledger engine, imports, saves the mapping if asked, and stops the engine: the summary,
/// and why the mapping was not saved if saving it failed after the import.
async fn run(database_url: &str, args: &StatementImportArgs) -> Result<(ImportSummary, Option<String>), Failure> {
    check_mapping_args(args)?;
    let file = args.file.display().to_string();
    let size = std::fs::metadata(&args.file).map_err(|error| Failure::NotRun(format!("{file}: {error}")))?.len();
    if size > args.max_file_bytes {
        return Err(Failure::BadFile(format!(
            "{file}: the file has {size} bytes; a statement may have at most {} (PAYLEDGER_STATEMENT_MAX_FILE_BYTES)",
            args.max_file_bytes
        )));
    }
    let not_run = |error: &dyn std::fmt::Display| Failure::NotRun(error.to_string());
    // An existing, migrated database only: an import into a database made up on the spot (a mistyped path)
    // would look like success, and migrating here could race a running server of another version.
    let store = Store::connect_existing(database_url).await.map_err(|error| not_run(&error))?;
    let options = options(&store, args).await?;
    let (engine, writer) = LedgerEngine::start(&store).await.map_err(|error| not_run(&error))?;
    let settings = ReconcileSettings {
        date_tolerance_days: args.date_tolerance_days,
        max_file_bytes: args.max_file_bytes,
        max_lines: args.max_lines,
    };
    let service = Reconciliation::new(engine.clone(), store.clone(), settings);
    let bar = super::progress_bar(size, PROGRESS_TEMPLATE);
    let shown = bar.clone();
    let progress = Arc::new(move |progress: &ImportProgress| show(&shown, progress));
    let result = service.import(PathBuf::from(&args.file), options, Some(progress)).await;
    bar.finish_and_clear();
    drop(service);
    drop(engine);
    writer.stopped().await;
    let summary = result.map_err(|error| failure(&args.file, error))?;
    let mut unsaved = None;
    if args.save_mapping
        && let (Some(spec), Some(account)) = (&args.csv_columns, &args.account)
    {
        let now = time::OffsetDateTime::now_utc();
        match store.save_csv_mapping(account, spec, now).await {
            Ok(()) => eprintln!("saved the CSV column mapping of {account}"),
            Err(error) => unsaved = Some(error.to_string()),
        }
    }
    Ok((summary, unsaved))
}

/// The exit status and message of a failed import: the file's faults are 1, the rest 2.
fn failure(file: &Path, error: ReconcileError) -> Failure {
    let file = file.display();
    match error {
        ReconcileError::Invalid(error) => Failure::BadFile(format!("{file}: {error}")),
        ReconcileError::AccountNotInFile(account) => {
            Failure::BadFile(format!("{file}: the file has no section for the account {account}"))
        }
        ReconcileError::TooLarge { limit } => {
            Failure::BadFile(format!("{file}: the file is larger than {limit} bytes"))
        }
        ReconcileError::CsvMapping(reason) => Failure::NotRun(format!("--csv-columns: {reason}")),
        other => Failure::NotRun(other.to_string()),
    }
}

/// Draws one progress report.
fn show(bar: &ProgressBar, progress: &ImportProgress) {
    if let Some(total) = progress.total_bytes {
        bar.set_length(total);
    }
    bar.set_position(progress.bytes_read);
    bar.set_prefix(match progress.phase {
        ImportPhase::Validating => "checking",
        ImportPhase::Importing => "importing",
        ImportPhase::Judging => "judging",
    });
    bar.set_message(format!(
        "{} lines, {} stored, {} matched",
        progress.lines_read, progress.lines_stored, progress.matched
    ));
}

/// The summary for people.
fn print_human(summary: &ImportSummary) {
    let name = summary.file_name.as_deref().unwrap_or("the file");
    if summary.already_imported {
        println!("{name} was imported before as statement {}: nothing changed", summary.id);
    }
    println!(
        "statement {} ({}, {} lines): {} new, {} already known; {} matched, {} pending",
        summary.id,
        summary.format,
        summary.lines_read,
        summary.lines_new,
        summary.lines_already_known,
        summary.matched,
        summary.pending
    );
    for account in &summary.accounts {
        println!(
            "  {} {} {}–{}: opening {} + {} − {} = closing {} ({} credit lines, {} debit lines)",
            account.account,
            account.currency,
            account.period_start,
            account.period_end,
            account.opening_balance.as_deref().unwrap_or("—"),
            account.total_credits.as_deref().unwrap_or("—"),
            account.total_debits.as_deref().unwrap_or("—"),
            account.closing_balance.as_deref().unwrap_or("—"),
            account.credit_lines,
            account.debit_lines
        );
    }
    let counts = &summary.discrepancies;
    let found: Vec<String> = [
        ("missing_notice", counts.missing_notice),
        ("unknown_payer", counts.unknown_payer),
        ("amount_mismatch", counts.amount_mismatch),
        ("ambiguous", counts.ambiguous),
        ("notice_without_line", counts.notice_without_line),
    ]
    .iter()
    .filter(|(_, count)| *count > 0)
    .map(|(kind, count)| format!("{count} {kind}"))
    .collect();
    if found.is_empty() {
        println!("  no new discrepancies");
    } else {
        println!("  discrepancies: {} (see `GET /api/v1/reconciliation/` or the console)", found.join(", "));
    }
}

/// `payledger statement …`: the exit status of the subcommand.
pub async fn main(database_url: &str, command: &StatementCommand) -> ExitCode {
    match command {
        StatementCommand::Import(args) => import(database_url, args).await,
        StatementCommand::Generate(args) => generate(args),
    }
}

/// `payledger statement generate`: writes the statement and the notices that were not lost.
fn generate(args: &StatementGenerateArgs) -> ExitCode {
    match write_generated(args) {
        Ok(done) => {
            eprintln!(
                "wrote {} lines ({} credits, {} debits) and {} notices ({} lost on purpose) to {}",
                done.lines,
                done.credit_lines,
                done.debit_lines,
                done.notices,
                done.lost,
                args.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_NOT_RUN)
        }
    }
}

/// A fraction from 0 to 1 with at most three decimals, in per mille, read from its text (no float).
fn per_mille(text: &str) -> Option<u32> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 3 {
        return None;
    }
    let thousandths: u32 = format!("{fraction:0<3}").parse().ok()?;
    let value = whole.parse::<u32>().ok()?.checked_mul(1000)?.checked_add(thousandths)?;
    (value <= 1000).then_some(value)
}

fn write_generated(args: &StatementGenerateArgs) -> Result<crate::statement::generate::Generated, String> {
    use crate::statement::generate::{GeneratorSpec, OutputFormat, generate};
    let account =
        AccountNumber::parse(&args.account).map_err(|_| format!("--account {}: must be 20 digits", args.account))?;
    let start = time::Date::parse(&args.start, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("--start {}: must be a date as YYYY-MM-DD", args.start))?;
    let lost = per_mille(&args.lost)
        .ok_or_else(|| format!("--lost {}: must be a fraction from 0 to 1, e.g. 0.05", args.lost))?;
    let mut spec = GeneratorSpec::new(args.seed, start, args.days, args.payers, args.lines_per_day, account.clone());
    spec.lost_per_mille = lost;
    let format = match args.format {
        GeneratedFormatArg::OneC => OutputFormat::OneCWindows1251,
        GeneratedFormatArg::OneCUtf8 => OutputFormat::OneCUtf8Bom,
        GeneratedFormatArg::Camt053 => OutputFormat::Camt053,
        GeneratedFormatArg::Csv => OutputFormat::Csv,
    };
    let create = |path: &Path| {
        std::fs::File::create(path).map(std::io::BufWriter::new).map_err(|error| format!("{}: {error}", path.display()))
    };
    let out = create(&args.out)?;
    let mut notices = args.notices.as_deref().map(create).transpose()?;
    // The callback cannot return an error: the first one is kept and reported after the file is written.
    let mut failed: Option<std::io::Error> = None;
    let mut on_notice = |notice: &crate::statement::generate::GeneratedNotice| {
        if let (Some(file), false, None) = (notices.as_mut(), notice.lost, failed.as_ref()) {
            use std::io::Write;
            if let Err(error) = writeln!(file, "{}", notice.to_json()) {
                failed = Some(error);
            }
        }
    };
    let done =
        generate(&spec, format, out, &mut on_notice).map_err(|error| format!("{}: {error}", args.out.display()))?;
    if let Some(error) = failed {
        return Err(format!("writing the notices: {error}"));
    }
    if let Some(mut file) = notices {
        use std::io::Write;
        file.flush().map_err(|error| format!("writing the notices: {error}"))?;
    }
    if args.format == GeneratedFormatArg::Csv {
        eprintln!("its CSV mapping: {}", crate::statement::generate::csv_mapping(&account));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::per_mille;

    #[test]
    fn a_lost_share_is_read_exactly_in_per_mille() {
        assert_eq!(per_mille("0.05"), Some(50));
        assert_eq!(per_mille("1"), Some(1000));
        assert_eq!(per_mille("0.125"), Some(125));
        for bad in ["1.5", "0.0005", "-0.1", ".5", "5%", ""] {
            assert_eq!(per_mille(bad), None, "{bad}");
        }
    }
}
