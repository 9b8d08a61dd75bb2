use super::*;
use crate::statement::read::{Limits, Validated, validate};
use crate::statement::{StatementFormat, events};
use time::macros::date;

const ACCOUNT: &str = "40702810900000000001";

fn statement(account: &str, entries: &str, summary: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt>
<GrpHdr><MsgId>1</MsgId><CreDtTm>2024-04-29T09:00:00+03:00</CreDtTm></GrpHdr>
<Stmt>
<Id>S1</Id>
<FrToDt><FrDtTm>2024-04-27T21:00:00Z</FrDtTm><ToDtTm>2024-04-28T23:59:59+03:00</ToDtTm></FrToDt>
<Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>RUB</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="RUB">100.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Dt><Dt>2024-04-28</Dt></Dt></Bal>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="RUB">1400.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2024-04-28</Dt></Dt></Bal>
{summary}
{entries}
</Stmt>
</BkToCstmrStmt>
</Document>"#
    )
}

/// A booked credit of 1500.00 in two TxDtls (1000.00 and 500.00), a pending entry, and no debits.
fn entries() -> String {
    r#"<Ntry><Amt Ccy="RUB">1500.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2024-04-28</Dt></BookgDt><AcctSvcrRef>B-1</AcctSvcrRef>
<NtryDtls>
<TxDtls><Refs><EndToEndId>17</EndToEndId></Refs><Amt Ccy="RUB">1000.00</Amt>
<RltdPties><Dbtr><Nm>ООО &quot;Ромашка&quot; &amp; Ко</Nm><Id><OrgId><Othr><Id>7701234567</Id><SchmeNm><Prtry>INN</Prtry></SchmeNm></Othr></OrgId></Id></Dbtr>
<DbtrAcct><Id><Othr><Id>40702810000000000099</Id></Othr></Id></DbtrAcct></RltdPties>
<RltdAgts><DbtrAgt><FinInstnId><ClrSysMmbId><MmbId>044525225</MmbId></ClrSysMmbId></FinInstnId></DbtrAgt></RltdAgts>
<RmtInf><Ustrd>Оплата по счету 17</Ustrd></RmtInf>
<RltdDts><AccptncDtTm>2024-04-27T21:00:00Z</AccptncDtTm></RltdDts>
</TxDtls>
<TxDtls><Refs><InstrId>18</InstrId></Refs><AmtDtls><TxAmt><Amt Ccy="RUB">500.00</Amt></TxAmt></AmtDtls></TxDtls>
</NtryDtls></Ntry>
<Ntry><Amt Ccy="RUB">99.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>PDNG</Sts><BookgDt><Dt>2024-04-28</Dt></BookgDt></Ntry>"#
        .to_owned()
}

const SUMMARY: &str =
    "<TxsSummry><TtlCdtNtries><Sum>1500.00</Sum></TtlCdtNtries><TtlDbtNtries><Sum>0</Sum></TtlDbtNtries></TxsSummry>";

fn check(text: &str) -> Result<Validated, String> {
    validate(text.as_bytes(), StatementFormat::Camt053, None, &Limits { max_lines: 100 }, &mut |_, _| {})
        .map_err(|e| e.to_string())
}

