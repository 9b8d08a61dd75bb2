//! Which text encoding a statement is in, told from its bytes, and reading it as UTF-8 with bounded memory.
//!
//! Russian banks still export 1C files in Windows-1251 (some in CP866), whatever the header's `Кодировка=` says,
//! so the header is never trusted: valid UTF-8 is UTF-8, otherwise the Cyrillic letter frequencies decide
//! between the two single-byte code pages.

use std::io::{self, BufRead, Read};

use encoding_rs::{Encoding, IBM866, UTF_8, WINDOWS_1251};

use super::StatementError;

/// How many bytes of the file's head are looked at to detect the encoding and the format.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The longest text line a line-oriented statement (1C, CSV) may have; longer means it is not a statement.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A statement's text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark (the mark is skipped).
    Utf8,
    /// Windows-1251.
    Windows1251,
    /// CP866 (DOS Cyrillic).
    Cp866,
}

impl TextEncoding {
    fn encoding(self) -> &'static Encoding {
        match self {
            TextEncoding::Utf8 => UTF_8,
            TextEncoding::Windows1251 => WINDOWS_1251,
            TextEncoding::Cp866 => IBM866,
        }
    }

    /// Encodes text for a file in this encoding (the generator's output); characters the code page lacks
    /// become HTML numeric references, as encoding_rs does.
    pub fn encode(self, text: &str) -> std::borrow::Cow<'_, [u8]> {
        self.encoding().encode(text).0
    }

    /// Decodes one whole line; `None` when the bytes are not valid in this encoding.
    pub fn decode_line(self, bytes: &[u8]) -> Option<String> {
        self.encoding().decode_without_bom_handling_and_without_replacement(bytes).map(|text| text.into_owned())
    }
}

/// Detects the encoding of a file from its first bytes (up to [`HEAD_BYTES`]).
pub fn detect_encoding(head: &[u8]) -> TextEncoding {
    let body = head.strip_prefix(UTF8_BOM).unwrap_or(head);
    if head.starts_with(UTF8_BOM) || utf8_up_to_a_cut_character(body) {
        return TextEncoding::Utf8;
    }
    if cyrillic_score(body, WINDOWS_1251) >= cyrillic_score(body, IBM866) {
        TextEncoding::Windows1251
    } else {
        TextEncoding::Cp866
    }
}

/// Whether `bytes` is UTF-8, allowing the head to end in the middle of a character.
fn utf8_up_to_a_cut_character(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(error) => error.error_len().is_none() && bytes.len() - error.valid_up_to() < 4,
    }
}

/// How Russian the text looks in `encoding`: letters weighted by their frequency in Russian text (per mille,
/// rounded), anything non-letter above ASCII (box drawing, symbols) counted against.
fn cyrillic_score(bytes: &[u8], encoding: &'static Encoding) -> i64 {
    const FREQUENT: &str = "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё";
    let (text, _, _) = encoding.decode(bytes);
    let mut score = 0i64;
    for c in text.chars().filter(|c| !c.is_ascii()) {
        let lower = c.to_lowercase().next().unwrap_or(c);
        score += match FREQUENT.chars().position(|f| f == lower) {
            // The most frequent letter scores 34, the rarest 1; a capital counts a little less than its lowercase.
            Some(rank) => (34 - rank as i64) * if lower == c { 2 } else { 1 },
            None => -20,
        };
    }
    score
}

/// A byte source that counts what was consumed: the bytes (for progress) and the newlines (for line numbers of
/// formats not read line by line, i.e. camt.053).
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    bytes: u64,
    newlines: u64,
}

impl<R: BufRead> CountingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> CountingReader<R> {
        CountingReader { inner, bytes: 0, newlines: 0 }
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.bytes
    }

    /// The 1-based line the next unconsumed byte is on.
    pub fn line(&self) -> u64 {
        self.newlines + 1
    }
}

impl<R: BufRead> Read for CountingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(out.len());
        out[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl<R: BufRead> BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(buffer) = self.inner.fill_buf() {
            let taken = &buffer[..amount.min(buffer.len())];
            self.newlines += taken.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.bytes += amount as u64;
        self.inner.consume(amount);
    }
}

/// A stream whose head was read to detect its encoding, put back in front of the rest.
pub type Rewound<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads the head of `reader` (up to [`HEAD_BYTES`]) without consuming it: the bytes are kept and handed back
/// in front of the rest by [`Peeked::into_reader`].
pub struct Peeked<R> {
    head: Vec<u8>,
    rest: R,
}

impl<R: BufRead> Peeked<R> {
    /// Reads up to [`HEAD_BYTES`] from `reader`.
    pub fn new(mut reader: R) -> io::Result<Peeked<R>> {
        let mut head = Vec::with_capacity(HEAD_BYTES.min(8192));
        (&mut reader).take(HEAD_BYTES as u64).read_to_end(&mut head)?;
        Ok(Peeked { head, rest: reader })
    }

