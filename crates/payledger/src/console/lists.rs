//! What every list page of the console shares: the `<select>` choices and links with a query string; and how the
//! organizations and bank payments lists read their query strings and page.
//!
//! A list keeps its filters, order and page in the query string, so a link shows the same view. The payouts and
//! jobs lists read theirs differently (into typed queries, bad paging shown on the list): [`super::payout_lists`].

use std::collections::BTreeMap;

use super::{ConsoleError, percent_encode};

/// Rows per page of the organizations and payments lists unless the query says otherwise.
pub(super) const DEFAULT_PAGE_SIZE: i64 = 50;
/// The page sizes offered (any value from 1 to the largest is accepted).
const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];
/// The largest page of the organizations and payments lists.
pub(super) const MAX_PAGE_SIZE: i64 = 200;

/// A choice of a `<select>`.
#[derive(Debug, Clone)]
pub(super) struct Choice {
    /// What the form sends.
    pub(super) value: String,
    /// What the option says.
    pub(super) label: String,
    /// Whether it is the current one.
    pub(super) selected: bool,
}

/// The choices of a `<select>` from its `(value, label)` options, `current` selected.
pub(super) fn choices(options: &[(&str, &str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|&(value, label)| Choice { value: value.to_owned(), label: label.to_owned(), selected: value == current })
        .collect()
}

/// The page sizes offered, `size` selected (and offered too if it is not one of them).
pub(super) fn page_size_choices(size: i64) -> Vec<Choice> {
    let mut sizes = PAGE_SIZES.to_vec();
    if !sizes.contains(&size) {
        sizes.push(size);
        sizes.sort_unstable();
    }
    sizes
        .into_iter()
        .map(|value| Choice { value: value.to_string(), label: value.to_string(), selected: value == size })
        .collect()
}

/// `path?k=v&…` with the non-empty values percent-encoded.
pub(super) fn link(path: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", percent_encode(value)))
        .collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}

/// A page's query string: the first value of each name (a malformed one reads as empty).
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    /// Reads the raw query string.
    pub(super) fn parse(query: Option<String>) -> Params {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            map.entry(key).or_insert(value);
        }
        Params(map)
    }

    /// The trimmed value, `None` when absent or blank.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|value| value.trim()).filter(|value| !value.is_empty())
    }

    /// A positive integer parameter no larger than `max`.
    pub(super) fn number(&self, name: &str, default: i64, max: i64) -> Result<i64, ConsoleError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|value| (1..=max).contains(value))
                .ok_or_else(|| ConsoleError::BadRequest(format!("{name} must be a whole number from 1 to {max}"))),
        }
    }

    /// `page` and `page_size`; bad ones are the error page (400).
    pub(super) fn paging(&self) -> Result<Paging, ConsoleError> {
        let size = self.number("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let page = self.number("page", 1, 1_000_000)?;
        Ok(Paging { page, size })
    }
}

/// Which page of a list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Paging {
    /// The page number, from 1.
    pub(super) page: i64,
    /// Rows per page.
    pub(super) size: i64,
}

impl Paging {
    /// How many rows come before this page.
    pub(super) fn offset(self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }
}

/// The previous/next links of a list and where we are.
#[derive(Debug, Clone, Default)]
pub(super) struct Pager {
    /// The previous page, if there is one.
    pub(super) prev: Option<String>,
    /// What the link to `prev` says.
    pub(super) prev_label: &'static str,
    /// The next page, if there is one.
    pub(super) next: Option<String>,
    /// Where we are, in words.
    pub(super) summary: String,
}

impl Pager {
    /// For a list whose total is known. `params` are the list's other query parameters.
    pub(super) fn counted(path: &str, params: &[(&str, String)], paging: Paging, total: i64) -> Pager {
        let pages = ((total + paging.size - 1) / paging.size).max(1);
        let at = |page: i64| {
            let mut all = params.to_vec();
            if paging.size != DEFAULT_PAGE_SIZE {
                all.push(("page_size", paging.size.to_string()));
            }
            if page > 1 {
                all.push(("page", page.to_string()));
            }
            link(path, &all)
        };
        let first = paging.offset() + 1;
        let last = (paging.offset() + paging.size).min(total);
        let summary = if total == 0 {
            "Nothing found".to_owned()
        } else if first > total {
            format!("Page {} of {pages} ({total} in all): past the end", paging.page)
        } else {
            format!("{first}–{last} of {total} · page {} of {pages}", paging.page)
        };
        Pager {
            prev: (paging.page > 1).then(|| at((paging.page - 1).min(pages))),
            prev_label: "← Previous",
            next: (paging.page < pages).then(|| at(paging.page + 1)),
            summary,
        }
    }

    /// For a list read one row beyond the page, so whether a next page exists is known without counting,
    /// newest first by id: "Next" continues below the last row shown (`before`), so rows arriving meanwhile
    /// neither repeat nor hide rows; "Previous" goes back to the newest.
    pub(super) fn keyset(
        path: &str,
        params: &[(&str, String)],
        paging: Paging,
        shown: usize,
        last: Option<i64>,
    ) -> Pager {
        let at = |page: i64, before: Option<i64>| {
            let mut all = params.to_vec();
            if paging.size != DEFAULT_PAGE_SIZE {
                all.push(("page_size", paging.size.to_string()));
            }
            if let Some(before) = before {
                all.push(("page", page.to_string()));
                all.push(("before", before.to_string()));
            }
            link(path, &all)
        };
        let first = paging.offset() + 1;
        let summary = if shown == 0 {
            if paging.page > 1 { format!("Page {}: nothing here", paging.page) } else { "Nothing found".to_owned() }
        } else {
            format!("{first}–{} · page {}", paging.offset() + shown as i64, paging.page)
        };
        Pager {
            prev: (paging.page > 1).then(|| at(1, None)),
            prev_label: "← Newest",
            next: last.map(|last| at(paging.page + 1, Some(last))),
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_only_given_values() {
        assert_eq!(link("/a", &[("q", "x y&z".into()), ("sort", String::new())]), "/a?q=x%20y%26z");
        assert_eq!(link("/a", &[]), "/a");
    }

    #[test]
    fn choices_select_the_current_value() {
        let shown = choices(&[("", "Any"), ("dead", "Dead")], "dead");
        assert_eq!(
            shown.iter().map(|choice| (choice.value.as_str(), choice.selected)).collect::<Vec<_>>(),
            [("", false), ("dead", true)]
        );
        assert_eq!(
            page_size_choices(30).iter().map(|choice| choice.value.as_str()).collect::<Vec<_>>(),
            ["20", "30", "50", "100", "200"]
        );
    }
}