fn all_events(text: &str) -> Vec<StatementEvent> {
    events(text.as_bytes(), StatementFormat::Camt053, None)
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_entry_with_two_transactions_gives_two_lines_and_pending_entries_are_skipped() {
    let text = statement(ACCOUNT, &entries(), SUMMARY);
    let events = all_events(&text);
    assert_eq!(events.len(), 3);
    let StatementEvent::Account(summary) = &events[0] else { panic!("no section first") };
    assert_eq!((summary.opening_balance, summary.closing_balance), (Some(-10_000), Some(140_000)));
    assert_eq!((summary.total_credits, summary.total_debits), (Some(150_000), Some(0)));
    // 2024-04-27T21:00:00Z is the first moment of 28 April in Moscow.
    assert_eq!((summary.period_start, summary.period_end), (date!(2024 - 04 - 28), date!(2024 - 04 - 28)));
    let StatementEvent::Line(first) = &events[1] else { panic!("no line") };
    assert_eq!((first.amount.minor(), first.document_number.as_str()), (100_000, "17"));
    assert_eq!(first.document_date, date!(2024 - 04 - 28), "AccptncDtTm 2024-04-27T21:00:00Z is 28.04.2024");
    assert_eq!(first.counterparty_inn.as_ref().map(Inn::as_str), Some("7701234567"));
    assert_eq!(first.counterparty_name.as_deref(), Some("ООО \"Ромашка\" & Ко"));
    assert_eq!(first.counterparty_account.as_deref(), Some("40702810000000000099"));
    assert_eq!(first.counterparty_bik.as_deref(), Some("044525225"));
    assert_eq!((first.bank_ref.as_deref(), first.end_to_end_id.as_deref()), (Some("B-1"), Some("17")));
    assert_eq!(first.purpose.as_deref(), Some("Оплата по счету 17"));
    assert_eq!(first.source_line, 15);
    let StatementEvent::Line(second) = &events[2] else { panic!("no line") };
    assert_eq!((second.amount.minor(), second.document_number.as_str()), (50_000, "18"));
    assert_eq!(second.document_date, date!(2024 - 04 - 28), "no AccptncDtTm: the booking date");
    assert_eq!(second.counterparty_inn, None);
    let validated = check(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((validated.lines, validated.accounts[0].credits), (2, 150_000));
}

#[test]
fn an_entry_without_details_is_one_line_of_the_entry_amount() {
    let entry = r#"<Ntry><Amt Ccy="RUB">1300.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><DtTm>2024-04-28T10:00:00</DtTm></BookgDt><AcctSvcrRef>R9</AcctSvcrRef></Ntry>
<Ntry><Amt Ccy="RUB">200.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2024-04-28</Dt></BookgDt><NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId><InstrId>7</InstrId></Refs></TxDtls></NtryDtls></Ntry>"#;
    let events = all_events(&statement(ACCOUNT, entry, SUMMARY));
    let lines: Vec<(i64, String)> = events
        .iter()
        .filter_map(|e| match e {
            StatementEvent::Line(line) => Some((line.amount.minor(), line.document_number.clone())),
            StatementEvent::Account(_) => None,
        })
        .collect();
    assert_eq!(lines, vec![(130_000, "R9".to_owned()), (20_000, "7".to_owned())]);
}

#[test]
fn two_statements_are_two_account_sections() {
    let first = statement(ACCOUNT, &entries(), SUMMARY);
    let second = statement("40702810900000000002", &entries(), SUMMARY);
    let body_start = second.find("<Stmt>").unwrap_or(0);
    let body_end = second.find("</BkToCstmrStmt>").unwrap_or(0);
    let both = first.replace("</BkToCstmrStmt>", &format!("{}</BkToCstmrStmt>", &second[body_start..body_end]));
    let validated = check(&both).unwrap_or_else(|e| panic!("{e}"));
    let accounts: Vec<&str> = validated.accounts.iter().map(|a| a.summary.account.as_str()).collect();
    assert_eq!(accounts, vec![ACCOUNT, "40702810900000000002"]);
    assert_eq!(validated.lines, 4);
    let repeated = first.replace("</BkToCstmrStmt>", &format!("{}</BkToCstmrStmt>", &first[body_start..body_end]));
    assert_eq!(
        check(&repeated),
        Err("line 26: account 40702810900000000001's section covers 2024-04-28..2024-04-28, which overlaps \
             2024-04-28..2024-04-28 of its section on line 5"
            .into())
    );
}

/// `good`'s statement moved one day on (29 April), opening with `good`'s closing balance 1400.00.
fn next_day(good: &str) -> String {
    let start = good.find("<Stmt>").unwrap_or(0);
    let end = good.find("</BkToCstmrStmt>").unwrap_or(0);
    good[start..end]
        .replace("2024-04-28", "2024-04-29")
        .replace("2024-04-27T21:00:00Z", "2024-04-28T21:00:00Z")
        .replace("<Amt Ccy=\"RUB\">1400.00</Amt>", "<Amt Ccy=\"RUB\">2900.00</Amt>")
        .replace("<Amt Ccy=\"RUB\">100.00</Amt><CdtDbtInd>DBIT", "<Amt Ccy=\"RUB\">1400.00</Amt><CdtDbtInd>CRDT")
}

#[test]
fn one_statement_per_day_for_the_same_account_is_merged_into_one_section() {
    let good = statement(ACCOUNT, &entries(), SUMMARY);
    let both = good.replace("</BkToCstmrStmt>", &format!("{}</BkToCstmrStmt>", next_day(&good)));
    let validated = check(&both).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(validated.accounts.len(), 1);
    let merged = &validated.accounts[0];
    assert_eq!(
        (merged.summary.period_start, merged.summary.period_end),
        (date!(2024 - 04 - 28), date!(2024 - 04 - 29))
    );
    assert_eq!((merged.summary.opening_balance, merged.summary.closing_balance), (Some(-10_000), Some(290_000)));
    assert_eq!((merged.credits, merged.summary.total_credits, merged.credit_lines), (300_000, Some(300_000), 4));
    let accounts = all_events(&both).iter().filter(|e| matches!(e, StatementEvent::Account(_))).count();
    assert_eq!(accounts, 1, "the stream announces the account once");
    // Each day's totals are still checked on their own, and the days must chain.
    let wrong_day = both.replacen("<Sum>1500.00</Sum>", "<Sum>3000.00</Sum>", 1);
    assert_eq!(
        check(&wrong_day),
        Err("line 5: account 40702810900000000001: the credits add up to 1500.00, the statement says 3000.00".into())
    );
    let broken_chain = both.replace("<Amt Ccy=\"RUB\">2900.00</Amt>", "<Amt Ccy=\"RUB\">3000.00</Amt>");
    assert!(check(&broken_chain).is_err_and(|e| e.contains("the closing balance is 3000.00")), "{broken_chain}");
    let no_chain = good.replace(
        "</BkToCstmrStmt>",
        &format!(
            "{}</BkToCstmrStmt>",
            next_day(&good)
                .replace("1400.00</Amt><CdtDbtInd>CRDT", "1300.00</Amt><CdtDbtInd>CRDT")
                .replace("2900.00", "2800.00")
        ),
    );
    assert_eq!(
        check(&no_chain),
        Err("line 26: account 40702810900000000001's section opens with 1300.00, the section before it closed with 1400.00".into())
    );
}

fn natures(text: &str) -> Vec<LineNature> {
    all_events(text)
        .into_iter()
        .filter_map(|e| match e {
            StatementEvent::Line(line) => Some(line.nature),
            StatementEvent::Account(_) => None,
        })
        .collect()
}

#[test]
fn reversals_own_transfers_and_bank_orders_are_not_payments() {
    let good = statement(ACCOUNT, &entries(), SUMMARY);
    assert_eq!(natures(&good), [LineNature::Payment, LineNature::Payment]);
    let reversal = good.replace(
        "<CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK",
        "<CdtDbtInd>CRDT</CdtDbtInd><RvslInd>true</RvslInd><Sts><Cd>BOOK",
    );
    assert_eq!(natures(&reversal), [LineNature::Reversal, LineNature::Reversal]);
    let owner = "<Ownr><Id><OrgId><Othr><Id>7701234567</Id><SchmeNm><Cd>TXID</Cd></SchmeNm></Othr></OrgId></Id></Ownr>";
    let own_inn = good.replace("<Ccy>RUB</Ccy></Acct>", &format!("<Ccy>RUB</Ccy>{owner}</Acct>"));
    assert_eq!(natures(&own_inn), [LineNature::OwnTransfer, LineNature::Payment]);
    let transit = good.replace("40702810000000000099", "30233810000000000001");
    assert_eq!(natures(&transit), [LineNature::BankOrder, LineNature::Payment]);
    // The payer's account is another of our accounts, stated earlier in the file.
    let other = statement("40702810000000000099", "", "");
    let (start, end) = (other.find("<Stmt>").unwrap_or(0), other.find("</BkToCstmrStmt>").unwrap_or(0));
    let own_account = good.replacen("<Stmt>", &format!("{}<Stmt>", &other[start..end]), 1);
    assert_eq!(natures(&own_account), [LineNature::OwnTransfer, LineNature::Payment]);
}

#[test]
fn only_the_opening_and_closing_balances_or_fr_to_dt_bound_the_period() {
    let good = statement(ACCOUNT, &entries(), SUMMARY);
    let period =
        |text: &str| check(text).map(|v| (v.accounts[0].summary.period_start, v.accounts[0].summary.period_end));
    let no_fr_to_dt = good.replace(
        "<FrToDt><FrDtTm>2024-04-27T21:00:00Z</FrDtTm><ToDtTm>2024-04-28T23:59:59+03:00</ToDtTm></FrToDt>",
        "",
    );
    let forward = "<Bal><Tp><CdOrPrtry><Cd>FWAV</Cd></CdOrPrtry></Tp><Amt Ccy=\"RUB\">1.00</Amt><Dt><Dt>2024-05-05</Dt></Dt></Bal>\n<TxsSummry>";
    let with_forward = no_fr_to_dt.replace("<TxsSummry>", forward);
    assert_eq!(period(&with_forward), Ok((date!(2024 - 04 - 28), date!(2024 - 04 - 28))));
    let previous_day = with_forward.replace(
        "<Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy=\"RUB\">100.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Dt><Dt>2024-04-28",
        "<Cd>PRCD</Cd></CdOrPrtry></Tp><Amt Ccy=\"RUB\">100.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Dt><Dt>2024-04-27",
    );
    assert_eq!(period(&previous_day), Ok((date!(2024 - 04 - 28), date!(2024 - 04 - 28))));
    // FrToDt wins over the balances.
    let wider = good.replace("<ToDtTm>2024-04-28T23:59:59+03:00", "<ToDtTm>2024-04-30T23:59:59+03:00");
    assert_eq!(period(&wider), Ok((date!(2024 - 04 - 28), date!(2024 - 04 - 30))));
    // No period stated: the booking dates', not the day the file was created (29 April).
    let unstated = no_fr_to_dt.replace("<Cd>OPBD</Cd>", "<Cd>ITBD</Cd>");
    assert_eq!(period(&unstated), Ok((date!(2024 - 04 - 28), date!(2024 - 04 - 28))));
}

#[test]
fn an_entry_booked_outside_its_statement_period_is_refused() {
    let good = statement(ACCOUNT, &entries(), SUMMARY);
    let late = good.replace(
        "<BookgDt><Dt>2024-04-28</Dt></BookgDt><AcctSvcrRef>",
        "<BookgDt><Dt>2024-04-29</Dt></BookgDt><AcctSvcrRef>",
    );
    assert_eq!(
        check(&late),
        Err("line 15: the line is booked on 2024-04-29, outside the period 2024-04-28..2024-04-28 of account \
             40702810900000000001's section on line 5"
            .into())
    );
}

#[test]
fn a_declared_windows_1251_encoding_is_refused() {
    let good = statement(ACCOUNT, &entries(), SUMMARY).replace("encoding=\"UTF-8\"", "encoding=\"windows-1251\"");
    assert_eq!(
        check(&good),
        Err("line 1: camt.053 files are read as UTF-8 only; this one declares windows-1251".into())
    );
}

/// Bytes produced on the fly: `head`, then `filler` repeated up to `total` bytes, never held in memory.
fn hostile(head: &str, filler: &'static [u8], total: u64) -> impl std::io::BufRead {
    use std::io::Read;
    let repeated = std::iter::repeat(filler).flatten().copied();
    struct Source<I>(I);
    impl<I: Iterator<Item = u8>> Read for Source<I> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let mut count = 0;
            for (slot, byte) in out.iter_mut().zip(&mut self.0) {
                *slot = byte;
                count += 1;
            }
            Ok(count)
        }
    }
    std::io::BufReader::new(std::io::Cursor::new(head.as_bytes().to_vec()).chain(Source(repeated).take(total)))
}

