//! Realistic bank statements and the bank's webhook notices for them, generated from a seed: for demos, load
//! tests and the reconciliation's own tests.
//!
//! Every day's operations come from an RNG seeded by the seed and the date, so two specs with the same seed
//! agree on every day they share (that is how [`GeneratorSpec::overlap`] makes a second file whose first day
//! repeats the first file's last day exactly). A file is written in two passes over the days: the first sums
//! the totals the header states, the second writes the documents; neither holds the file in memory.

use std::io::{self, BufWriter, Write};

use payledger_core::Inn;
use payledger_core::money::format_minor;
use payledger_core::statement::encoding::TextEncoding;
use payledger_core::statement::{AccountNumber, Direction, MOSCOW};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

/// The bank that keeps our account and books its own orders from its transit account.
const BANK_NAME: &str = "ПАО \"Банк Пример\"";
/// The made-up INNs' bodies (the first nine digits; the checksum is computed): no real company's INN appears in
/// generated files, samples or demos.
const BANK_INN_BODY: u64 = 770_000_101;
const BANK_BIK: &str = "044525187";
const BANK_TRANSIT_ACCOUNT: &str = "30233810000000000001";
/// Our company.
const OUR_NAME: &str = "ООО \"Пейледжер\"";
const OUR_INN_BODY: u64 = 770_000_202;
/// Our other account, at another bank, that an own transfer comes from (it has no section in the file).
const OUR_OTHER_ACCOUNT: &str = "40702810500000000777";

fn bank_inn() -> String {
    Inn::company_from_body(BANK_INN_BODY).as_str().to_owned()
}

fn our_inn() -> String {
    Inn::company_from_body(OUR_INN_BODY).as_str().to_owned()
}

/// The CSV mapping for [`OutputFormat::Csv`] files (delimiter `;`, header row, one account).
pub const CSV_MAPPING_TEMPLATE: &str = "booking_date=Дата проводки,amount=Сумма,direction=Направление,\
document_number=Номер,document_date=Дата документа,payer_inn=ИНН,payer_name=Контрагент,\
payer_account=Счет,payer_bik=БИК,purpose=Назначение,delimiter=;";

/// The file format and encoding written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// 1C ClientBankExchange 1.03 in Windows-1251, CRLF.
    OneCWindows1251,
    /// 1C ClientBankExchange 1.03 in UTF-8 with a byte-order mark, CRLF.
    OneCUtf8Bom,
    /// camt.053.001.08, UTF-8.
    Camt053,
    /// CSV, UTF-8, read with [`csv_mapping`].
    Csv,
}

/// What to generate. Fractions are per mille so no float takes part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorSpec {
    /// Seeds every choice.
    pub seed: u64,
    /// The first day of the statement.
    pub start: Date,
    /// How many days it covers.
    pub days: u32,
    /// How many paying companies there are.
    pub payers: u32,
    /// Operations booked per day.
    pub lines_per_day: u32,
    /// Our account.
    pub account: AccountNumber,
    /// The balance at the start of `start`, in kopecks.
    pub opening_balance: i64,
    /// Per mille of customer payments whose webhook was lost.
    pub lost_per_mille: u32,
    /// Per mille of operations that are debits (our payments out).
    pub debit_per_mille: u32,
    /// Per mille of credits that are bank orders from the bank's transit account.
    pub bank_order_per_mille: u32,
    /// Per mille of credits that are transfers from our own other account.
    pub own_transfer_per_mille: u32,
    /// Per mille of customer payments immediately repeated by an identical twin payment.
    pub twin_per_mille: u32,
    /// Per mille of documents dated one or two days before they were booked.
    pub backdated_per_mille: u32,
}

impl GeneratorSpec {
    /// A spec with realistic fractions: 5% lost notices, 10% debits, 2% bank orders, 1% own transfers, 1% twins,
    /// 30% backdated.
    pub fn new(seed: u64, start: Date, days: u32, payers: u32, lines_per_day: u32, account: AccountNumber) -> Self {
        GeneratorSpec {
            seed,
            start,
            days,
            payers: payers.max(1),
            lines_per_day,
            account,
            opening_balance: 100_000_000,
            lost_per_mille: 50,
            debit_per_mille: 100,
            bank_order_per_mille: 20,
            own_transfer_per_mille: 10,
            twin_per_mille: 10,
            backdated_per_mille: 300,
        }
    }

