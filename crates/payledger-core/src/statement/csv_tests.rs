use super::*;
use crate::statement::read::{Limits, Validated, validate};
use crate::statement::{StatementFormat, events};
use time::macros::date;

const SPEC: &str = "booking_date=Дата,amount=Сумма,direction=Тип,document_number=Номер,document_date=Дата документа,\
payer_inn=ИНН,payer_name=Плательщик,purpose=Назначение,delimiter=;,default_account=40702810900000000001";

const FILE: &str = "Дата;Номер;Дата документа;Тип;Сумма;ИНН;Плательщик;Назначение
28.04.2024;17;27.04.2024;credit;1500.00;7701234567;\"ООО \"\"Ромашка\"\"\";\"Оплата; счет 17
вторая строка\"
29.04.2024;5;29.04.2024;debit;300;;;
27.04.2024;18;27.04.2024;C;0.5;7701234567;ИП Иванов;
";

fn mapping(spec: &str) -> CsvMapping {
    CsvMapping::parse(spec).unwrap_or_else(|e| panic!("{e}"))
}

fn check(spec: &str, text: &str) -> Result<Validated, String> {
    let mapping = mapping(spec);
    validate(text.as_bytes(), StatementFormat::Csv, Some(&mapping), &Limits { max_lines: 100 }, &mut |_, _| {})
        .map_err(|e| e.to_string())
}

#[test]
fn quoted_fields_with_delimiters_quotes_and_newlines_are_read_per_rfc_4180() {
    let mapping = mapping(SPEC);
    let lines: Vec<StatementLine> = events(FILE.as_bytes(), StatementFormat::Csv, Some(&mapping))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| match e {
            Ok(StatementEvent::Line(line)) => Some(line),
            Ok(StatementEvent::Account(_)) => None,
            Err(error) => panic!("{error}"),
        })
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].counterparty_name.as_deref(), Some("ООО \"Ромашка\""));
    assert_eq!(lines[0].purpose.as_deref(), Some("Оплата; счет 17\nвторая строка"));
    assert_eq!((lines[0].document_date, lines[0].booking_date), (date!(2024 - 04 - 27), date!(2024 - 04 - 28)));
    assert_eq!((lines[1].direction, lines[1].amount.minor(), lines[1].source_line), (Direction::Debit, 30_000, 4));
    assert_eq!(lines[1].counterparty_inn, None);
    assert_eq!((lines[2].amount.minor(), lines[2].source_line), (50, 5));
}

#[test]
fn the_section_covers_the_lines_dates_and_states_no_balances() {
    let validated = check(SPEC, FILE).unwrap_or_else(|e| panic!("{e}"));
    let account = &validated.accounts[0];
    assert_eq!(
        (account.summary.period_start, account.summary.period_end),
        (date!(2024 - 04 - 27), date!(2024 - 04 - 29))
    );
    assert_eq!((account.summary.opening_balance, account.summary.closing_balance), (None, None));
    assert_eq!((account.credits, account.debits, validated.lines), (150_050, 30_000, 3));
}

#[test]
fn stated_balances_are_checked() {
    let spec = format!("{SPEC},opening=100.00,closing=1300.50");
    assert_eq!(check(&spec, FILE).map(|v| v.accounts[0].summary.closing_balance), Ok(Some(130_050)));
    let wrong = format!("{SPEC},opening=100.00,closing=1300.00");
    assert_eq!(
        check(&wrong, FILE).map(|_| ()),
        Err("line 2: account 40702810900000000001: opening 100.00 + credits 1500.50 - debits 300.00 is 1300.50, the statement says the closing balance is 1300.00".into())
    );
}

