//! Reading SLURM's delimited text output (`sacct -P`, `squeue -o`) so that no field's content can
//! shift another field or make a record of its own.
//!
//! Why: job names, submit lines and work directories are typed by users and SLURM prints them
//! as they are. A fixed delimiter (`|`, or 0x1f) can be typed into a name, and a newline in a
//! submit line followed by a line shaped like a record used to be read as a record of someone
//! else's job. So each call asks SLURM for a delimiter nobody can know in advance: 0x1f, 12
//! random letters and digits, 0x1f ([`Delimiter::random`]), and the output is cut into records
//! by counting delimiters, not lines:
//!
//! - a record is exactly `fields` fields, `fields − 1` delimiters;
//! - SLURM ends each record with a newline, and the first field (a job id) never holds one, so
//!   the last field of a record ends at the LAST newline before the next record's first
//!   delimiter — whatever newlines the user's text holds.
//!
//! The result is *canonical* text: one record per line, fields separated by 0x1f, and every
//! field free of control characters (each replaced by U+FFFD, as is any invalid UTF-8), so the
//! parsers downstream may split on lines and on 0x1f. What was replaced is counted.

use rand::Rng;

/// The separator of canonical text (what the parsers split on).
pub const CANONICAL: char = '\u{1f}';

/// A per-call random field delimiter for SLURM's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiter(String);

impl Delimiter {
    /// 0x1f, 12 random ASCII letters and digits, 0x1f: about 71 bits, drawn for each call, so a
    /// job's text (written before the call) cannot hold it but by a 1-in-10^21 guess. Short,
    /// because sacct prints it 36 times a line: it is most of what a window's output grows by.
    pub fn random() -> Delimiter {
        let mut rng = rand::thread_rng();
        let middle: String = (0..12).map(|_| char::from(rng.sample(rand::distributions::Alphanumeric))).collect();
        Delimiter(format!("\u{1f}{middle}\u{1f}"))
    }

    /// A fixed delimiter (recorded fixtures, tests).
    pub fn fixed(text: &str) -> Delimiter {
        Delimiter(text.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Canonical text and what had to be changed to make it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Canonical {
    /// One record per line, fields separated by [`CANONICAL`].
    pub text: String,
    pub records: usize,
    /// Fields in which control characters or invalid UTF-8 were replaced.
    pub fields_replaced: usize,
    /// Fields that were not valid UTF-8 (a subset of `fields_replaced`).
    pub fields_not_utf8: usize,
    /// Output left over that is not a whole record (with its start), e.g. a truncated last line.
    pub leftover: Option<String>,
    /// Lines before a record's first field that belong to no record (skipped).
    pub junk_lines: usize,
}

/// Finds the delimiter: its first byte with memchr (dense in SLURM's output, so this beats a
/// general substring search), then the rest compared in place.
struct Tokens<'a> {
    raw: &'a [u8],
    needle: &'a [u8],
}

impl Tokens<'_> {
    /// The first delimiter starting at or after `from`.
    fn find(&self, mut from: usize) -> Option<usize> {
        let first = *self.needle.first()?;
        while let Some(off) = memchr::memchr(first, self.raw.get(from..)?) {
            let at = from + off;
            if self.raw[at..].starts_with(self.needle) {
                return Some(at);
            }
            from = at + 1;
        }
        None
    }
}

/// Cuts `raw` (the output of a command given `delimiter`) into records of `fields` fields and
/// writes them as canonical text.
pub fn canonicalize(raw: &[u8], delimiter: &Delimiter, fields: usize) -> Canonical {
    let needle = delimiter.0.as_bytes();
    let tokens = Tokens { raw, needle };
    let mut out = Canonical { text: String::with_capacity(raw.len()), ..Canonical::default() };
    let mut start = 0usize; // start of the current record
    let mut next_token = tokens.find(0); // the first delimiter not yet used
    let mut field_bounds: Vec<(usize, usize)> = Vec::with_capacity(fields);
    let leftover = |start: usize| String::from_utf8_lossy(&raw[start..raw.len().min(start + 200)]).into_owned();
    loop {
        // Skip blank lines between records.
        while start < raw.len() && (raw[start] == b'\n' || raw[start] == b'\r') {
            start += 1;
        }
        if start >= raw.len() {
            break;
        }
        field_bounds.clear();
        let mut from = start;
        while field_bounds.len() + 1 < fields {
            match next_token {
                Some(at) if at >= from => {
                    field_bounds.push((from, at));
                    from = at + needle.len();
                    next_token = tokens.find(from);
                }
                _ => break,
            }
        }
        if field_bounds.len() + 1 < fields {
            out.leftover = Some(leftover(start));
            break;
        }
        // The last field runs to the last newline before the next record's first delimiter.
        let (end, next) = match next_token {
            Some(at) => match memchr::memrchr(b'\n', &raw[from..at]) {
                Some(nl) => (from + nl, from + nl + 1),
                None => {
                    // The next delimiter is inside this record's last field: not SLURM's output.
                    out.leftover = Some(leftover(start));
                    break;
                }
            },
            None => {
                let mut end = raw.len();
                while end > from && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
                    end -= 1;
                }
                (end, raw.len())
            }
        };
        field_bounds.push((from, end));
        // The first field (a job id) never holds a newline: lines before its last one are junk.
        let (a, b) = field_bounds[0];
        if let Some(nl) = memchr::memrchr(b'\n', &raw[a..b]) {
            out.junk_lines += memchr::memchr_iter(b'\n', &raw[a..a + nl + 1]).count();
            field_bounds[0].0 = a + nl + 1;
        }
        for (i, &(a, b)) in field_bounds.iter().enumerate() {
            if i > 0 {
                out.text.push(CANONICAL);
            }
            push_clean(&mut out, &raw[a..b]);
        }
        out.text.push('\n');
        out.records += 1;
        start = next;
    }
    out
}

