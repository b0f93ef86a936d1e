//! CSV of the site's tables (`?format=csv` on `/api/jobs` and `/api/data`).
//!
//! RFC 4180: fields with a comma, quote, CR or LF are quoted, quotes doubled, lines end in CRLF.
//! Job names, accounts and node lists come from users, and a spreadsheet runs a cell that
//! starts with `=`, `+`, `-`, `@`, tab or CR as a formula (CSV injection): such text cells
//! get a leading `'` (OWASP's advice), so they open as text. Numbers are written by us and
//! left as they are; empty cells mean "no figure" (the JSON's `null`).

use crate::api::JobSummary;
use std::fmt::Write as _;

/// One text cell, defused and quoted as needed.
pub fn text_cell(value: &str) -> String {
    let defused = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    };
    if defused.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// The columns of a job table, in order (the names of [`JobSummary`]'s fields).
pub const JOB_COLUMNS: &[&str] = &[
    "id",
    "display_id",
    "name",
    "user",
    "account",
    "partition",
    "state",
    "submit_at",
    "start_at",
    "end_at",
    "elapsed_secs",
    "time_limit_secs",
    "alloc_cpus",
    "node_count",
    "node_list",
    "req_mem_bytes",
    "mem_used_bytes",
    "max_rss_bytes",
    "gpus",
    "cpu_frac",
    "cpu_live",
    "mem_frac",
    "mem_live",
    "time_frac",
    "core_hours",
    "wasted_core_hours",
    "gpu_hours",
    "gpu_util_frac",
    "wasted_gpu_hours",
];

/// A header line and one line per job.
pub fn jobs_csv(rows: &[JobSummary]) -> String {
    let mut out = JOB_COLUMNS.join(",");
    out.push_str("\r\n");
    for j in rows {
        let cells = [
            j.id.to_string(),
            text_cell(&j.display_id),
            text_cell(&j.name),
            text_cell(&j.user),
            text_cell(&j.account),
            text_cell(&j.partition),
            text_cell(&j.state),
            opt(j.submit_at),
            opt(j.start_at),
            opt(j.end_at),
            j.elapsed_secs.to_string(),
            opt(j.time_limit_secs),
            j.alloc_cpus.to_string(),
            j.node_count.to_string(),
            text_cell(&j.node_list),
            opt(j.req_mem_bytes),
            opt(j.mem_used_bytes),
            opt(j.max_rss_bytes),
            j.gpus.to_string(),
            opt(j.cpu_frac),
            j.cpu_live.to_string(),
            opt(j.mem_frac),
            j.mem_live.to_string(),
            opt(j.time_frac),
            j.core_hours.to_string(),
            j.wasted_core_hours.to_string(),
            j.gpu_hours.to_string(),
            opt(j.gpu_util_frac),
            opt(j.wasted_gpu_hours),
        ];
        let _ = write!(out, "{}\r\n", cells.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::tests::summary;

    /// A small RFC 4180 reader, to prove what a spreadsheet would see.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let (mut rows, mut row, mut cell) = (Vec::new(), Vec::new(), String::new());
        let (mut quoted, mut chars) = (false, text.chars().peekable());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => cell.push(c),
                (false, '"') => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut cell)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => cell.push(c),
            }
        }
        rows
    }

    #[test]
    fn formulas_are_defused_and_quotes_commas_and_newlines_survive() {
        for (name, seen) in [
            ("=HYPERLINK(\"http://evil\",\"x\")", "'=HYPERLINK(\"http://evil\",\"x\")"),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\r=1", "'\r=1"),
            ("a,b\n\"c\"", "a,b\n\"c\""),
            ("plain", "plain"),
            ("mid=dle", "mid=dle"),
            ("", ""),
        ] {
            let mut job = summary(1, "alice", "COMPLETED", 10, 0.5);
            job.name = name.into();
            let rows = parse(&jobs_csv(&[job]));
            assert_eq!(rows.len(), 2, "{name:?}");
            assert_eq!(rows[0].len(), JOB_COLUMNS.len());
            assert_eq!(rows[1].len(), JOB_COLUMNS.len(), "{name:?}");
            assert_eq!(rows[1][2], seen, "{name:?}");
        }
        assert_eq!(text_cell("x\"y"), "\"x\"\"y\"");
        assert_eq!(text_cell("x,\"y"), "\"x,\"\"y\"");
    }

    #[test]
    fn figures_are_plain_numbers_and_missing_ones_empty() {
        let mut job = summary(42, "bob", "RUNNING", 1_000, 1.25);
        job.cpu_frac = None;
        job.time_limit_secs = None;
        let rows = parse(&jobs_csv(&[job]));
        let col = |name: &str| rows[1][JOB_COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
        assert_eq!(rows[0], JOB_COLUMNS);
        assert_eq!((col("id"), col("user"), col("start_at")), ("42".into(), "bob".into(), "1000".into()));
        assert_eq!((col("cpu_frac"), col("time_limit_secs")), (String::new(), String::new()));
        assert_eq!(col("wasted_core_hours"), "1.25");
        assert_eq!(col("mem_frac"), "0.001");
    }
}
