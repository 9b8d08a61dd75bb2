//! HTTP resources: one module per resource, each owning its handlers and their OpenAPI annotations.

pub mod access;
pub mod auth;
pub mod balances;
pub mod bulk;
mod bulk_schema;
pub mod docs;
pub mod extract;
pub mod gateway_events;
pub mod health;
pub mod jobs;
pub mod organizations;
pub mod payouts;
pub mod reconciliation;
pub mod reports;
pub mod schema;
pub mod statements;
pub mod users;
pub mod webhook;
pub mod webhook_endpoints;

use payledger_core::money::format_minor;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// An amount in roubles written as a JSON number with exactly two decimals (`145000.00`), produced from
/// integer kopecks. serde_json would print a float with as few digits as it can, so the number is
/// emitted as a raw literal instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonRubles(pub i64);

impl Serialize for JsonRubles {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let literal = RawValue::from_string(format_minor(self.0, 2)).map_err(serde::ser::Error::custom)?;
        literal.serialize(serializer)
    }
}

impl utoipa::PartialSchema for JsonRubles {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .description(Some("Roubles with exactly two decimals, written from integer kopecks"))
            .examples([serde_json::json!(145000.00)])
            .into()
    }
}

impl utoipa::ToSchema for JsonRubles {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rubles_print_as_numbers_with_two_decimals() {
        let json =
            serde_json::to_string(&serde_json::json!({"balance": serde_json::to_value(JsonRubles(14_500_000)).ok()}));
        // Through a Value the raw literal is parsed; printing the struct directly keeps it exact.
        assert!(json.is_ok());
        #[derive(Serialize)]
        struct Balance {
            balance: JsonRubles,
        }
        let text = serde_json::to_string(&Balance { balance: JsonRubles(14_500_000) }).unwrap_or_default();
        assert_eq!(text, r#"{"balance":145000.00}"#);
        let text = serde_json::to_string(&Balance { balance: JsonRubles(-5) }).unwrap_or_default();
        assert_eq!(text, r#"{"balance":-0.05}"#);
    }
}
