//! The shape of the crate, checked: which module files import which, no circles between
//! files, no forbidden arrows between the pipeline's folders, and the size limits.
//!
//! Imports are read from the text of `src/**/*.rs` (comments, strings and test modules left
//! out): `use` trees and `crate::…`, `super::…`, `self::…`, `dockless::…` paths anywhere,
//! and paths through a module's own child modules. An arrow from a file to one of its
//! ancestors (a child using its parent's items) is allowed and left out of the circles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module file: its module path (`build::stage::run`; `` for a crate root) and its
/// code without comments, strings and test modules.
struct ModuleFile {
    path: String,
    crate_name: &'static str,
    code: String,
}

/// The library's arrows a folder may never draw: (from, to).
const FORBIDDEN: &[(&str, &str)] = &[
    ("dockerfile", "registry"),
    ("dockerfile", "e2b"),
    ("context", "registry"),
    ("context", "e2b"),
    ("layer", "registry"),
    ("layer", "e2b"),
    ("registry", "dockerfile"),
    ("registry", "context"),
    ("registry", "e2b"),
    ("registry", "cli"),
    ("registry", "layer"),
    ("build", "publish"),
    ("build", "e2b"),
];

const MAX_FILE_LINES: usize = 600;
const MAX_FUNCTION_LINES: usize = 80;
/// Folders whose functions are held to [`MAX_FUNCTION_LINES`].
const SHORT_FUNCTIONS_IN: &[&str] = &["build", "run", "publish"];
/// Files and functions over the limits when this check was written, each with the size it
/// may not exceed: being worked on elsewhere (run/, COPY) or still to split. The check fails
/// when one grows, and when one is back within the limit (then its line goes).
const KNOWN_TOO_BIG: &[(&str, usize)] = &[];

/// Circles between files known when this check was written: they may go, none may come.
const KNOWN_CIRCLES: &[&str] = &[];

#[test]
fn the_crate_has_no_circles_and_no_forbidden_arrows() {
    let files = read_crate(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        files.iter().any(|f| f.path == "build::stage"),
        "the checker found the crate's modules"
    );
    let mut problems: Vec<String> = check(&files)
        .into_iter()
        .filter(|p| !KNOWN_CIRCLES.iter().any(|known| p.ends_with(known)))
        .collect();
    let found = check(&files);
    for known in KNOWN_CIRCLES {
        if !found.iter().any(|p| p.ends_with(known)) {
            problems.push(format!("{known} is gone: take it off KNOWN_CIRCLES"));
        }
    }
    assert!(
        problems.is_empty(),
        "the module structure breaks its rules:\n{}",
        problems.join("\n")
    );
}

#[test]
fn files_and_functions_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // (what, lines, limit)
    let mut sizes: Vec<(String, usize, usize)> = Vec::new();
    for file in rust_files(&root.join("src")) {
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
        let folder = relative
            .trim_start_matches("src/")
            .split('/')
            .next()
            .unwrap();
        if SHORT_FUNCTIONS_IN.contains(&folder) {
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
fn the_checker_finds_a_planted_circle_and_forbidden_arrow() {
    let fake = |path: &str, code: &str| ModuleFile {
        path: path.into(),
        crate_name: "lib",
        code: strip(code),
    };
    let clean = vec![
        fake("", "pub mod a; pub mod b; pub mod layer; pub mod registry;"),
        fake("a", "mod x; mod y; pub use x::Thing;"),
        fake("a::x", "use super::y::Other; pub struct Thing;"),
        fake("a::y", "use super::Thing as _; pub struct Other;"),
        fake(
            "b",
            "use crate::a::Thing; // crate::registry::Nope\nfn f() { let _ = \"crate::layer::x\"; }",
        ),
        fake("layer", "pub struct L;"),
        fake("registry", "use crate::a::x::Thing;"),
    ];
    assert_eq!(
        check(&clean),
        Vec::<String>::new(),
        "parent arrows, comments and strings are fine"
    );

    let mut circle = clean;
    circle[3] = fake("a::y", "use crate::a::x::Thing; pub struct Other;");
    let problems = check(&circle);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("circle") && p.contains("a::x") && p.contains("a::y")),
        "{problems:?}"
    );

    let mut cousins = circle;
    cousins[3] = fake("a::y", "pub struct Other;");
    cousins[5] = fake("layer", "pub fn f() { crate::registry::g(); }");
    cousins[6] = fake("registry", "pub fn g() {} fn h() { crate::b::f(); }");
    cousins[4] = fake("b", "pub fn f() { crate::layer::f(); }");
    let problems = check(&cousins);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("layer -> registry") && p.contains("forbidden")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("circle") && p.contains("registry") && p.contains("b")),
        "{problems:?}"
    );

    let mut test_code = vec![
        fake("", "pub mod a; pub mod b;"),
        fake(
            "a",
            "pub fn f() {}\n#[cfg(test)]\nmod tests {\n use crate::b::g;\n}\n",
        ),
        fake("b", "pub fn g() { crate::a::f(); }"),
    ];
    assert_eq!(
        check(&test_code),
        Vec::<String>::new(),
        "test modules are left out"
    );
    test_code[1] = fake("a", "pub fn f() { super::b::g(); }");
    assert!(
        !check(&test_code).is_empty(),
        "super:: from a crate root's child reaches a sibling"
    );
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

