use super::*;
use crate::statement::read::{Limits, validate};
use crate::statement::{StatementFormat, events};
use encoding_rs::{IBM866, WINDOWS_1251};
use time::macros::date;

const ACCOUNT: &str = "40702810900000000001";
const OTHER: &str = "40702810900000000002";

/// A valid file: one section (opening 1000.00, +1500.00 + 250.50 - 300.00), two credits and one debit.
fn valid() -> Vec<String> {
    let text = format!(
        "1CClientBankExchange
ВерсияФормата=1.03
Кодировка=DOS
Отправитель=Бухгалтерия
РасчСчет={ACCOUNT}
СекцияРасчСчет
ДатаНачала=27.04.2024
ДатаКонца=28.04.2024
РасчСчет={ACCOUNT}
НачальныйОстаток=1000.00
ВсегоПоступило=1750.50
ВсегоСписано=300
КонечныйОстаток=2450.50
КонецРасчСчет
СекцияДокумент=Платежное поручение
Номер=17
Дата=27.04.2024
Сумма=1500.00
ПлательщикСчет=40702810000000000099
ПлательщикИНН=7701234567
Плательщик1=ООО \"Ромашка\"
ПлательщикБИК=044525225
ПолучательСчет={ACCOUNT}
ПолучательИНН=7707083893
ДатаПоступило=28.04.2024
НазначениеПлатежа=Оплата по счету № 17
КонецДокумента
СекцияДокумент=Платежное поручение
Номер=18
Дата=28.04.2024
Сумма=250.5
ПлательщикСчет=40702810000000000098
ПлательщикИНН=0
ПолучательСчет={ACCOUNT}
ДатаПоступило=28.04.2024
КонецДокумента
СекцияДокумент=Платежное поручение
Номер=5
Дата=28.04.2024
Сумма=300
ПлательщикСчет={ACCOUNT}
ПолучательСчет=40702810000000000097
ПолучательИНН=7701234567
Получатель1=АО Вектор
ДатаСписано=28.04.2024
КонецДокумента
КонецФайла"
    );
    text.lines().map(str::to_owned).collect()
}

fn check(lines: &[String]) -> Result<crate::statement::Validated, StatementError> {
    let bytes = lines.join("\r\n").into_bytes();
    validate(&bytes[..], StatementFormat::OneC, None, &Limits { max_lines: 1_000 }, &mut |_, _| {})
}