    /// The spec of the next statement: it starts on this one's last day (whose operations it repeats exactly)
    /// and covers `more_days` days after it, with the opening balance this statement had on that last day.
    pub fn overlap(&self, more_days: u32) -> GeneratorSpec {
        let last = self.days.saturating_sub(1);
        let payers = payers(self);
        let mut balance = self.opening_balance;
        for day in 0..last {
            balance += day_operations(self, &payers, day).iter().map(Operation::signed).sum::<i64>();
        }
        GeneratorSpec {
            start: self.start + Duration::days(i64::from(last)),
            days: more_days + 1,
            opening_balance: balance,
            ..self.clone()
        }
    }

    fn date(&self, day: u32) -> Date {
        self.start + Duration::days(i64::from(day))
    }

    fn end(&self) -> Date {
        self.date(self.days.saturating_sub(1))
    }
}

/// The CSV mapping spec for a generated CSV file of `account`.
pub fn csv_mapping(account: &AccountNumber) -> String {
    format!("{CSV_MAPPING_TEMPLATE},default_account={account},owner_inn={}", our_inn())
}

/// A webhook notice the bank sent (or lost) for a generated customer payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedNotice {
    /// The bank's operation id.
    pub operation_id: Uuid,
    /// The amount in kopecks.
    pub amount: i64,
    /// The payer.
    pub payer_inn: String,
    /// The payment document's number.
    pub document_number: String,
    /// The document date: Moscow midnight of the document's date, as an instant.
    pub document_date: OffsetDateTime,
    /// Whether the webhook never arrived.
    pub lost: bool,
}

impl GeneratedNotice {
    /// The JSON body as `/api/bank/webhook/` takes it (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "operation_id": self.operation_id.to_string(),
            "amount": format_minor(self.amount, 2),
            "payer_inn": self.payer_inn,
            "document_number": self.document_number,
            "document_date": utc_text(self.document_date),
        })
        .to_string()
    }
}

/// What a generated file contains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    /// Statement lines written.
    pub lines: u64,
    /// Credit lines and their sum in kopecks.
    pub credit_lines: u64,
    /// Sum of credits.
    pub credits: i64,
    /// Debit lines.
    pub debit_lines: u64,
    /// Sum of debits.
    pub debits: i64,
    /// The balance at the end.
    pub closing_balance: i64,
    /// Notices delivered (not lost).
    pub notices: u64,
    /// Notices lost.
    pub lost: u64,
    /// Credit lines that are no customer's payment (bank orders and own transfers): never to be matched or
    /// applied.
    pub not_payments: u64,
}

/// Writes the statement `spec` describes to `out` in `format`, and hands every customer payment's notice (lost
/// or not) to `on_notice`, in file order.
pub fn generate<W: Write>(
    spec: &GeneratorSpec,
    format: OutputFormat,
    out: W,
    on_notice: &mut dyn FnMut(&GeneratedNotice),
) -> io::Result<Generated> {
    let payers = payers(spec);
    let mut totals = Generated { closing_balance: spec.opening_balance, ..Generated::default() };
    for day in 0..spec.days {
        for operation in day_operations(spec, &payers, day) {
            totals.lines += 1;
            match operation.direction {
                Direction::Credit => {
                    totals.credit_lines += 1;
                    totals.credits += operation.amount;
                    totals.not_payments += u64::from(operation.bank_order || operation.own_transfer);
                }
                Direction::Debit => {
                    totals.debit_lines += 1;
                    totals.debits += operation.amount;
                }
            }
            totals.closing_balance += operation.signed();
        }
    }
    let mut writer = Writer::new(BufWriter::new(out), format);
    writer.header(spec, &totals)?;
    for day in 0..spec.days {
        for operation in day_operations(spec, &payers, day) {
            writer.operation(spec, &operation)?;
            if let Some(notice) = &operation.notice {
                if notice.lost {
                    totals.lost += 1;
                } else {
                    totals.notices += 1;
                }
                on_notice(notice);
            }
        }
    }
    writer.footer()?;
    writer.out.flush()?;
    Ok(totals)
}

