//! How the payouts and jobs lists read their query strings and number their pages: the query is decoded into
//! a typed struct (a malformed one is the error page, 400); a bad page or page size is shown on the list itself
//! (400), with the other filters; the pager says "page N of M" and the count.
//!
//! The organizations and bank payments lists page differently: [`super::lists`].

use serde::Deserialize;

use super::ConsoleError;

/// Rows per page of the payouts and jobs lists, unless `page_size` says otherwise.
pub(super) const DEFAULT_PAGE_SIZE: i64 = 25;
/// The largest `page_size`.
pub(super) const MAX_PAGE_SIZE: i64 = 100;

/// Previous and next links of a list, and where it is.
#[derive(Debug, Clone, Default)]
pub(super) struct Pager {
    /// The page shown, from 1.
    pub(super) page: i64,
    /// How many pages there are (at least 1).
    pub(super) pages: i64,
    /// How many rows there are in all.
    pub(super) count: i64,
    /// The previous page (the last one, from beyond the end).
    pub(super) previous: Option<String>,
    /// The next page.
    pub(super) next: Option<String>,
    /// The first page, offered when the page asked for is beyond the end.
    pub(super) first: Option<String>,
}

impl Pager {
    /// The pager of page `page` of `count` rows, `page_size` a page; `link` makes a page's address.
    pub(super) fn new(page: i64, page_size: i64, count: i64, link: impl Fn(i64) -> String) -> Pager {
        let pages = if count == 0 { 1 } else { (count - 1) / page_size + 1 };
        Pager {
            page,
            pages,
            count,
            previous: (page > 1).then(|| link((page - 1).min(pages))),
            next: (page < pages).then(|| link(page + 1)),
            first: (page > pages).then(|| link(1)),
        }
    }
}

/// A query-string value that was given and is not blank.
pub(super) fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

/// Decodes a query string into `T`; a malformed one is a 400.
pub(super) fn decode_query<T: for<'de> Deserialize<'de> + Default>(raw: Option<String>) -> Result<T, ConsoleError> {
    match raw {
        None => Ok(T::default()),
        Some(raw) => serde_urlencoded::from_str(&raw)
            .map_err(|_| ConsoleError::BadRequest("The address has a malformed query string.".into())),
    }
}

/// `page`, `page_size` and the offset they give from the query, or what is wrong with them.
pub(super) fn paging(page: &Option<String>, page_size: &Option<String>) -> Result<(i64, i64, i64), String> {
    let page = match given(page) {
        None => 1,
        Some(text) => text.parse::<i64>().ok().filter(|page| *page >= 1).ok_or("The page must be 1 or more.")?,
    };
    let page_size = match given(page_size) {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
            .ok_or_else(|| format!("The page size must be between 1 and {MAX_PAGE_SIZE}."))?,
    };
    let offset = (page - 1)
        .checked_mul(page_size)
        .filter(|offset| offset.checked_add(page_size).is_some())
        .ok_or("The page is too large.")?;
    Ok((page, page_size, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_counted_and_linked() {
        let pager = Pager::new(2, 10, 25, |page| format!("?page={page}"));
        assert_eq!(
            (pager.pages, pager.previous.as_deref(), pager.next.as_deref()),
            (3, Some("?page=1"), Some("?page=3"))
        );
        let empty = Pager::new(1, 10, 0, |page| format!("?page={page}"));
        assert_eq!((empty.pages, empty.previous, empty.next), (1, None, None));
        let beyond = Pager::new(9, 10, 25, |page| format!("?page={page}"));
        assert_eq!(
            (beyond.previous.as_deref(), beyond.next, beyond.first.as_deref()),
            (Some("?page=3"), None, Some("?page=1"))
        );
    }

    #[test]
    fn paging_is_checked() {
        assert_eq!(paging(&None, &None), Ok((1, DEFAULT_PAGE_SIZE, 0)));
        assert_eq!(paging(&Some("3".into()), &Some("10".into())), Ok((3, 10, 20)));
        assert!(paging(&Some("0".into()), &None).is_err());
        assert!(paging(&Some("x".into()), &None).is_err());
        assert!(paging(&None, &Some("101".into())).is_err());
        assert!(paging(&Some(i64::MAX.to_string()), &None).is_err());
    }
}
