//! The values of `--mount` fields as BuildKit reads them: the CSV record, booleans, numbers,
//! sizes and paths.

use super::MountProblem;

pub(super) fn parse_bool(key: &str, value: &str) -> Result<bool, MountProblem> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(MountProblem::InvalidBool {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

pub(super) fn parse_number(
    key: &'static str,
    value: &str,
    radix: u32,
) -> Result<u32, MountProblem> {
    u32::from_str_radix(value, radix).map_err(|_| MountProblem::InvalidNumber {
        key,
        value: value.to_owned(),
    })
}

/// A target as the command sees it: absolute and clean, never the root.
pub(super) fn place(target: &str, workdir: &str) -> Result<String, MountProblem> {
    let absolute = if target.starts_with('/') {
        clean(target)
    } else {
        clean(&format!("{workdir}/{target}"))
    };
    if absolute == "/" {
        return Err(MountProblem::RootTarget(target.to_owned()));
    }
    Ok(absolute)
}

/// `path.Clean` for absolute and relative paths: no `.`, no `..` above the root, no doubled
/// or trailing slashes.
pub(super) fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `size=` of a tmpfs: bytes, or with a unit as Docker's `RAMInBytes` reads it (k, m, g, t,
/// p, with an optional `b` or `ib`, powers of 1024).
pub(super) fn parse_size(value: &str) -> Result<u64, MountProblem> {
    let bad = || MountProblem::InvalidSize(value.to_owned());
    let lower = value.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(bad()),
    };
    Ok((number * 1024f64.powi(power)) as u64)
}

/// Comma-separated fields, a field in double quotes keeping its commas (`"a,b"`, `""` for a
/// quote inside), as Go's CSV reader splits one record.
pub(super) fn csv_fields(text: &str) -> Result<Vec<String>, MountProblem> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(MountProblem::UnclosedQuote),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(MountProblem::TextAfterQuote);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(MountProblem::BareQuote);
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}