#[test]
fn signed_amounts_split_columns_and_indexes_work_without_a_header() {
    let signed = "booking_date=1,document_number=2,signed_amount=3,header=no,date_format=yyyy-mm-dd,default_account=40702810900000000001";
    let validated = check(signed, "2024-04-28,1,15.00\n2024-04-28,2,-5\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((validated.accounts[0].credits, validated.accounts[0].debits), (1_500, 500));
    let split = "booking_date=1,document_number=2,credit=3,debit=4,account=5,header=no";
    let validated = check(split, "28.04.2024,1,15.00,,40702810900000000001\n28.04.2024,2,,5,40702810900000000002\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(validated.accounts.len(), 2);
}

#[test]
fn each_bad_file_is_refused_with_its_line_and_reason() {
    let cases = [
        (FILE.replace("1500.00", "1500.005"), "line 2: amount '1500.005' has three decimals; amounts have at most 2"),
        (FILE.replace("debit;300", "out;300"), "line 4: direction 'out' must be credit or debit"),
        (
            FILE.replace("29.04.2024;5;", "2024-04-29;5;"),
            "line 4: booking_date '2024-04-29' is not a date (dd.mm.yyyy)",
        ),
        (FILE.replace(";ИП Иванов;", ""), "line 5: the row has 6 columns; column 7 is missing"),
        (FILE.replace("\"ООО \"\"Ромашка\"\"\"", "ООО \"Ромашка\""), "line 2: a quote inside an unquoted field"),
        (FILE.replace("вторая строка\"", "вторая строка"), "line 2: a quoted field is not closed"),
        (FILE.replace("Тип", "Вид"), "line 1: the header has no column 'Тип'"),
        (FILE.replace(";17;", ";;"), "line 2: document_number is empty"),
        (FILE.replace("ИП Иванов", "ИП\u{0}Иванов"), "line 5: a control character (U+0000) in Плательщик"),
        (FILE.replace("debit;300;;;", "debit;300;;;\u{7}"), "line 4: a control character (U+0007) in Назначение"),
    ];
    for (text, expected) in cases {
        assert_eq!(check(SPEC, &text).map(|_| ()), Err(expected.to_owned()));
    }
}

#[test]
fn a_bad_mapping_says_what_is_wrong() {
    let cases = [
        (
            "amount=1,booking_date=2,document_number=3,default_account=1",
            "give amount with direction, or signed_amount, or credit with debit",
        ),
        ("amount=1,direction=2,booking_date=3,default_account=40702810900000000001", "document_number is required"),
        ("amount=1,direction=2,booking_date=3,document_number=4", "give account (a column) or default_account"),
        (
            "amount=1,direction=2,booking_date=3,document_number=4,default_account=1",
            "default_account '1' must be 20 digits",
        ),
        (
            "amount=Сумма,direction=2,booking_date=3,document_number=4,header=no,default_account=40702810900000000001",
            "columns can be named only when the file has a header row; use numbers",
        ),
        (
            "amount=1,direction=2,booking_date=3,document_number=4,colour=5,default_account=40702810900000000001",
            "unknown key 'colour'",
        ),
        ("amount=1,amount=2", "amount is given twice"),
        ("amount", "'amount' is not key=value"),
    ];
    for (spec, expected) in cases {
        assert_eq!(CsvMapping::parse(spec).map(|_| ()), Err(expected.to_owned()), "{spec}");
    }
}

#[test]
fn a_zero_in_the_other_split_column_counts_as_empty() {
    let split = "booking_date=1,document_number=2,credit=3,debit=4,header=no,default_account=40702810900000000001";
    let validated =
        check(split, "28.04.2024,1,15.00,0.00\n28.04.2024,2,0,5\n28.04.2024,3,7,0\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((validated.accounts[0].credits, validated.accounts[0].debits), (2_200, 500));
    assert_eq!(
        check(split, "28.04.2024,1,0,0.00\n").map(|_| ()),
        Err("line 1: exactly one of the credit and debit columns must be filled".into())
    );
}

#[test]
fn a_credit_from_a_transit_account_is_a_bank_order() {
    let spec = "booking_date=1,document_number=2,signed_amount=3,payer_account=4,header=no,default_account=40702810900000000001";
    let mapping = mapping(spec);
    let text = "28.04.2024,1,15.00,30233810000000000001\n28.04.2024,2,16.00,40702810100000000009\n\
                28.04.2024,3,17.00,40702810900000000001\n";
    let natures: Vec<LineNature> = events(text.as_bytes(), StatementFormat::Csv, Some(&mapping))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| match e {
            Ok(StatementEvent::Line(line)) => Some(line.nature),
            Ok(StatementEvent::Account(_)) => None,
            Err(error) => panic!("{error}"),
        })
        .collect();
    assert_eq!(natures, [LineNature::BankOrder, LineNature::Payment, LineNature::OwnTransfer]);
}

#[test]
fn a_credit_from_the_owner_inn_is_an_own_transfer() {
    let spec = "booking_date=1,document_number=2,signed_amount=3,payer_inn=4,header=no,owner_inn=7701234567,\
                default_account=40702810900000000001";
    let mapping = mapping(spec);
    let text = "28.04.2024,1,15.00,7701234567\n28.04.2024,2,16.00,7707083893\n";
    let natures: Vec<LineNature> = events(text.as_bytes(), StatementFormat::Csv, Some(&mapping))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| match e {
            Ok(StatementEvent::Line(line)) => Some(line.nature),
            Ok(StatementEvent::Account(_)) => None,
            Err(error) => panic!("{error}"),
        })
        .collect();
    assert_eq!(natures, [LineNature::OwnTransfer, LineNature::Payment]);
    assert_eq!(CsvMapping::parse(&spec.replace("7701234567", "77")).err(), Some("owner_inn '77' is not an INN".into()));
}