/// Whether `bytes` are printable ASCII (0x20..=0x7e): eight bytes at a time.
fn printable_ascii(bytes: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte < 0x20, ≥ 0x80, or 0x7f (x + 1 has its high bit) makes the word fail.
        let below_space = x.wrapping_sub(LOW * 0x20) & !x;
        let del = (x ^ (LOW * 0x7f)).wrapping_sub(LOW) & !(x ^ (LOW * 0x7f));
        if (below_space | del | x) & HIGH != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// `text` with control characters replaced by U+FFFD, tab and line feed kept (a `--wrap`
/// script's lines): what a user typed into a job name, submit line or work dir cannot carry
/// terminal escapes, carriage returns or separators into a report. (Canonical text from
/// [`canonicalize`] has no line feeds in fields either: there they are replaced too.)
pub fn clean_text(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\t' && c != '\n';
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.chars().map(|c| if bad(c) { '\u{fffd}' } else { c }).collect())
}

/// `text` cut to at most `max` bytes at a character boundary, ending in "…" when cut (the
/// marker counts against `max`, so the result never exceeds it).
pub fn bounded_text(text: &str, max: usize) -> String {
    const MARK: &str = "\u{2026}";
    if text.len() <= max {
        return text.to_string();
    }
    let mark = if max >= MARK.len() { MARK } else { "" };
    let mut end = max - mark.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = String::with_capacity(end + mark.len());
    cut.push_str(&text[..end]);
    cut.push_str(mark);
    cut
}

/// Appends one field, replacing control characters (tab kept) and invalid UTF-8 by U+FFFD.
fn push_clean(out: &mut Canonical, bytes: &[u8]) {
    if printable_ascii(bytes) {
        // The common case, copied as is (printable ASCII is UTF-8).
        out.text.push_str(std::str::from_utf8(bytes).unwrap_or_default());
        return;
    }
    let (text, not_utf8) = match std::str::from_utf8(bytes) {
        Ok(text) => (std::borrow::Cow::Borrowed(text), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    };
    let mut replaced = not_utf8;
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.text.push('\u{fffd}');
            replaced = true;
        } else {
            out.text.push(c);
        }
    }
    out.fields_replaced += usize::from(replaced);
    out.fields_not_utf8 += usize::from(not_utf8);
}