fn error_of(lines: &[String]) -> String {
    match check(lines) {
        Ok(_) => panic!("the file was accepted"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_valid_file_gives_its_section_and_lines_in_order() {
    let bytes = valid().join("\n").into_bytes();
    let events: Vec<_> = events(&bytes[..], StatementFormat::OneC, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.len(), 4);
    let StatementEvent::Account(summary) = &events[0] else { panic!("no section first") };
    assert_eq!((summary.opening_balance, summary.closing_balance), (Some(100_000), Some(245_050)));
    assert_eq!((summary.period_start, summary.period_end), (date!(2024 - 04 - 27), date!(2024 - 04 - 28)));
    let StatementEvent::Line(first) = &events[1] else { panic!("no line") };
    assert_eq!(first.direction, Direction::Credit);
    assert_eq!(first.amount.minor(), 150_000);
    assert_eq!((first.document_date, first.booking_date), (date!(2024 - 04 - 27), date!(2024 - 04 - 28)));
    assert_eq!(first.counterparty_inn.as_ref().map(Inn::as_str), Some("7701234567"));
    assert_eq!(first.counterparty_name.as_deref(), Some("ООО \"Ромашка\""));
    assert_eq!(first.source_line, 15);
    assert!(first.raw.iter().any(|(k, v)| k == "НазначениеПлатежа" && v == "Оплата по счету № 17"));
    let StatementEvent::Line(second) = &events[2] else { panic!("no line") };
    assert_eq!(second.counterparty_inn, None, "ПлательщикИНН=0 is no INN");
    let StatementEvent::Line(debit) = &events[3] else { panic!("no line") };
    assert_eq!((debit.direction, debit.amount.minor()), (Direction::Debit, 30_000));
    assert_eq!(debit.counterparty_name.as_deref(), Some("АО Вектор"));
}

#[test]
fn validate_sums_each_section() {
    let validated = check(&valid()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(validated.lines, 3);
    let account = &validated.accounts[0];
    assert_eq!((account.credits, account.debits, account.credit_lines, account.debit_lines), (175_050, 30_000, 2, 1));
}

#[test]
fn windows_1251_and_cp866_files_read_the_same_as_utf8() {
    let text = valid().join("\r\n");
    let expected = check(&valid()).unwrap_or_else(|e| panic!("{e}"));
    for bytes in [
        WINDOWS_1251.encode(&text).0.into_owned(),
        IBM866.encode(&text).0.into_owned(),
        [&b"\xEF\xBB\xBF"[..], text.as_bytes()].concat(),
    ] {
        let validated = validate(&bytes[..], StatementFormat::OneC, None, &Limits { max_lines: 10 }, &mut |_, _| {});
        assert_eq!(validated.as_ref(), Ok(&expected));
    }
}

/// Replaces the line starting with `prefix` (the first one after line `after`) by `with` (None deletes it).
fn edit(after: usize, prefix: &str, with: Option<&str>) -> Vec<String> {
    let mut lines = valid();
    let at = lines.iter().skip(after).position(|l| l.starts_with(prefix)).map(|i| i + after);
    let at = at.unwrap_or_else(|| panic!("no {prefix}"));
    match with {
        Some(text) => lines[at] = text.to_owned(),
        None => {
            lines.remove(at);
        }
    }
    lines
}

#[test]
fn each_bad_file_is_refused_with_its_line_and_reason() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            edit(0, "1CClient", Some("1CExchange")),
            "line 1: the file does not start with 1CClientBankExchange; this is not a 1C statement",
        ),
        (edit(14, "Сумма", Some("Сумма=1.505")), "line 18: Сумма '1.505' has three decimals; amounts have at most 2"),
        (
            edit(14, "Сумма", Some("Сумма=1 500")),
            "line 18: Сумма '1 500' is not an amount: only digits and one '.' are allowed",
        ),
        (
            edit(14, "Сумма", Some("Сумма=-1500")),
            "line 18: Сумма '-1500' is not an amount: only digits and one '.' are allowed",
        ),
        (edit(14, "Сумма", None), "line 15: the СекцияДокумент has no Сумма"),
        (edit(14, "Номер", None), "line 15: the СекцияДокумент has no Номер"),
        (edit(14, "Дата=", None), "line 15: the СекцияДокумент has no Дата"),
        (edit(14, "Дата=", Some("Дата=2024-04-27")), "line 17: Дата '2024-04-27' is not a date (dd.mm.yyyy)"),
        (
            edit(14, "ДатаПоступило", Some("ДатаПоступило=31.04.2024")),
            "line 25: ДатаПоступило '31.04.2024' is not a date (dd.mm.yyyy)",
        ),
        (
            edit(14, "ДатаПоступило", None),
            "line 15: document 17 on our account 40702810900000000001 has no ДатаПоступило",
        ),
        (
            edit(14, "ПолучательСчет", Some(&format!("ПолучательСчет={OTHER}"))),
            "line 15: document 17: neither ПлательщикСчет '40702810000000000099' nor ПолучательСчет '40702810900000000002' is an account with a СекцияРасчСчет",
        ),
        (
            {
                let lines = edit(14, "ПолучательСчет", None);
                let at = lines.iter().position(|l| l.starts_with("ПлательщикСчет=4070281000000000009")).unwrap_or(0);
                lines.into_iter().enumerate().filter(|(i, _)| *i != at).map(|(_, l)| l).collect()
            },
            "line 15: the СекцияДокумент has no ПолучательСчет or ПлательщикСчет",
        ),
        (edit(0, "КонецФайла", None), "line 46: the file ends without КонецФайла"),
        (
            edit(14, "КонецДокумента", None),
            "line 27: СекцияДокумент inside the СекцияДокумент that starts on line 15: КонецДокумента is missing",
        ),
        (
            edit(0, "КонецРасчСчет", None),
            "line 14: СекцияДокумент inside the СекцияРасчСчет that starts on line 6: КонецРасчСчет is missing",
        ),
        (edit(0, "СекцияРасчСчет", Some("СекцияСчет")), "line 6: unknown section marker 'СекцияСчет'"),
        (
            edit(6, "РасчСчет", Some("РасчСчет=4070281090000000000")),
            "line 9: РасчСчет '4070281090000000000' is not an account number: must be 20 digits",
        ),
        (edit(6, "ДатаНачала", None), "line 6: the СекцияРасчСчет has no ДатаНачала"),
        (
            edit(0, "ВсегоПоступило", Some("ВсегоПоступило=1750.51")),
            "line 6: account 40702810900000000001: the credits add up to 1750.50, the statement says 1750.51",
        ),
        (
            edit(0, "КонечныйОстаток", Some("КонечныйОстаток=2450.00")),
            "line 6: account 40702810900000000001: opening 1000.00 + credits 1750.50 - debits 300.00 is 2450.50, the statement says the closing balance is 2450.00",
        ),
        (edit(14, "Плательщик1", Some("Плательщик1 ООО")), "line 21: 'Плательщик1 ООО' is not a Key=Value line"),
        (
            edit(14, "Плательщик1", Some("Плательщик1=ООО\u{0}Ромашка")),
            "line 15: a control character (U+0000) in Плательщик1",
        ),
        (edit(14, "Номер", Some("Номер=1\u{1b}7")), "line 15: a control character (U+001B) in Номер"),
    ];
    for (lines, expected) in cases {
        assert_eq!(error_of(&lines), expected);
    }
}

#[test]
fn the_line_limit_is_enforced() {
    let bytes = valid().join("\n").into_bytes();
    let refused = validate(&bytes[..], StatementFormat::OneC, None, &Limits { max_lines: 2 }, &mut |_, _| {});
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("line 37: the file has more than 2 statement lines, the limit".into())
    );
}