#[test]
fn a_64_mb_hostile_file_fails_fast_with_a_clear_error() {
    let head = "<Document><BkToCstmrStmt><Stmt><Acct><Id><Othr><Id>40702810900000000001</Id></Othr></Id></Acct>\n";
    let limits = Limits { max_lines: 100 };
    let cases: [(&[u8], &str); 3] = [
        (b"a", "line 2: the XML is malformed: I/O error: more than 64 KiB without markup; this is not a statement"),
        (b"text<!-- split -->", "line 2: a value is longer than 64 KiB; this is not a statement"),
        (b"<AddtlNtryInf>x</AddtlNtryInf>", "line 2: the Ntry that starts on line 2 holds more than 4 MiB"),
    ];
    for (filler, expected) in cases {
        let head = if expected.contains("Ntry") { format!("{head}<Ntry>") } else { head.to_owned() };
        let head = head.as_str();
        let started = std::time::Instant::now();
        let mut read = 0;
        let got =
            validate(hostile(head, filler, 64 << 20), StatementFormat::Camt053, None, &limits, &mut |bytes, _| {
                read = bytes
            });
        assert_eq!(got.map(|_| ()).map_err(|e| e.to_string()), Err(expected.to_owned()));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{expected}: {:?}", started.elapsed());
    }
}

