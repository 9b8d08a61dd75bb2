//! The one `multipart/form-data` body the console reads: the statement upload form (a file and a few text
//! fields). A small parser of RFC 7578 bodies held in memory (the upload is bounded by the statement size
//! limit before it gets here), so the console needs no multipart dependency for one form.

use std::ops::Range;

/// The most parts a form may have: the upload form has four.
const MAX_PARTS: usize = 16;
/// The longest header block of one part.
const MAX_PART_HEADERS: usize = 4096;

/// One part of a form: its field name, the file name if it is a file, and where its bytes lie in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field's name.
    pub name: String,
    /// The file name the browser sent, for a file field.
    pub file_name: Option<String>,
    /// The part's content, as a range of the body.
    pub content: Range<usize>,
}

/// The boundary of a `multipart/form-data` content type, or `None` for any other content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut pieces = content_type.split(';');
    let mime = pieces.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    pieces
        .find_map(|piece| {
            let (key, value) = piece.split_once('=')?;
            key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
        })
        .filter(|boundary| !boundary.is_empty() && boundary.len() <= 70)
}

/// The parts of a multipart body with `boundary`, or why it is malformed.
pub fn parts(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let opening = format!("--{boundary}").into_bytes();
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let malformed = |why: &str| format!("the upload is malformed: {why}");
    // The first boundary may follow a preamble; `find` on "\r\n--" misses it at the very start.
    let mut at = if body.starts_with(&opening) {
        opening.len()
    } else {
        find(body, &delimiter, 0).ok_or_else(|| malformed("no boundary"))? + delimiter.len()
    };
    let mut found = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(found);
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err(malformed("a boundary is not followed by a line end"));
        }
        if found.len() == MAX_PARTS {
            return Err(malformed("too many parts"));
        }
        let headers_start = at + 2;
        let headers_end = find(body, b"\r\n\r\n", headers_start)
            .filter(|end| end - headers_start <= MAX_PART_HEADERS)
            .ok_or_else(|| malformed("a part's headers do not end"))?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]);
        let (name, file_name) = disposition(&headers).ok_or_else(|| malformed("a part has no form-data name"))?;
        let content_start = headers_end + 4;
        let content_end =
            find(body, &delimiter, content_start).ok_or_else(|| malformed("the last part does not end"))?;
        found.push(Part { name, file_name, content: content_start..content_end });
        at = content_end + delimiter.len();
    }
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(headers: &str) -> Option<(String, Option<String>)> {
    let line = headers.split("\r\n").find(|line| {
        line.split_once(':').is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut name = None;
    let mut file_name = None;
    for (key, value) in parameters(value) {
        if key.eq_ignore_ascii_case("name") {
            name = Some(value);
        } else if key.eq_ignore_ascii_case("filename") {
            file_name = Some(value);
        }
    }
    Some((name?, file_name))
}

/// The `key=value` parameters after a header value's first `;`. A quoted value runs to its closing quote, `;`
/// included (browsers send a file name's own `"` as `%22`, so a quote inside a value never needs escaping).
fn parameters(value: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Some((_, mut rest)) = value.split_once(';') else { return found };
    loop {
        let Some((key, after)) = rest.split_once('=') else { return found };
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let Some(end) = quoted.find('"') else { return found };
                (&quoted[..end], quoted[end + 1..].split_once(';').map(|(_, next)| next))
            }
            None => match after.split_once(';') {
                Some((value, next)) => (value.trim(), Some(next)),
                None => (after.trim(), None),
            },
        };
        // A piece without `=` before this one (`; x; name=…`) is skipped with the key's leading part.
        let key = key.rsplit(';').next().unwrap_or(key).trim();
        found.push((key.to_owned(), value.to_owned()));
        match next {
            Some(next) => rest = next,
            None => return found,
        }
    }
}

/// The first position of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= haystack.len() {
        let offset = haystack[at..].iter().position(|&byte| byte == first)?;
        at += offset;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\nauto\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"s.txt\"\r\nContent-Type: text/plain\r\n\r\n\
line one\r\n--X not the boundary\r\n\r\n--XyZ--\r\n";

    #[test]
    fn a_browsers_upload_is_split_into_its_fields_and_file() {
        assert_eq!(boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(), Some("XyZ"));
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        let found = parts(BODY, "XyZ").unwrap_or_default();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].name.as_str(), &BODY[found[0].content.clone()]), ("format", &b"auto"[..]));
        assert_eq!(found[1].file_name.as_deref(), Some("s.txt"));
        assert_eq!(&BODY[found[1].content.clone()], b"line one\r\n--X not the boundary\r\n");
    }

    #[test]
    fn a_truncated_or_foreign_body_is_refused() {
        assert!(parts(&BODY[..BODY.len() - 12], "XyZ").is_err());
        assert!(parts(b"just bytes", "XyZ").is_err());
        assert!(parts(b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", "XyZ").is_err());
    }

    #[test]
    fn a_quoted_file_name_is_read_whole_with_its_semicolons() {
        let header = "Content-Disposition: form-data; name=\"file\"; filename=\"april; final=1.txt\"";
        assert_eq!(disposition(header), Some(("file".to_owned(), Some("april; final=1.txt".to_owned()))));
        let bare = "content-disposition: form-data; flag; NAME=format";
        assert_eq!(disposition(bare), Some(("format".to_owned(), None)));
    }
}