/// For stand-in SLURM commands in tests: shell lines that print `fixture` (recorded with 0x1f
/// between fields) with the `--delimiter=` the command was given, as real sacct would.
#[cfg(test)]
pub(crate) fn shell_print_with_given_delimiter(fixture: &str) -> String {
    format!(
        "for a in \"$@\"; do case $a in --delimiter=*) delim=${{a#--delimiter=}};; esac; done\n\
         awk -v d=\"$delim\" 'BEGIN {{ FS = \"\\037\" }} {{ OFS = d; $1 = $1; print }}' {fixture}\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounded_text_cuts_at_a_character_boundary_within_the_bound() {
        use super::bounded_text;
        assert_eq!(bounded_text("short", 10), "short");
        let long = "é".repeat(100); // 200 bytes
        for max in [0, 1, 2, 3, 4, 5, 64, 199] {
            let cut = bounded_text(&long, max);
            assert!(cut.len() <= max, "{max}: {} bytes", cut.len());
            if max >= 5 {
                assert!(cut.ends_with('\u{2026}') && cut.starts_with("é"), "{max}: {cut}");
            }
        }
        assert_eq!(bounded_text(&long, 200), long);
    }

    use super::*;

    fn d() -> Delimiter {
        Delimiter::fixed("\u{1f}K3y\u{1f}")
    }

    fn raw(records: &[&[&str]]) -> Vec<u8> {
        let mut out = String::new();
        for r in records {
            out.push_str(&r.join(d().as_str()));
            out.push('\n');
        }
        out.into_bytes()
    }

    #[test]
    fn plain_records_come_out_one_per_line() {
        let c = canonicalize(&raw(&[&["1", "alice", "job a"], &["2", "bob", "job b"]]), &d(), 3);
        assert_eq!(c.text, "1\u{1f}alice\u{1f}job a\n2\u{1f}bob\u{1f}job b\n");
        assert_eq!((c.records, c.fields_replaced, c.leftover), (2, 0, None));
    }

    #[test]
    fn a_forged_record_inside_a_field_stays_inside_that_field() {
        // What a user types into a submit line: a newline, then a line shaped like a record of
        // another user's job (with the old fixed delimiter), then more text.
        let forged = "true\n99\u{1f}alice\u{1f}stolen\nx";
        let c =
            canonicalize(&raw(&[&["5", forged, "name|with\u{1f}odd\rbytes\nand lines"], &["6", "bob", "b"]]), &d(), 3);
        assert_eq!(c.records, 2);
        let lines: Vec<&str> = c.text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: Vec<&str> = lines[0].split('\u{1f}').collect();
        assert_eq!(first.len(), 3, "{first:?}");
        assert_eq!(first[0], "5");
        assert_eq!(first[1], "true\u{fffd}99\u{fffd}alice\u{fffd}stolen\u{fffd}x");
        assert_eq!(first[2], "name|with\u{fffd}odd\u{fffd}bytes\u{fffd}and lines");
        assert_eq!(lines[1], "6\u{1f}bob\u{1f}b");
        assert_eq!(c.fields_replaced, 2);
    }

    #[test]
    fn invalid_utf8_is_replaced_per_field_and_counted() {
        let mut bytes = b"7".to_vec();
        bytes.extend_from_slice(d().as_str().as_bytes());
        bytes.extend_from_slice(b"caf\xe9 latin-1");
        bytes.extend_from_slice(d().as_str().as_bytes());
        bytes.extend_from_slice("ünï\n".as_bytes());
        let c = canonicalize(&bytes, &d(), 3);
        assert_eq!(c.text, "7\u{1f}caf\u{fffd} latin-1\u{1f}ünï\n");
        assert_eq!((c.fields_replaced, c.fields_not_utf8), (1, 1));
    }

    #[test]
    fn lines_before_a_record_are_junk_and_the_record_survives() {
        let mut bytes = b"sacct: warning: something\n\nmore noise\n".to_vec();
        bytes.extend_from_slice(&raw(&[&["1", "a", "b"]]));
        let c = canonicalize(&bytes, &d(), 3);
        assert_eq!((c.text.as_str(), c.junk_lines), ("1\u{1f}a\u{1f}b\n", 3));
    }

    #[test]
    fn a_truncated_tail_is_left_over_not_a_record() {
        let mut bytes = raw(&[&["1", "a", "b"]]);
        bytes.extend_from_slice(b"2");
        bytes.extend_from_slice(d().as_str().as_bytes());
        bytes.extend_from_slice(b"half");
        let c = canonicalize(&bytes, &d(), 3);
        assert_eq!(c.records, 1);
        assert!(c.leftover.as_deref().is_some_and(|l| l.starts_with('2')), "{:?}", c.leftover);
    }

    #[test]
    fn the_word_at_a_time_check_agrees_with_the_byte_check() {
        for b in 0..=255u8 {
            for at in 0..11 {
                let mut bytes = b"abcdefghijk".to_vec();
                bytes[at] = b;
                assert_eq!(printable_ascii(&bytes), (0x20..0x7f).contains(&b), "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn random_delimiters_differ_and_have_the_shape_slurm_is_given() {
        let (a, b) = (Delimiter::random(), Delimiter::random());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 14);
        assert!(a.as_str().starts_with('\u{1f}') && a.as_str().ends_with('\u{1f}'));
        assert!(a.as_str()[1..13].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn any_bytes_give_no_panic_and_only_clean_lines() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            let mut bytes = Vec::new();
            for _ in 0..(seed % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 5 {
                    0 => bytes.extend_from_slice(d().as_str().as_bytes()),
                    1 => bytes.push(b'\n'),
                    _ => bytes.push((seed >> 24) as u8),
                }
            }
            let c = canonicalize(&bytes, &d(), 3);
            for line in c.text.lines() {
                assert_eq!(line.split('\u{1f}').count(), 3, "{line:?}");
                assert!(!line.chars().any(|ch| ch.is_control() && ch != '\t' && ch != '\u{1f}'));
            }
            assert_eq!(c.text.lines().count(), c.records);
        }
    }
}