#[test]
fn each_bad_statement_is_refused_with_its_line_and_reason() {
    let good = statement(ACCOUNT, &entries(), SUMMARY);
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("<Amt Ccy=\"RUB\">1000.00</Amt>", "<Amt Ccy=\"RUB\">1000.005</Amt>"),
            "line 15: Amt '1000.005' has three decimals; amounts have at most 2",
        ),
        (
            good.replace("<Amt Ccy=\"RUB\">1000.00</Amt>", "<Amt Ccy=\"RUB\">999.00</Amt>"),
            "line 12: the Ntry's Amt is 1500.00, its TxDtls add up to 1499.00",
        ),
        (
            good.replace("<Amt Ccy=\"RUB\">1000.00</Amt>", "<Amt Ccy=\"USD\">1000.00</Amt>"),
            "line 15: Amt is in USD, the account is in RUB",
        ),
        (
            good.replace(ACCOUNT, "DE89370400440532013000"),
            "line 8: Acct/Id 'DE89370400440532013000' is not an account number: must be 20 digits",
        ),
        (
            good.replace("<Sum>1500.00</Sum>", "<Sum>1400.00</Sum>"),
            "line 5: account 40702810900000000001: the credits add up to 1500.00, the statement says 1400.00",
        ),
        (
            good.replace("<Amt Ccy=\"RUB\">1400.00</Amt>", "<Amt Ccy=\"RUB\">1500.00</Amt>"),
            "line 5: account 40702810900000000001: opening -100.00 + credits 1500.00 - debits 0.00 is 1400.00, the statement says the closing balance is 1500.00",
        ),
        (
            good.replace("<CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK", "<CdtDbtInd>CR</CdtDbtInd><Sts><Cd>BOOK"),
            "line 12: CdtDbtInd 'CR' must be CRDT or DBIT",
        ),
        (
            good.replace(
                "<BookgDt><Dt>2024-04-28</Dt></BookgDt><AcctSvcrRef>",
                "<BookgDt><Dt>28.04.2024</Dt></BookgDt><AcctSvcrRef>",
            ),
            "line 13: BookgDt '28.04.2024' is not a date (yyyy-mm-dd)",
        ),
        (
            good.replace("<Refs><InstrId>18</InstrId></Refs><AmtDtls>", "<AmtDtls>")
                .replace("<AcctSvcrRef>B-1</AcctSvcrRef>", ""),
            "line 22: the entry has no document number (Refs/EndToEndId, InstrId or AcctSvcrRef)",
        ),
        (
            good.replace("</Stmt>", ""),
            "line 26: the XML is malformed: ill-formed document: expected `</Stmt>`, but `</BkToCstmrStmt>` was found",
        ),
        (
            good.replace("Оплата по счету 17", "Оплата\u{0}по счету 17"),
            "line 15: a control character (U+0000) in NtryDtls/TxDtls/RmtInf/Ustrd",
        ),
        (
            "<Document><Other/></Document>".to_owned(),
            "line 1: the file has no BkToCstmrStmt/Stmt; this is not a camt.053 statement",
        ),
    ];
    let mismatches: Vec<String> = cases
        .into_iter()
        .filter_map(|(text, expected)| {
            let got = check(&text);
            (got != Err(expected.to_owned())).then(|| format!("{got:?} != {expected}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
