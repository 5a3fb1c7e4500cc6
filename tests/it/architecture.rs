//! The shape of the code, checked. The crate graph is the architecture: the compiler refuses an
//! import across crates that Cargo.toml does not declare, so what is checked here is the graph
//! itself (read from `cargo metadata`), that every crate's `lib.rs` and the README's list of
//! crates say the same as the graph, and the size limits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which workspace crates each crate may use (without the `dockless-` prefix). Arrows go from
/// the binary down to `oci`, never back up; a new arrow is a design decision made here first.
const MAY_USE: &[(&str, &[&str])] = &[
    ("oci", &[]),
    ("dockerfile", &["oci"]),
    ("context", &["oci"]),
    ("layer", &["oci", "context"]),
    ("registry", &["oci"]),
    ("sandbox", &["oci", "context", "layer"]),
    ("shared-cache", &["oci", "layer", "registry"]),
    (
        "build",
        &[
            "oci",
            "dockerfile",
            "context",
            "layer",
            "registry",
            "sandbox",
            "shared-cache",
        ],
    ),
    ("e2b", &["oci", "dockerfile", "registry", "build"]),
];

const MAX_FILE_LINES: usize = 600;
const MAX_FUNCTION_LINES: usize = 80;
/// Crate folders whose functions are held to [`MAX_FUNCTION_LINES`]: the builder (with
/// publish) and the RUN sandbox, where long functions used to hide.
const SHORT_FUNCTIONS_IN: &[&str] = &["crates/build/src/", "crates/sandbox/src/"];
/// Files and functions over the limits, each with the size it may not exceed. The check fails
/// when one grows, and when one is back within the limit (then its line goes).
const KNOWN_TOO_BIG: &[(&str, usize)] = &[];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Each workspace library crate (short name) and the workspace crates it depends on, from
/// `cargo metadata` (normal dependencies; dev-dependencies are the tests' business).
fn crate_graph() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut graph = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(short) = name.strip_prefix("dockless-") else {
            continue;
        };
        let uses = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str()?.strip_prefix("dockless-"))
            .map(str::to_owned)
            .collect();
        graph.insert(short.to_owned(), uses);
    }
    graph
}

/// The arrows `graph` draws that [`MAY_USE`] does not allow, and crates it does not know.
fn wrong_arrows(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let mut problems = Vec::new();
    for (name, uses) in graph {
        let Some(may) = allowed.get(name.as_str()) else {
            problems.push(format!(
                "dockless-{name} is not in MAY_USE: decide where it sits"
            ));
            continue;
        };
        for used in uses {
            if !may.contains(&used.as_str()) {
                problems.push(format!("dockless-{name} may not use dockless-{used}"));
            }
        }
    }
    problems
}

#[test]
fn the_crate_graph_draws_only_allowed_arrows() {
    let graph = crate_graph();
    assert!(
        graph.len() >= 9 && graph.contains_key("sandbox"),
        "cargo metadata lists the workspace's crates: {graph:?}"
    );
    let problems = wrong_arrows(&graph);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // MAY_USE itself has no circle: each crate may use only crates listed before it.
    for (at, (name, may)) in MAY_USE.iter().enumerate() {
        for used in *may {
            assert!(
                MAY_USE[..at].iter().any(|(earlier, _)| earlier == used),
                "MAY_USE: {name} uses {used}, which is not listed before it"
            );
        }
    }
}

#[test]
fn the_arrow_check_finds_a_planted_arrow() {
    let mut graph = crate_graph();
    graph
        .get_mut("layer")
        .unwrap()
        .insert("registry".to_owned());
    graph.insert("stray".to_owned(), BTreeSet::new());
    assert_eq!(
        wrong_arrows(&graph),
        [
            "dockless-layer may not use dockless-registry",
            "dockless-stray is not in MAY_USE: decide where it sits"
        ]
    );
}

/// The crates a `May use:` line (in a crate's `lib.rs`) or a README line names.
fn named_crates(text: &str) -> BTreeSet<String> {
    let text = text.trim().trim_end_matches('.');
    if text == "nothing" || text.starts_with("no other") {
        return BTreeSet::new();
    }
    text.split(',')
        .map(|s| s.trim().trim_matches('`').to_owned())
        .collect()
}