    /// The head bytes.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The whole stream again, head first.
    pub fn into_reader(self) -> Rewound<R> {
        io::Cursor::new(self.head).chain(self.rest)
    }
}

/// Reads a line-oriented statement one text line at a time, decoded to UTF-8, with its 1-based line number.
pub struct TextLines<R> {
    reader: CountingReader<R>,
    encoding: TextEncoding,
    buffer: Vec<u8>,
    line: u64,
}

impl<R: BufRead> TextLines<R> {
    /// Detects the encoding from the head of `reader` and skips a UTF-8 byte-order mark.
    pub fn new(reader: R) -> Result<TextLines<Rewound<R>>, StatementError> {
        let peeked = Peeked::new(reader).map_err(|e| io_error(0, &e))?;
        let encoding = detect_encoding(peeked.head());
        let bom = peeked.head().starts_with(UTF8_BOM);
        let mut reader = CountingReader::new(peeked.into_reader());
        if bom {
            reader.consume(UTF8_BOM.len());
        }
        Ok(TextLines { reader, encoding, buffer: Vec::new(), line: 0 })
    }
}

impl<R: BufRead> TextLines<R> {
    /// The encoding the file was read in.
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// Bytes consumed so far (for progress).
    pub fn bytes(&self) -> u64 {
        self.reader.consumed()
    }

    /// The number of the line last returned (or attempted).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The next line without its CR/LF and its number, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<(u64, String)>, StatementError> {
        self.buffer.clear();
        let limit = MAX_LINE_BYTES as u64 + 2;
        let read = (&mut self.reader).take(limit).read_until(b'\n', &mut self.buffer);
        self.line += 1;
        let count = read.map_err(|e| io_error(self.line, &e))?;
        if count == 0 {
            return Ok(None);
        }
        if self.buffer.last() == Some(&b'\n') {
            self.buffer.pop();
        } else if count as u64 == limit {
            return Err(StatementError {
                line: self.line,
                reason: format!("the line is longer than {MAX_LINE_BYTES} bytes; this is not a statement"),
            });
        }
        if self.buffer.last() == Some(&b'\r') {
            self.buffer.pop();
        }
        match self.encoding.decode_line(&self.buffer) {
            Some(text) => Ok(Some((self.line, text))),
            None => Err(StatementError {
                line: self.line,
                reason: format!("the line is not valid {} text", self.encoding.encoding().name()),
            }),
        }
    }
}

/// The error for a failed read.
pub fn io_error(line: u64, error: &io::Error) -> StatementError {
    StatementError { line, reason: format!("the file could not be read: {error}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "СекцияДокумент=Платежное поручение\nПлательщик1=ООО Ромашка\nНазначениеПлатежа=Оплата по счету";

    #[test]
    fn the_encoding_is_told_from_the_bytes() {
        let (cp1251, _, _) = WINDOWS_1251.encode(SAMPLE);
        let (cp866, _, _) = IBM866.encode(SAMPLE);
        assert_eq!(detect_encoding(SAMPLE.as_bytes()), TextEncoding::Utf8);
        assert_eq!(detect_encoding(&[UTF8_BOM, SAMPLE.as_bytes()].concat()), TextEncoding::Utf8);
        assert_eq!(detect_encoding(&cp1251), TextEncoding::Windows1251);
        assert_eq!(detect_encoding(&cp866), TextEncoding::Cp866);
    }

    #[test]
    fn a_head_cut_inside_a_character_is_still_utf8() {
        let bytes = SAMPLE.as_bytes();
        assert_eq!(detect_encoding(&bytes[..bytes.len() - 1]), TextEncoding::Utf8);
    }

    #[test]
    fn lines_are_decoded_with_crlf_or_lf_and_numbered() {
        let (cp1251, _, _) = WINDOWS_1251.encode("Первая\r\nВторая\nТретья");
        let mut lines = TextLines::new(&cp1251[..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines.next_line(), Ok(Some((1, "Первая".to_owned()))));
        assert_eq!(lines.next_line(), Ok(Some((2, "Вторая".to_owned()))));
        assert_eq!(lines.next_line(), Ok(Some((3, "Третья".to_owned()))));
        assert_eq!(lines.next_line(), Ok(None));
    }

    #[test]
    fn an_overlong_line_is_an_error_not_an_allocation() {
        let long = vec![b'a'; MAX_LINE_BYTES + 10];
        let mut lines = TextLines::new(&long[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!(lines.next_line().is_err_and(|e| e.line == 1 && e.reason.contains("longer than")));
    }

    #[test]
    fn counting_reader_counts_newlines_consumed() {
        let mut reader = CountingReader::new(&b"a\nb\nc"[..]);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((reader.line(), reader.consumed()), (3, 5));
    }
}