#[test]
fn a_transfer_between_two_of_our_accounts_is_a_debit_on_one_and_a_credit_on_the_other() {
    let mut lines = valid();
    let section: Vec<String> = lines[5..14].iter().map(|l| l.replace(ACCOUNT, OTHER)).collect();
    let totals = ["НачальныйОстаток=0", "ВсегоПоступило=0", "ВсегоСписано=300", "КонечныйОстаток=-300"];
    let section: Vec<String> = section
        .into_iter()
        .filter(|l| !l.starts_with("НачальныйОстаток") && !l.starts_with("Всего") && !l.starts_with("КонечныйОстаток"))
        .collect();
    let mut section: Vec<String> = section;
    let end = section.len() - 1;
    for (i, total) in totals.iter().enumerate() {
        section.insert(end + i, (*total).to_owned());
    }
    let debit = lines.iter().position(|l| l == "Номер=5").unwrap_or(0);
    lines[debit + 3] = format!("ПлательщикСчет={OTHER}");
    lines[debit + 4] = format!("ПолучательСчет={ACCOUNT}");
    lines.insert(debit + 8, "ДатаПоступило=28.04.2024".into());
    let at = lines.iter().position(|l| l == "ВсегоПоступило=1750.50").unwrap_or(0);
    lines[at] = "ВсегоПоступило=2050.50".into();
    lines[at + 1] = "ВсегоСписано=0".into();
    lines[at + 2] = "КонечныйОстаток=3050.50".into();
    for (i, line) in section.into_iter().enumerate() {
        lines.insert(14 + i, line);
    }
    let validated = check(&lines).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(validated.lines, 4);
    assert_eq!((validated.accounts[0].credits, validated.accounts[1].debits), (205_050, 30_000));
}

fn natures(lines: &[String]) -> Vec<LineNature> {
    let bytes = lines.join("\n").into_bytes();
    events(&bytes[..], StatementFormat::OneC, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| match e {
            Ok(StatementEvent::Line(line)) => Some(line.nature),
            Ok(StatementEvent::Account(_)) => None,
            Err(error) => panic!("{error}"),
        })
        .collect()
}

#[test]
fn own_transfers_and_bank_orders_are_not_payments() {
    use LineNature::{BankOrder, OwnTransfer, Payment};
    assert_eq!(natures(&valid()), [Payment, Payment, Payment]);
    let same_inn = edit(14, "ПолучательИНН", Some("ПолучательИНН=7701234567"));
    assert_eq!(natures(&same_inn), [OwnTransfer, Payment, Payment]);
    let transit = edit(14, "ПлательщикСчет", Some("ПлательщикСчет=30233810000000000001"));
    assert_eq!(natures(&transit), [BankOrder, Payment, Payment]);
    let mut order = valid();
    order.insert(19, "ВидОплаты=17".into());
    assert_eq!(natures(&order), [BankOrder, Payment, Payment]);
}

#[test]
fn text_after_the_end_marker_is_two_files_glued_together() {
    let mut lines = valid();
    lines.push(String::new());
    assert!(check(&lines).is_ok(), "blank lines after КонецФайла are fine");
    lines.extend(valid());
    assert_eq!(error_of(&lines), "line 49: text after КонецФайла: two files glued together?");
}

#[test]
fn a_file_with_cr_only_line_endings_reads_like_crlf() {
    let bytes = valid().join("\r").into_bytes();
    let validated = validate(&bytes[..], StatementFormat::OneC, None, &Limits { max_lines: 100 }, &mut |_, _| {});
    assert_eq!(validated.map_err(|e| e.to_string()), check(&valid()).map_err(|e| e.to_string()));
}