/// The README list item that starts with `start`, its wrapped lines joined.
fn readme_item(readme: &str, start: &str) -> Option<String> {
    let mut lines = readme.lines().skip_while(|l| !l.starts_with(start));
    let first = lines.next()?;
    let rest = lines.take_while(|l| l.starts_with("  ")).map(str::trim);
    Some(
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Every crate's `lib.rs` opens with what it is for, then `May use:` with its dependencies,
/// and the README's list of crates has one line per crate saying the same.
#[test]
fn each_crate_says_what_it_is_for_and_what_it_uses() {
    let graph = crate_graph();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut problems = Vec::new();
    for (name, uses) in &graph {
        let lib = root().join("crates").join(name).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).unwrap();
        if !text.starts_with("//! ") {
            problems.push(format!(
                "{}: open with a `//!` line saying what the crate is for",
                lib.display()
            ));
        }
        match text.lines().find_map(|l| l.strip_prefix("//! May use: ")) {
            Some(listed) if named_crates(listed) == *uses => {}
            Some(listed) => problems.push(format!(
                "{}: `May use: {listed}` but Cargo.toml has {uses:?}",
                lib.display()
            )),
            None => problems.push(format!("{}: no `//! May use: …` line", lib.display())),
        }
        let line_start = format!("- **dockless-{name}** (`crates/{name}`): ");
        match readme_item(&readme, &line_start) {
            Some(line) => {
                let listed = line.rsplit_once(" Uses ").map(|(_, u)| named_crates(u));
                if listed.as_ref() != Some(uses) {
                    problems.push(format!(
                        "README.md: the line of dockless-{name} should end `Uses {}.`",
                        if uses.is_empty() {
                            "nothing".to_owned()
                        } else {
                            uses.iter().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ));
                }
            }
            None => problems.push(format!("README.md: no line starting {line_start:?}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        named_crates("oci, `layer`."),
        BTreeSet::from(["oci".to_owned(), "layer".to_owned()])
    );
}

#[test]
fn files_and_functions_stay_small() {
    let root = root();
    // (what, lines, limit)
    let mut sizes: Vec<(String, usize, usize)> = Vec::new();
    let mut files = rust_files(&root.join("src"));
    files.extend(rust_files(&root.join("crates")));
    for file in files {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let is_test = relative.ends_with("/tests.rs") || relative.contains("/tests/");
        if is_test {
            continue;
        }
        let limit = if relative == "src/main.rs" {
            59
        } else {
            MAX_FILE_LINES
        };
        sizes.push((relative.clone(), text.lines().count(), limit));
        if SHORT_FUNCTIONS_IN.iter().any(|f| relative.starts_with(f)) {
            for (name, _, length) in long_functions(&strip(&text)) {
                sizes.push((format!("{relative}: fn {name}"), length, MAX_FUNCTION_LINES));
            }
        }
    }
    let mut problems = Vec::new();
    for (what, lines, limit) in &sizes {
        let known = KNOWN_TOO_BIG
            .iter()
            .find(|(k, _)| k == what)
            .map(|(_, at)| *at);
        match known {
            Some(at) if lines > &at => problems.push(format!(
                "{what}: {lines} lines, grew past {at} (limit {limit})"
            )),
            None if lines > limit => {
                problems.push(format!("{what}: {lines} lines (at most {limit})"))
            }
            _ => {}
        }
    }
    for (what, _) in KNOWN_TOO_BIG {
        let still = sizes
            .iter()
            .any(|(w, lines, limit)| w == what && lines > limit);
        if !still {
            problems.push(format!(
                "{what} is within its limit now: take it off KNOWN_TOO_BIG"
            ));
        }
    }
    assert!(problems.is_empty(), "too big:\n{}", problems.join("\n"));
}

#[test]
fn the_length_check_counts_a_function_from_its_fn_to_its_closing_brace() {
    let long_body = "    let x = 1;\n".repeat(MAX_FUNCTION_LINES);
    let code = format!(
        "fn short() {{ let s = \"}}\"; }}\ntrait T {{ fn declared(&self); }}\nfn long() {{\n{long_body}}}\n"
    );
    let found = long_functions(&strip(&code));
    assert_eq!(found, vec![("long".to_owned(), 3, MAX_FUNCTION_LINES + 2)]);
}

/// The code with comments, string and character literals blanked (newlines kept, so line
/// numbers hold) and `#[cfg(test)]` items cut.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i)
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if let Some(&ch) = chars.get(j) {
                    out.push(blank(ch));
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime (left as it is).
            if next == Some('\\') {
                let close = (i + 3..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .unwrap_or(chars.len());
                out.push_str("' '");
                i = close + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    cut_test_items(&out)
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Where the block opened by the first `{` at or after `from` closes (its `}`), or, with
/// `semicolon_ends`, a `;` before any `{`; the end of `chars` if neither comes.
fn block_end(chars: &[char], from: usize, semicolon_ends: bool) -> usize {
    let mut depth = 0;
    let mut at = from;
    while at < chars.len() {
        match chars[at] {
            ';' if semicolon_ends && depth == 0 => break,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        at += 1;
    }
    at
}

/// Blanks each `#[cfg(test)]` item (a `mod tests { … }` or `mod tests;`), keeping newlines.
fn cut_test_items(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= out.len() {
        if out[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        // The item ends at the `;` or the brace closing its first `{`.
        let j = block_end(&out, i + marker.len(), true);
        let last = j.min(out.len() - 1);
        for c in &mut out[i..=last] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = j + 1;
    }
    out.into_iter().collect()
}

/// Functions longer than [`MAX_FUNCTION_LINES`]: (name, first line, lines from `fn` to `}`).
fn long_functions(code: &str) -> Vec<(String, usize, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let line_at = |at: usize| chars[..at].iter().filter(|&&c| c == '\n').count() + 1;
    let mut found = Vec::new();
    let mut i = 0;
    while i + 3 < chars.len() {
        let is_fn = chars[i..i + 3] == ['f', 'n', ' '] && !prev_is_ident(&chars, i);
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = chars[i + 3..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect();
        // The body opens at the first `{` outside parentheses, unless a `;` comes first.
        let mut j = i + 3;
        let mut parens = 0;
        while j < chars.len() {
            match chars[j] {
                '(' | '[' => parens += 1,
                ')' | ']' => parens -= 1,
                ';' if parens == 0 => break,
                '{' if parens == 0 => break,
                _ => {}
            }
            j += 1;
        }
        if chars.get(j) != Some(&'{') {
            i = j;
            continue;
        }
        let end = block_end(&chars, j, false);
        let (first, last) = (line_at(i), line_at(end.min(chars.len() - 1)));
        if last - first + 1 > MAX_FUNCTION_LINES {
            found.push((name, first, last - first + 1));
        }
        i += 3;
    }
    found
}
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}