/// Every rule the files break, one line each.
fn check(files: &[ModuleFile]) -> Vec<String> {
    let modules: BTreeSet<(&str, &str)> = files
        .iter()
        .map(|f| (f.crate_name, f.path.as_str()))
        .collect();
    let mut arrows: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in files {
        let targets = arrows
            .entry((file.crate_name, file.path.as_str()))
            .or_default();
        for path in referenced_paths(file) {
            let (crate_name, segments) = path;
            let Some(target) = longest_module(&modules, crate_name, &segments) else {
                continue;
            };
            if crate_name != file.crate_name {
                continue; // the binary's arrows into the library: any is fine
            }
            let from_top = file.path.split("::").next().unwrap_or_default();
            let to_top = target.split("::").next().unwrap_or_default();
            if file.crate_name == "lib"
                && (to_top == "cli" || FORBIDDEN.contains(&(from_top, to_top)))
            {
                problems.push(format!(
                    "forbidden arrow {from_top} -> {to_top}: {} uses {}",
                    shown(&file.path),
                    segments.join("::")
                ));
            }
            let is_ancestor = target.is_empty() || file.path.starts_with(&format!("{target}::"));
            if target != file.path && !is_ancestor {
                targets.insert(target);
            }
        }
    }
    for circle in circles(&arrows) {
        problems.push(format!("circle between files: {}", circle.join(" -> ")));
    }
    problems
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "the crate root"
    } else {
        path
    }
}

/// The longest prefix of `segments` that names a module file of `crate_name`.
fn longest_module(
    modules: &BTreeSet<(&str, &str)>,
    crate_name: &str,
    segments: &[String],
) -> Option<String> {
    (0..=segments.len()).rev().find_map(|n| {
        let path = segments[..n].join("::");
        modules
            .contains(&(crate_name, path.as_str()))
            .then_some(path)
    })
}

/// The strongly connected groups of more than one file (Tarjan), each as a closed walk.
fn circles(arrows: &BTreeMap<(&str, &str), BTreeSet<String>>) -> Vec<Vec<String>> {
    let graph: BTreeMap<String, Vec<String>> = arrows
        .iter()
        .map(|((krate, from), to)| {
            let name = |m: &str| format!("{krate}:{}", shown(m));
            (name(from), to.iter().map(|t| name(t)).collect())
        })
        .collect();
    let mut found = Vec::new();
    for start in graph.keys() {
        // A shortest walk back to `start`, reported once from its smallest file.
        let mut previous: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut back = None;
        while let Some(at) = queue.pop_front() {
            for next in graph.get(at).into_iter().flatten() {
                if next == start {
                    back = Some(at);
                    break;
                }
                if next > start && !previous.contains_key(next) {
                    previous.insert(next, at);
                    queue.push_back(next);
                }
            }
            if back.is_some() {
                break;
            }
        }
        if let Some(mut at) = back {
            let mut walk = vec![at.clone()];
            while at != start {
                at = previous[at];
                walk.push(at.clone());
            }
            walk.reverse();
            walk.push(start.clone());
            found.push(walk);
        }
    }
    found
}

/// The paths a file names, as (crate, segments from that crate's root).
fn referenced_paths(file: &ModuleFile) -> Vec<(&'static str, Vec<String>)> {
    let here: Vec<String> = file
        .path
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let children = child_modules(&file.code);
    let mut paths = Vec::new();
    for raw in path_expressions(&file.code) {
        let mut segments = raw.into_iter();
        let Some(first) = segments.next() else {
            continue;
        };
        let rest: Vec<String> = segments.collect();
        let (krate, mut base) = match first.as_str() {
            "crate" => (file.crate_name, Vec::new()),
            "dockless" if file.crate_name == "bin" => ("lib", Vec::new()),
            "self" => (file.crate_name, here.clone()),
            "super" => {
                let mut base = here.clone();
                base.pop();
                (file.crate_name, base)
            }
            child if children.contains(child) => {
                let mut base = here.clone();
                base.push(child.to_owned());
                (file.crate_name, base)
            }
            _ => continue,
        };
        let mut rest = rest.into_iter().peekable();
        while rest.peek().is_some_and(|s| s == "super") {
            rest.next();
            base.pop();
        }
        base.extend(rest);
        paths.push((krate, base));
    }
    paths
}

