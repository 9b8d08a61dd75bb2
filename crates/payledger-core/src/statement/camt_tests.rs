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
    assert_eq!(check(&repeated), Err("line 29: account 40702810900000000001 has a second Stmt".into()));
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
