//! Bank statements for the tests of the statement faces: a 1C ClientBankExchange file built from a few
//! documents (its totals computed, so it is valid), the sample files in `docs/samples/`, and uploads.

use serde_json::Value;

use super::TestServer;

/// The company's account every built statement is for.
pub const ACCOUNT: &str = "40702810900000012345";
/// An INN of an organization the notices create (valid checksum).
pub const PAYER: &str = "7707083893";
/// A valid INN no organization has until a line of it is applied.
pub const STRANGER: &str = "7701000001";

/// One credit document of a built statement: booked and dated on `date` (`dd.mm.yyyy`).
#[derive(Debug, Clone)]
pub struct Credit {
    pub number: &'static str,
    pub date: &'static str,
    pub kopecks: i64,
    pub payer_inn: &'static str,
}

fn rubles(kopecks: i64) -> String {
    format!("{}.{:02}", kopecks / 100, kopecks % 100)
}

/// A 1C ClientBankExchange statement (UTF-8) of `credits` to [`ACCOUNT`] from an opening balance of zero.
pub fn one_c(credits: &[Credit]) -> String {
    let first = credits.first().map_or("28.04.2024", |credit| credit.date);
    let last = credits.last().map_or("28.04.2024", |credit| credit.date);
    let total: i64 = credits.iter().map(|credit| credit.kopecks).sum();
    let mut text = format!(
        "1CClientBankExchange\r\nВерсияФормата=1.03\r\nКодировка=Windows\r\nОтправитель=Бухгалтерия\r\nПолучатель=\r\n\
         ДатаСоздания={last}\r\nВремяСоздания=10:00:00\r\nДатаНачала={first}\r\nДатаКонца={last}\r\nРасчСчет={ACCOUNT}\r\n\
         СекцияРасчСчет\r\nДатаНачала={first}\r\nДатаКонца={last}\r\nРасчСчет={ACCOUNT}\r\nНачальныйОстаток=0.00\r\n\
         ВсегоПоступило={}\r\nВсегоСписано=0.00\r\nКонечныйОстаток={}\r\nКонецРасчСчет\r\n",
        rubles(total),
        rubles(total)
    );
    for credit in credits {
        text.push_str(&format!(
            "СекцияДокумент=Платежное поручение\r\nНомер={}\r\nДата={}\r\nСумма={}\r\nПлательщикСчет=40702810100000000001\r\n\
             Плательщик=ООО Плательщик\r\nПлательщикИНН={}\r\nПлательщик1=ООО Плательщик\r\nПлательщикБИК=044525225\r\n\
             ПолучательСчет={ACCOUNT}\r\nПолучатель=ООО Получатель\r\nПолучательИНН=7702000004\r\nДатаПоступило={}\r\n\
             ВидОплаты=01\r\nОчередность=5\r\nНазначениеПлатежа=Оплата по счету {}\r\nКонецДокумента\r\n",
            credit.number,
            credit.date,
            rubles(credit.kopecks),
            credit.payer_inn,
            credit.date,
            credit.number
        ));
    }
    text.push_str("КонецФайла\r\n");
    text
}

/// The bytes of a sample file in `docs/samples/`.
pub fn sample(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/samples").join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Uploads `body` as `content_type` to `POST /api/v1/statements/{query}` with `client`.
pub async fn upload_as(
    server: &TestServer,
    client: &reqwest::Client,
    body: impl Into<reqwest::Body>,
    content_type: &str,
    query: &str,
) -> (u16, Value) {
    let response = client
        .post(server.url(&format!("/api/v1/statements/{query}")))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads `body` as the admin, as `application/octet-stream`.
pub async fn upload(server: &TestServer, body: impl Into<reqwest::Body>, query: &str) -> (u16, Value) {
    upload_as(server, &server.client, body, "application/octet-stream", query).await
}