/// `mod name;` and `mod name {` declarations.
fn child_modules(code: &str) -> BTreeSet<String> {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| w[0] == "mod")
        .map(|w| w[1].to_owned())
        .collect()
}

/// Every `a::b::c` path, with `use` trees (`a::{b, c::d}`) expanded.
fn path_expressions(code: &str) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = tokens[i..]
                .iter()
                .position(|t| t == ";")
                .map_or(tokens.len(), |p| i + p);
            expand_use(&tokens[i + 1..end], Vec::new(), &mut paths);
            i = end;
            continue;
        }
        let starts_path = is_ident(&tokens[i])
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts_path {
            let mut path = vec![tokens[i].clone()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::")
                && tokens.get(j + 1).is_some_and(|t| is_ident(t))
            {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            paths.push(path);
            i = j;
            continue;
        }
        i += 1;
    }
    paths
}

fn expand_use(tokens: &[String], prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix.clone();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token == "{" {
            // Split the group's items at top-level commas.
            let mut depth = 0;
            let mut start = i + 1;
            for j in i..tokens.len() {
                match tokens[j].as_str() {
                    "{" => depth += 1,
                    "}" => {
                        depth -= 1;
                        if depth == 0 {
                            expand_use(&tokens[start..j], path.clone(), out);
                            return;
                        }
                    }
                    "," if depth == 1 => {
                        expand_use(&tokens[start..j], path.clone(), out);
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            return;
        } else if token == "as" || token == "*" {
            break;
        } else if is_ident(token) {
            path.push(token.clone());
        }
        i += 1;
    }
    if path.len() > prefix.len() || !prefix.is_empty() {
        out.push(path);
    }
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    tokens
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

/// The crate's module files, found from `src/lib.rs` and `src/main.rs` through their `mod`
/// declarations.
fn read_crate(root: &Path) -> Vec<ModuleFile> {
    let mut files = Vec::new();
    for (crate_name, root_file) in [("lib", "src/lib.rs"), ("bin", "src/main.rs")] {
        let mut pending = vec![(String::new(), root.join(root_file))];
        while let Some((path, file)) = pending.pop() {
            let code = strip(&std::fs::read_to_string(&file).unwrap());
            // Children of `a.rs` or `a/mod.rs` live in `a/`; of a crate root, beside it.
            let dir = match file.file_name().and_then(|n| n.to_str()) {
                Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().unwrap().to_owned(),
                _ => file.with_extension(""),
            };
            for child in declared_files(&code) {
                let child_file = [
                    dir.join(format!("{child}.rs")),
                    dir.join(&child).join("mod.rs"),
                ]
                .into_iter()
                .find(|p| p.is_file());
                if let Some(child_file) = child_file {
                    let child_path = if path.is_empty() {
                        child
                    } else {
                        format!("{path}::{child}")
                    };
                    pending.push((child_path, child_file));
                }
            }
            files.push(ModuleFile {
                path,
                crate_name,
                code,
            });
        }
    }
    files
}

/// `mod name;` declarations (modules in their own files).
fn declared_files(code: &str) -> Vec<String> {
    let tokens = tokens(code);
    tokens
        .windows(3)
        .filter(|w| w[0] == "mod" && is_ident(&w[1]) && w[2] == ";")
        .map(|w| w[1].clone())
        .collect()
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

/// `lib.rs` is the map of the library: every `pub mod` line has a one-line note above it.
#[test]
fn every_library_module_has_its_line_on_the_map() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("src/lib.rs is readable");
    let unexplained = unexplained_modules(&lib);
    assert!(
        unexplained.is_empty(),
        "src/lib.rs: give each of these a one-line `// ` note above it: {unexplained:?}"
    );
    assert_eq!(
        unexplained_modules("// A note.\npub mod a;\npub mod b;\n"),
        ["pub mod b;"],
        "the check must find a module without its note"
    );
}

fn unexplained_modules(lib: &str) -> Vec<&str> {
    let mut previous = "";
    let mut unexplained = Vec::new();
    for line in lib.lines() {
        if line.starts_with("pub mod ") && !previous.starts_with("// ") {
            unexplained.push(line);
        }
        previous = line;
    }
    unexplained
}
