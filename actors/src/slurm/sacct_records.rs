//! The sacct text format we ask for (its fields and delimiter) and the cutting of sacct output
//! into records and fields, and into parts that parse independently.
//!
//! Kept apart from the parser proper (`sacct_parse`) because it is byte-level work tuned for
//! speed: lines are found with memchr and a line's 36 separators eight bytes at a time, and a
//! window's output is cut into parts so the importer parses one part while it stores another.

use crate::slurm::units::trim;
use std::borrow::Cow;

/// The field separator we ask sacct for (`--delimiter`).
pub const DELIMITER: char = '\u{1f}';

/// The `--format` fields, in order. JobName must stay last (see the module doc).
pub const FIELDS: [&str; 37] = [
    "JobIDRaw",
    "JobID",
    "State",
    "ExitCode",
    "User",
    "UID",
    "Account",
    "Partition",
    "QOS",
    "Submit",
    "Eligible",
    "Start",
    "End",
    "Timelimit",
    "ElapsedRaw",
    "NNodes",
    "NodeList",
    "AllocCPUS",
    "NTasks",
    "ReqMem",
    "AllocTRES",
    "ReqTRES",
    "TotalCPU",
    "UserCPU",
    "SystemCPU",
    "MaxRSS",
    "MaxRSSNode",
    "MaxRSSTask",
    "AveRSS",
    "MaxVMSize",
    "MaxDiskRead",
    "MaxDiskWrite",
    "TRESUsageInTot",
    "TRESUsageInMax",
    "WorkDir",
    "SubmitLine",
    "JobName",
];

/// One line that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sacct line {line}: field {field}: {reason} (text {text:?})")]
pub struct LineError {
    /// 1-based line number in the sacct output.
    pub line: usize,
    /// The sacct field name (or `line` for the shape of the line itself).
    pub field: &'static str,
    pub reason: String,
    /// The offending value (or the start of the line), at most 200 characters.
    pub text: String,
}

/// A piece of sacct output cut by [`split_parts`]: its text and how many lines precede it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    pub text: &'a str,
    pub lines_before: usize,
}

/// Cuts sacct output into parts of about `part_bytes`, each starting at a job line, so that the
/// parts parsed one after the other ([`parse_sacct_part`]) give exactly what [`parse_sacct`]
/// gives for the whole (the importer parses the next part while it stores the previous one).
///
/// A cut before a job line is safe: a line with every field cannot continue a multi-line record
/// (see `records`), and a job line resets which job the following step lines belong to.
pub fn split_parts(text: &str, part_bytes: usize) -> Vec<Part<'_>> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut lines_before) = (0, 0);
    while start < bytes.len() {
        let mut cut = bytes.len();
        let mut pos = match memchr::memchr(b'\n', bytes.get(start + part_bytes.max(1)..).unwrap_or_default()) {
            Some(i) => start + part_bytes.max(1) + i + 1,
            None => bytes.len(),
        };
        while pos < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            let line = &bytes[pos..end];
            let first = memchr::memchr(DELIMITER as u8, line).map_or(line, |i| &line[..i]);
            if delimiters(line) >= FIELDS.len() - 1 && !first.contains(&b'.') {
                cut = pos;
                break;
            }
            pos = end + 1;
        }
        parts.push(Part { text: &text[start..cut], lines_before });
        lines_before += memchr::memchr_iter(b'\n', &bytes[start..cut]).count();
        start = cut;
    }
    parts
}

/// The fields of a record: the first `FIELDS.len() − 1` pieces between separators, and the rest
/// of the line as the last field (JobName, which may itself contain a separator).
pub(crate) fn split_fields(line: &str) -> [&str; FIELDS.len()] {
    const LAST: usize = FIELDS.len() - 1;
    let bytes = line.as_bytes();
    let mut fields = [""; FIELDS.len()];
    let (mut found, mut start) = (0, 0);
    // Separators are dense (every ~10 bytes), so they are found 8 bytes at a time: a byte of
    // `x` is zero exactly where the line has a separator, and `zeros` has the top bit of each
    // such byte set (no carries cross bytes), which the loop walks with trailing_zeros.
    let mut at = 0;
    while found < LAST {
        let zeros = match bytes.get(at..at + 8) {
            Some(chunk) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let x = u64::from_le_bytes(word) ^ 0x1f1f_1f1f_1f1f_1f1f;
                const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
                !(((x & LOW) + LOW) | x | LOW)
            }
            None => bytes[at..]
                .iter()
                .enumerate()
                .fold(0u64, |z, (i, &b)| z | (u64::from(b == DELIMITER as u8) << (8 * i + 7))),
        };
        let mut zeros = zeros;
        while zeros != 0 && found < LAST {
            let i = at + (zeros.trailing_zeros() / 8) as usize;
            fields[found] = &line[start..i];
            found += 1;
            start = i + 1;
            zeros &= zeros - 1;
        }
        at += 8;
        if at >= bytes.len() {
            break;
        }
    }
    if found < LAST {
        // Fewer separators than fields (`records` rules this out): the rest fills the next slot.
        fields[found] = &line[start..];
    } else {
        fields[LAST] = &line[start..];
    }
    fields
}

