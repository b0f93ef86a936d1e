//! SLURM host lists: `n[1-3,05]`, `gpu[01-02]-ib`, `a[1-2]b[1-2]`, `n1,n3`.
//!
//! Ranges keep the zero-padding of their start (`007-010` → `007 … 010`); several bracket
//! groups expand as a cartesian product. The original's parser looped forever on a `[` in one
//! mode (turingopt §9.22); this one returns an error for any malformed list.

/// A host list that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed host list {0:?}")]
pub struct HostlistError(pub String);

/// Largest expansion accepted (guards against `n[1-999999999]`).
const MAX_HOSTS: usize = 1_000_000;

/// Expands a host list into host names, in order.
pub fn expand(list: &str) -> Result<Vec<String>, HostlistError> {
    let mut out = Vec::new();
    for item in split_top_level(list).map_err(|_| HostlistError(list.to_string()))? {
        let item = item.trim();
        if item.is_empty() || item == "None assigned" || item == "(null)" {
            continue;
        }
        let mut partial = vec![String::new()];
        let mut rest = item;
        while !rest.is_empty() {
            match rest.find('[') {
                None => {
                    partial.iter_mut().for_each(|p| p.push_str(rest));
                    rest = "";
                }
                Some(open) => {
                    let close =
                        rest[open..].find(']').map(|c| open + c).ok_or_else(|| HostlistError(list.to_string()))?;
                    let prefix = &rest[..open];
                    let values =
                        expand_ranges(&rest[open + 1..close]).ok_or_else(|| HostlistError(list.to_string()))?;
                    let mut next = Vec::with_capacity(partial.len() * values.len());
                    for p in &partial {
                        for v in &values {
                            next.push(format!("{p}{prefix}{v}"));
                        }
                    }
                    if next.len() > MAX_HOSTS {
                        return Err(HostlistError(list.to_string()));
                    }
                    partial = next;
                    rest = &rest[close + 1..];
                }
            }
        }
        out.extend(partial);
        if out.len() > MAX_HOSTS {
            return Err(HostlistError(list.to_string()));
        }
    }
    Ok(out)
}

/// Splits on commas that are not inside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, ()> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(());
        }
    }
    if depth != 0 {
        return Err(());
    }
    parts.push(&list[start..]);
    Ok(parts)
}

/// `1-3,05,007-010` → the listed values with padding.
fn expand_ranges(inner: &str) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((lo, hi)) => {
                let width = lo.len();
                let (lo_n, hi_n): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
                if hi_n < lo_n || (hi_n - lo_n) as usize > MAX_HOSTS {
                    return None;
                }
                values.extend((lo_n..=hi_n).map(|n| format!("{n:0width$}")));
            }
            None => {
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                values.push(part.to_string());
            }
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_every_shape() {
        assert_eq!(expand("n[1-3]").unwrap(), ["n1", "n2", "n3"]);
        assert_eq!(expand("vm").unwrap(), ["vm"]);
        assert_eq!(expand("n1,n3").unwrap(), ["n1", "n3"]);
        assert_eq!(expand("c[007-009,11]").unwrap(), ["c007", "c008", "c009", "c11"]);
        assert_eq!(expand("gpu[1-2]-ib").unwrap(), ["gpu1-ib", "gpu2-ib"]);
        assert_eq!(expand("a[1-2]b[3-4]").unwrap(), ["a1b3", "a1b4", "a2b3", "a2b4"]);
        assert_eq!(expand("n[1-2],m5").unwrap(), ["n1", "n2", "m5"]);
        assert_eq!(expand("").unwrap(), Vec::<String>::new());
        assert_eq!(expand("None assigned").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn malformed_lists_are_errors_not_hangs() {
        for bad in ["n[1-3", "n[", "n[a-b]", "n[3-1]", "n]1[", "n[[1]]", "n[1-99999999999]"] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }
}
