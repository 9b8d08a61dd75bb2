//! A document's fields as the file gives them, kept in one buffer.
//!
//! A 1C document has twenty to forty `Key=Value` lines. Kept as a pair of `String`s each, a million-line import
//! made some eighty allocations a line in the reading task and freed them in the ledger writer's thread, where
//! the cross-thread frees were a tenth of the writer's time. One buffer and one list of ends are two.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// The fields of one document, key by key in file order; a key may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawFields {
    /// Every key and value, one after the other.
    text: String,
    /// For each field, where its key ends and where its value ends in `text`; its key starts where the previous
    /// field's value ends.
    ends: Vec<(usize, usize)>,
}

impl RawFields {
    /// Appends a field.
    pub fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        let key_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((key_end, self.text.len()));
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The fields in file order, as (key, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let field = (&self.text[start..key_end], &self.text[key_end..value_end]);
            start = value_end;
            field
        })
    }

    /// The position and value of the first field named `key`.
    pub fn find(&self, key: &str) -> Option<(usize, &str)> {
        self.iter().enumerate().find(|(_, (name, _))| *name == key).map(|(at, (_, value))| (at, value))
    }

    /// Every key and value written one after the other, for a check that looks at each character of them all.
    pub fn all_text(&self) -> &str {
        &self.text
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for RawFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(fields: I) -> RawFields {
        let mut raw = RawFields::default();
        for (key, value) in fields {
            raw.push(key.as_ref(), value.as_ref());
        }
        raw
    }
}

/// A JSON array of `[key, value]` pairs, as statement lines store them.
impl Serialize for RawFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for field in self.iter() {
            seq.serialize_element(&field)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_in_file_order_with_repeated_and_empty_keys_and_values() {
        let raw: RawFields = [("Номер", "17"), ("Дата", ""), ("", "x"), ("Номер", "18")].into_iter().collect();
        assert_eq!(raw.len(), 4);
        assert_eq!(raw.iter().collect::<Vec<_>>(), [("Номер", "17"), ("Дата", ""), ("", "x"), ("Номер", "18")]);
        assert_eq!(raw.find("Номер"), Some((0, "17")));
        assert_eq!(raw.find("Дата"), Some((1, "")));
        assert_eq!(raw.find("Сумма"), None);
        assert!(RawFields::default().is_empty());
    }

    #[test]
    fn serialized_as_an_array_of_key_value_pairs() {
        let raw: RawFields = [("Плательщик1", "ООО \"Ромашка\""), ("Сумма", "1500.00")].into_iter().collect();
        assert_eq!(serde_json::to_string(&raw).unwrap(), r#"[["Плательщик1","ООО \"Ромашка\""],["Сумма","1500.00"]]"#);
        assert_eq!(serde_json::to_string(&RawFields::default()).unwrap(), "[]");
    }
}