/// Number of field separators in a line (a byte count: 0x1f is one byte in UTF-8).
pub(crate) fn delimiters(line: &[u8]) -> usize {
    memchr::memchr_iter(DELIMITER as u8, line).count()
}

/// The lines of `text` as `str::lines` gives them (`\n` or `\r\n` endings), found with memchr.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(i) => (rest[..i].strip_suffix('\r').unwrap_or(&rest[..i]), &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        Some(line)
    })
}

/// Whether the records of `text` (as [`records`] cuts them) are exactly the job and step ids of
/// `ids` (the output of the same query with `--format=JobIDRaw`), in order, with no line that
/// does not parse. JobIDRaw holds no user text, so that list cannot be forged; a job whose name,
/// submit line or work dir holds line breaks or separators shaped like records makes the two
/// differ (it can only add lines: a genuine record is never swallowed into another).
pub fn records_match_ids(text: &str, ids: &str) -> bool {
    let mut ids = lines(ids).map(trim).filter(|l| !l.is_empty());
    for record in records(text) {
        let Ok((_, record)) = record else { return false };
        let first = record.split(DELIMITER).next().unwrap_or_default();
        if ids.next() != Some(trim(first)) {
            return false;
        }
    }
    ids.next().is_none()
}

/// Splits sacct output into records: `(first line number, record text)`.
///
/// A record is normally one line, but SubmitLine keeps the newlines of a `--wrap` script, so a
/// line that stops one field short (inside SubmitLine) continues on the following lines until
/// the last field (JobName) is reached. Any other line with the wrong number of fields is
/// reported as malformed.
pub(crate) fn records(text: &str) -> impl Iterator<Item = Result<(usize, Cow<'_, str>), LineError>> {
    let want = FIELDS.len() - 1;
    let mut lines = lines(text).enumerate().peekable();
    std::iter::from_fn(move || loop {
        let (index, line) = lines.next()?;
        if trim(line).is_empty() {
            continue;
        }
        let count = delimiters(line.as_bytes());
        if count >= want {
            return Some(Ok((index + 1, Cow::Borrowed(line))));
        }
        if count == want - 1 {
            let mut joined = line.to_string();
            let mut total = count;
            while total < want {
                match lines.peek() {
                    Some((_, next)) if delimiters(next.as_bytes()) <= want - total => {
                        total += delimiters(next.as_bytes());
                        joined.push('\n');
                        joined.push_str(next);
                        lines.next();
                    }
                    _ => break,
                }
            }
            if total == want {
                return Some(Ok((index + 1, Cow::Owned(joined))));
            }
        }
        return Some(Err(LineError {
            line: index + 1,
            field: "line",
            reason: format!("{} fields, expected {}", count + 1, FIELDS.len()),
            text: line.chars().take(200).collect(),
        }));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record line with `id` first and the given last three fields (work dir, submit line, name).
    fn line(id: &str, tail: [&str; 3]) -> String {
        let mut fields = vec![id.to_string()];
        fields.extend((1..FIELDS.len() - 3).map(|i| format!("f{i}")));
        fields.extend(tail.iter().map(|t| t.to_string()));
        fields.join(&DELIMITER.to_string())
    }

    #[test]
    fn records_match_their_ids_even_across_a_multi_line_submit_line() {
        let text = format!(
            "{}\n{}\n{}\n",
            line("5", ["/tmp", "sbatch --wrap 'a\nb'", "job"]),
            line("5.batch", ["", "", "batch"]),
            line("6", ["/tmp", "sbatch x", "y"])
        );
        assert!(records_match_ids(&text, "5\n5.batch\n6\n"));
        assert!(!records_match_ids(&text, "5\n5.batch\n"), "a record the id list lacks");
        assert!(!records_match_ids(&text, "5\n5.batch\n6\n7\n"), "an id without a record");
    }

    #[test]
    fn a_record_forged_in_a_submit_line_makes_the_ids_differ() {
        let forged = line("99", ["/home/bob", "x", "stolen"]);
        let text =
            format!("{}\n{}\n", line("5", ["/tmp", &format!("true\n{forged}\nx"), "job"]), line("6", ["", "", "n"]));
        assert!(!records_match_ids(&text, "5\n6\n"));
    }
}
