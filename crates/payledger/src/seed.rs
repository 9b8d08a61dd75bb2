//! Demo organizations: valid, checksummed INNs and plausible company names.

use payledger_core::Inn;

use crate::store::{Store, StoreError};

const FORMS: [&str; 3] = ["ООО", "АО", "ПАО"];
const FIRST: [&str; 12] = [
    "Северный",
    "Волжский",
    "Уральский",
    "Сибирский",
    "Балтийский",
    "Южный",
    "Центральный",
    "Восточный",
    "Приморский",
    "Донской",
    "Камский",
    "Невский",
];
const SECOND: [&str; 10] = [
    "Хлебозавод",
    "Трубопрокат",
    "Логистик",
    "Энергосбыт",
    "Агрохолдинг",
    "Текстиль",
    "Стройресурс",
    "Медтехника",
    "Телеком",
    "Судоремонт",
];

/// The `n`-th demo organization: the same `n` always gives the same INN and name, so seeding is idempotent.
pub fn demo_organization(n: u32) -> (Inn, String) {
    // A fixed odd multiplier spreads consecutive numbers over the 9-digit INN body space.
    let body = 770_000_000u64 + (u64::from(n) * 7_919_113) % 100_000_000;
    let form = FORMS[n as usize % FORMS.len()];
    let first = FIRST[n as usize % FIRST.len()];
    // Consecutive numbers walk both lists at different strides, so the first 120 names are all distinct.
    let second = SECOND[(n as usize / FIRST.len() + n as usize) % SECOND.len()];
    let suffix = if n as usize >= FIRST.len() * SECOND.len() { format!(" №{n}") } else { String::new() };
    (Inn::company_from_body(body), format!("{form} «{first} {second}{suffix}»"))
}

/// Creates the first `count` demo organizations that do not exist yet; returns them all.
pub async fn seed(store: &Store, count: u32) -> Result<Vec<(Inn, String)>, StoreError> {
    let orgs: Vec<(Inn, String)> = (0..count).map(demo_organization).collect();
    for chunk in orgs.chunks(1000) {
        store.ensure_organizations(chunk).await?;
    }
    Ok(orgs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn demo_organizations_are_valid_distinct_and_stable() {
        let orgs: Vec<_> = (0..5000).map(demo_organization).collect();
        assert!(orgs.iter().all(|(inn, _)| inn.has_valid_checksum()));
        assert_eq!(orgs.iter().map(|(inn, _)| inn.clone()).collect::<HashSet<_>>().len(), orgs.len());
        assert_eq!(orgs.iter().map(|(_, name)| name.clone()).collect::<HashSet<_>>().len(), orgs.len());
        assert_eq!(demo_organization(3), demo_organization(3));
    }
}