#[derive(Debug, Clone)]
struct Party {
    inn: String,
    name: String,
    account: String,
    bik: String,
}

#[derive(Debug, Clone)]
struct Operation {
    direction: Direction,
    amount: i64,
    number: String,
    document_date: Date,
    booking_date: Date,
    other: Party,
    purpose: String,
    bank_order: bool,
    own_transfer: bool,
    reference: String,
    notice: Option<GeneratedNotice>,
}

impl Operation {
    fn signed(&self) -> i64 {
        match self.direction {
            Direction::Credit => self.amount,
            Direction::Debit => -self.amount,
        }
    }
}

const NAMES: [&str; 12] = [
    "Ромашка",
    "Василёк",
    "Север",
    "Технопарк",
    "Вектор",
    "Заря",
    "Гранит",
    "Альфа-Строй",
    "Меридиан",
    "Исток",
    "Лотос",
    "Кедр",
];
const FORMS: [&str; 3] = ["ООО", "АО", "ПАО"];

fn payers(spec: &GeneratorSpec) -> Vec<Party> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    (0..spec.payers)
        .map(|index| {
            let name = NAMES[index as usize % NAMES.len()];
            let form = FORMS[rng.random_range(0..FORMS.len())];
            let suffix = if index as usize >= NAMES.len() { format!("-{}", index) } else { String::new() };
            Party {
                inn: Inn::company_from_body(rng.random_range(100_000_000..1_000_000_000)).as_str().to_owned(),
                name: format!("{form} \"{name}{suffix}\""),
                account: format!("40702810{:012}", rng.random_range(0..1_000_000_000_000u64)),
                bik: format!("0445{:05}", rng.random_range(0..100_000)),
            }
        })
        .collect()
}