#[test]
fn a_document_booked_outside_its_section_period_is_refused() {
    let late = edit(14, "ДатаПоступило", Some("ДатаПоступило=29.04.2024"));
    assert_eq!(
        error_of(&late),
        "line 15: the line is booked on 2024-04-29, outside the period 2024-04-27..2024-04-28 of account \
         40702810900000000001's section on line 6"
    );
    // Without ДатаКонца the period is ДатаНачала, when every line fits it, else an error saying so.
    let open_ended = edit(6, "ДатаКонца", None);
    assert_eq!(
        error_of(&open_ended),
        "line 14: the line is booked on 2024-04-28, but the section of account 40702810900000000001 on line 6 has \
         no ДатаКонца, so its period is its ДатаНачала 2024-04-27 only"
    );
    let mut one_day = edit(6, "ДатаКонца", None);
    for line in &mut one_day {
        *line = line.replace("ДатаНачала=27.04.2024", "ДатаНачала=28.04.2024");
    }
    let validated = check(&one_day).unwrap_or_else(|e| panic!("{e}"));
    let summary = &validated.accounts[0].summary;
    assert_eq!((summary.period_start, summary.period_end), (date!(2024 - 04 - 28), date!(2024 - 04 - 28)));
}

#[test]
fn one_section_per_day_for_the_same_account_is_merged() {
    let base = valid();
    // Day one (27.04): the 1500.00 credit; day two (28.04): the 250.50 credit and the 300.00 debit.
    let section = |start: &str, opening: &str, credits: &str, debits: &str, closing: &str| -> Vec<String> {
        vec![
            "СекцияРасчСчет".into(),
            format!("ДатаНачала={start}"),
            format!("ДатаКонца={start}"),
            format!("РасчСчет={ACCOUNT}"),
            format!("НачальныйОстаток={opening}"),
            format!("ВсегоПоступило={credits}"),
            format!("ВсегоСписано={debits}"),
            format!("КонечныйОстаток={closing}"),
            "КонецРасчСчет".into(),
        ]
    };
    let documents = |lines: &[String]| -> Vec<String> {
        let mut lines = lines.to_vec();
        let at = lines.iter().position(|l| l == "ДатаПоступило=28.04.2024").unwrap_or(0);
        lines[at] = "ДатаПоступило=27.04.2024".into();
        lines
    };
    let assemble = |sections: Vec<Vec<String>>| -> Vec<String> {
        let mut lines = base[..5].to_vec();
        lines.extend(sections.into_iter().flatten());
        lines.extend(documents(&base[14..]));
        lines
    };
    let day_one = section("27.04.2024", "1000.00", "1500.00", "0", "2500.00");
    let day_two = section("28.04.2024", "2500.00", "250.50", "300.00", "2450.50");
    let merged = check(&assemble(vec![day_two.clone(), day_one.clone()])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(merged.accounts.len(), 1);
    let account = &merged.accounts[0];
    assert_eq!(
        (account.summary.period_start, account.summary.period_end),
        (date!(2024 - 04 - 27), date!(2024 - 04 - 28))
    );
    assert_eq!((account.summary.opening_balance, account.summary.closing_balance), (Some(100_000), Some(245_050)));
    assert_eq!((account.credits, account.debits, account.summary.total_credits), (175_050, 30_000, Some(175_050)));
    assert_eq!((account.credit_lines, account.debit_lines), (2, 1));
    let bytes = assemble(vec![day_one.clone(), day_two.clone()]).join("\n").into_bytes();
    let announced = events(&bytes[..], StatementFormat::OneC, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter(|e| matches!(e, Ok(StatementEvent::Account(_))))
        .count();
    assert_eq!(announced, 1);
    // Each section's own totals are checked.
    let wrong = section("27.04.2024", "1000.00", "1750.50", "0", "2750.50");
    assert_eq!(
        error_of(&assemble(vec![wrong, day_two.clone()])),
        "line 6: account 40702810900000000001: the credits add up to 1500.00, the statement says 1750.50"
    );
    let overlapping = section("27.04.2024", "1000.00", "1500.00", "0", "2500.00")
        .into_iter()
        .map(|l| l.replace("ДатаКонца=27.04.2024", "ДатаКонца=28.04.2024"))
        .collect();
    assert_eq!(
        error_of(&assemble(vec![overlapping, day_two])),
        "line 15: account 40702810900000000001's section covers 2024-04-28..2024-04-28, which overlaps \
         2024-04-27..2024-04-28 of its section on line 6"
    );
}