/// The day's operations, from an RNG seeded by the seed and the date alone.
fn day_operations(spec: &GeneratorSpec, payers: &[Party], day: u32) -> Vec<Operation> {
    let booking_date = spec.date(day);
    let day_seed =
        spec.seed ^ (u64::from(booking_date.to_julian_day().unsigned_abs())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = StdRng::seed_from_u64(day_seed);
    let per_mille = |rng: &mut StdRng, share: u32| rng.random_range(0..1000) < share;
    let mut operations = Vec::with_capacity(spec.lines_per_day as usize);
    let mut sequence = 0u32;
    while operations.len() < spec.lines_per_day as usize {
        sequence += 1;
        let back = if per_mille(&mut rng, spec.backdated_per_mille) { rng.random_range(1..=2) } else { 0 };
        let document_date = booking_date - Duration::days(back);
        // Numbers restart every year and repeat across payers: a real document number identifies nothing alone.
        let number = rng.random_range(1..=999u32).to_string();
        let amount = rng.random_range(100..50_000_000i64);
        // Every reference has one length: day, sequence and the twin digit (0 for all but a twin's second).
        let reference = format!("{}{:06}", booking_date.to_julian_day(), sequence);
        if per_mille(&mut rng, spec.debit_per_mille) {
            let payee = &payers[rng.random_range(0..payers.len())];
            operations.push(Operation {
                direction: Direction::Debit,
                amount,
                number: number.clone(),
                document_date,
                booking_date,
                other: payee.clone(),
                purpose: format!("Оплата по договору № {number}. Без налога (НДС)"),
                bank_order: false,
                own_transfer: false,
                reference: format!("{reference}0"),
                notice: None,
            });
            continue;
        }
        if per_mille(&mut rng, spec.bank_order_per_mille) {
            operations.push(Operation {
                direction: Direction::Credit,
                amount,
                number,
                document_date: booking_date,
                booking_date,
                other: bank_party(),
                purpose: "Возврат комиссии по банковскому ордеру".into(),
                bank_order: true,
                own_transfer: false,
                reference: format!("{reference}0"),
                notice: None,
            });
            continue;
        }
        if per_mille(&mut rng, spec.own_transfer_per_mille) {
            operations.push(Operation {
                direction: Direction::Credit,
                amount,
                number,
                document_date,
                booking_date,
                other: our_other_account(),
                purpose: "Перевод собственных средств. Без налога (НДС)".into(),
                bank_order: false,
                own_transfer: true,
                reference: format!("{reference}0"),
                notice: None,
            });
            continue;
        }
        let payer = &payers[rng.random_range(0..payers.len())];
        let twins = if per_mille(&mut rng, spec.twin_per_mille) { 2 } else { 1 };
        for twin in 0..twins {
            let notice = GeneratedNotice {
                operation_id: uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
                amount,
                payer_inn: payer.inn.clone(),
                document_number: number.clone(),
                document_date: moscow_midnight(document_date),
                lost: per_mille(&mut rng, spec.lost_per_mille),
            };
            operations.push(Operation {
                direction: Direction::Credit,
                amount,
                number: number.clone(),
                document_date,
                booking_date,
                other: payer.clone(),
                purpose: format!("Оплата по счету № {number} от {}. В т.ч. НДС 20%", dotted(document_date)),
                bank_order: false,
                own_transfer: false,
                reference: format!("{reference}{twin}"),
                notice: Some(notice),
            });
        }
    }
    operations.truncate(spec.lines_per_day as usize);
    operations
}

/// The bank itself, paying from its transit account (a bank order).
fn bank_party() -> Party {
    Party { inn: bank_inn(), name: BANK_NAME.into(), account: BANK_TRANSIT_ACCOUNT.into(), bik: BANK_BIK.into() }
}

/// Ourselves, at our account in another bank (an own transfer).
fn our_other_account() -> Party {
    Party { inn: our_inn(), name: OUR_NAME.into(), account: OUR_OTHER_ACCOUNT.into(), bik: "044525974".into() }
}

/// The instant Moscow's `date` begins: 28.04.2024 is `2024-04-27T21:00:00Z`.
fn moscow_midnight(date: Date) -> OffsetDateTime {
    date.midnight().assume_offset(MOSCOW).to_offset(time::UtcOffset::UTC)
}

fn utc_text(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn dotted(date: Date) -> String {
    format!("{:02}.{:02}.{:04}", date.day(), u8::from(date.month()), date.year())
}

fn rub(minor: i64) -> String {
    format_minor(minor, 2)
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            other => out.push(other),
        }
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([';', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

struct Writer<W: Write> {
    out: W,
    format: OutputFormat,
}

impl<W: Write> Writer<W> {
    fn new(out: W, format: OutputFormat) -> Self {
        Writer { out, format }
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        match self.format {
            OutputFormat::OneCWindows1251 => self.out.write_all(&TextEncoding::Windows1251.encode(text))?,
            OutputFormat::OneCUtf8Bom | OutputFormat::Camt053 | OutputFormat::Csv => {
                self.out.write_all(text.as_bytes())?
            }
        }
        self.out.write_all(match self.format {
            OutputFormat::Camt053 | OutputFormat::Csv => b"\n",
            OutputFormat::OneCWindows1251 | OutputFormat::OneCUtf8Bom => b"\r\n",
        })
    }

    fn header(&mut self, spec: &GeneratorSpec, totals: &Generated) -> io::Result<()> {
        let (start, end, account) = (spec.start, spec.end(), spec.account.as_str());
        match self.format {
            OutputFormat::OneCWindows1251 | OutputFormat::OneCUtf8Bom => {
                if self.format == OutputFormat::OneCUtf8Bom {
                    self.out.write_all(b"\xEF\xBB\xBF")?;
                }
                let created = end + Duration::days(1);
                for text in [
                    "1CClientBankExchange".to_owned(),
                    "ВерсияФормата=1.03".into(),
                    // 1C allows only Windows and DOS here; the UTF-8 file keeps Windows, as the readers tell the
                    // encoding from the bytes and never from this key.
                    "Кодировка=Windows".into(),
                    // A statement goes from the bank's system to the accounting program.
                    format!("Отправитель={BANK_NAME}"),
                    "Получатель=Бухгалтерия предприятия".into(),
                    format!("ДатаСоздания={}", dotted(created)),
                    "ВремяСоздания=09:15:00".into(),
                    format!("ДатаНачала={}", dotted(start)),
                    format!("ДатаКонца={}", dotted(end)),
                    format!("РасчСчет={account}"),
                    "Документ=Платежное поручение".into(),
                    "Документ=Банковский ордер".into(),
                    "СекцияРасчСчет".into(),
                    format!("ДатаНачала={}", dotted(start)),
                    format!("ДатаКонца={}", dotted(end)),
                    format!("РасчСчет={account}"),
                    format!("НачальныйОстаток={}", rub(spec.opening_balance)),
                    format!("ВсегоПоступило={}", rub(totals.credits)),
                    format!("ВсегоСписано={}", rub(totals.debits)),
                    format!("КонечныйОстаток={}", rub(totals.closing_balance)),
                    "КонецРасчСчет".into(),
                ] {
                    self.line(&text)?;
                }
                Ok(())
            }
            OutputFormat::Camt053 => {
                let balance = |code: &str, amount: i64, date: Date| {
                    let indicator = if amount < 0 { "DBIT" } else { "CRDT" };
                    format!(
                        "<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"RUB\">{}</Amt><CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{date}</Dt></Dt></Bal>",
                        rub(amount.abs())
                    )
                };
                let text = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.08\">\n<BkToCstmrStmt>\n<GrpHdr><MsgId>GEN-{seed}-{start}</MsgId><CreDtTm>{end}T23:59:00+03:00</CreDtTm></GrpHdr>\n<Stmt>\n<Id>STMT-{seed}-{start}</Id><CreDtTm>{end}T23:59:00+03:00</CreDtTm>\n<FrToDt><FrDtTm>{start}T00:00:00+03:00</FrDtTm><ToDtTm>{end}T23:59:59+03:00</ToDtTm></FrToDt>\n<Acct><Id><Othr><Id>{account}</Id></Othr></Id><Ccy>RUB</Ccy><Ownr><Nm>{owner}</Nm><Id><OrgId><Othr><Id>{owner_inn}</Id><SchmeNm><Cd>TXID</Cd></SchmeNm></Othr></OrgId></Id></Ownr></Acct>\n{opening}\n{closing}\n<TxsSummry><TtlNtries><NbOfNtries>{lines}</NbOfNtries></TtlNtries><TtlCdtNtries><NbOfNtries>{credit_lines}</NbOfNtries><Sum>{credits}</Sum></TtlCdtNtries><TtlDbtNtries><NbOfNtries>{debit_lines}</NbOfNtries><Sum>{debits}</Sum></TtlDbtNtries></TxsSummry>",
                    seed = spec.seed,
                    owner = xml(OUR_NAME),
                    owner_inn = our_inn(),
                    opening = balance("OPBD", spec.opening_balance, start),
                    closing = balance("CLBD", totals.closing_balance, end),
                    lines = totals.lines,
                    credit_lines = totals.credit_lines,
                    credits = rub(totals.credits),
                    debit_lines = totals.debit_lines,
                    debits = rub(totals.debits),
                );
                self.line(&text)
            }
            OutputFormat::Csv => {
                self.line("Дата проводки;Номер;Дата документа;Направление;Сумма;ИНН;Контрагент;Счет;БИК;Назначение")
            }
        }
    }

    fn operation(&mut self, spec: &GeneratorSpec, op: &Operation) -> io::Result<()> {
        let account = spec.account.as_str();
        let us = Party { inn: our_inn(), name: OUR_NAME.into(), account: account.into(), bik: BANK_BIK.into() };
        let (payer, payee) = match op.direction {
            Direction::Credit => (&op.other, &us),
            Direction::Debit => (&us, &op.other),
        };
        match self.format {
            OutputFormat::OneCWindows1251 | OutputFormat::OneCUtf8Bom => {
                let kind = if op.bank_order {
                    "Банковский ордер"
                } else {
                    "Платежное поручение"
                };
                let booked = match op.direction {
                    Direction::Credit => format!("ДатаПоступило={}", dotted(op.booking_date)),
                    Direction::Debit => format!("ДатаСписано={}", dotted(op.booking_date)),
                };
                let document = [
                    format!("СекцияДокумент={kind}"),
                    format!("Номер={}", op.number),
                    format!("Дата={}", dotted(op.document_date)),
                    format!("Сумма={}", rub(op.amount)),
                    format!("ПлательщикСчет={}", payer.account),
                    format!("Плательщик=ИНН {} {}", payer.inn, payer.name),
                    format!("ПлательщикИНН={}", payer.inn),
                    format!("Плательщик1={}", payer.name),
                    format!("ПлательщикБИК={}", payer.bik),
                    format!("ПолучательСчет={}", payee.account),
                    format!("Получатель=ИНН {} {}", payee.inn, payee.name),
                    format!("ПолучательИНН={}", payee.inn),
                    format!("Получатель1={}", payee.name),
                    format!("ПолучательБИК={}", payee.bik),
                    booked,
                    format!("ВидОплаты={}", if op.bank_order { "17" } else { "01" }),
                    "Очередность=5".into(),
                    format!("НазначениеПлатежа={}", op.purpose),
                    "КонецДокумента".into(),
                ]
                .join("\r\n");
                // One encoder call per document rather than per key: the encoder's setup dominates short lines.
                self.line(&document)
            }
            OutputFormat::Camt053 => {
                let (indicator, party, party_account, agent) = match op.direction {
                    Direction::Credit => ("CRDT", "Dbtr", "DbtrAcct", "DbtrAgt"),
                    Direction::Debit => ("DBIT", "Cdtr", "CdtrAcct", "CdtrAgt"),
                };
                let amount = rub(op.amount);
                let text = format!(
                    "<Ntry><Amt Ccy=\"RUB\">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{booked}</Dt></BookgDt><ValDt><Dt>{booked}</Dt></ValDt><AcctSvcrRef>{reference}</AcctSvcrRef><BkTxCd><Prtry><Cd>{code}</Cd></Prtry></BkTxCd>\n<NtryDtls><TxDtls><Refs><AcctSvcrRef>{reference}</AcctSvcrRef><EndToEndId>{number}</EndToEndId></Refs><Amt Ccy=\"RUB\">{amount}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>\n<RltdPties><{party}><Pty><Nm>{name}</Nm><Id><OrgId><Othr><Id>{inn}</Id><SchmeNm><Prtry>INN</Prtry></SchmeNm></Othr></OrgId></Id></Pty></{party}><{party_account}><Id><Othr><Id>{other_account}</Id></Othr></Id></{party_account}></RltdPties>\n<RltdAgts><{agent}><FinInstnId><ClrSysMmbId><MmbId>{bik}</MmbId></ClrSysMmbId></FinInstnId></{agent}></RltdAgts><RmtInf><Ustrd>{purpose}</Ustrd></RmtInf><RltdDts><AccptncDtTm>{accepted}</AccptncDtTm></RltdDts></TxDtls></NtryDtls></Ntry>",
                    booked = op.booking_date,
                    reference = op.reference,
                    code = if op.bank_order { "17" } else { "01" },
                    number = xml(&op.number),
                    name = xml(&op.other.name),
                    inn = op.other.inn,
                    other_account = op.other.account,
                    bik = op.other.bik,
                    purpose = xml(&op.purpose),
                    accepted = utc_text(moscow_midnight(op.document_date)),
                );
                self.line(&text)
            }
            OutputFormat::Csv => {
                let direction = match op.direction {
                    Direction::Credit => "credit",
                    Direction::Debit => "debit",
                };
                let fields = [
                    dotted(op.booking_date),
                    op.number.clone(),
                    dotted(op.document_date),
                    direction.into(),
                    rub(op.amount),
                    op.other.inn.clone(),
                    op.other.name.clone(),
                    op.other.account.clone(),
                    op.other.bik.clone(),
                    op.purpose.clone(),
                ];
                let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                self.line(&row.join(";"))
            }
        }
    }

    fn footer(&mut self) -> io::Result<()> {
        match self.format {
            OutputFormat::OneCWindows1251 | OutputFormat::OneCUtf8Bom => self.line("КонецФайла"),
            OutputFormat::Camt053 => self.line("</Stmt>\n</BkToCstmrStmt>\n</Document>"),
            OutputFormat::Csv => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
