//! The part of Go's `regexp` syntax that moby's `.dockerignore` translation can produce, parsed the way
//! Go parses it (Perl flags: `^`/`$` anchor the whole text, `.` excludes `\n`, negated classes include
//! it) and matched with a Thompson NFA, so matching time stays linear in the path length.
//!
//! moby turns a pattern into a regexp by rewriting `*`, `?` and `**`, escaping `.+()|{}$`, and passing
//! everything else through, `[`, `]`, `^` and `\x` escapes included. Those pass-through characters
//! are read here with Go's meaning: `[[:alpha:]]` is a POSIX class, `\d` a digit, `^` in the middle an
//! anchor, `[a[^/]*]` a class followed by a literal `]`. Go constructs that cannot be produced from a
//! `.dockerignore` line that survived the `filepath.Match` syntax check (alternation, counted
//! repetition, group flags) and two that can but that nobody writes on purpose (`\p` Unicode classes
//! and `\Q...\E` quoting) are rejected with an explanation rather than silently misread.

/// A compiled regexp.
#[derive(Debug, Clone)]
pub(super) struct GoRegex {
    program: Vec<Inst>,
}

#[derive(Debug, Clone)]
enum Inst {
    /// One character from the set.
    Char(CharSet),
    /// Any character except `\n`.
    AnyNotNewline,
    /// Continue at both targets.
    Split(usize, usize),
    Jump(usize),
    Assert(Assertion),
    Match,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assertion {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

/// A set of characters as sorted, non-overlapping inclusive ranges of code points.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CharSet {
    ranges: Vec<(u32, u32)>,
}

impl CharSet {
    fn single(c: char) -> Self {
        CharSet {
            ranges: vec![(u32::from(c), u32::from(c))],
        }
    }

    fn add(&mut self, lo: u32, hi: u32) {
        self.ranges.push((lo, hi));
    }

    fn add_set(&mut self, other: &CharSet) {
        self.ranges.extend_from_slice(&other.ranges);
    }

    /// Sorts and merges the ranges so that `contains` can stop early and `negate` can walk gaps.
    fn normalize(mut self) -> Self {
        self.ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for (lo, hi) in self.ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        CharSet { ranges: merged }
    }

    fn negate(self) -> Self {
        let normalized = self.normalize();
        let mut ranges = Vec::with_capacity(normalized.ranges.len() + 1);
        let mut next = 0u32;
        for (lo, hi) in normalized.ranges {
            if lo > next {
                ranges.push((next, lo - 1));
            }
            next = hi.saturating_add(1);
        }
        if next <= u32::from(char::MAX) {
            ranges.push((next, u32::from(char::MAX)));
        }
        CharSet { ranges }
    }

    fn contains(&self, c: char) -> bool {
        let c = u32::from(c);
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
    }
}

/// One parsed element of a sequence, with its repetition.
#[derive(Debug)]
struct Item {
    node: Node,
    repeat: Repeat,
}

#[derive(Debug)]
enum Node {
    Set(CharSet),
    AnyNotNewline,
    Assert(Assertion),
    Group(Vec<Item>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Once,
    ZeroOrMore,
    OneOrMore,
    ZeroOrOne,
}

impl GoRegex {
    /// Parses `source` with Go's rules, or explains why Go (or this subset) rejects it.
    pub(super) fn compile(source: &str) -> Result<GoRegex, String> {
        let chars: Vec<char> = source.chars().collect();
        let mut parser = Parser {
            chars: &chars,
            pos: 0,
        };
        let items = parser.sequence(0)?;
        let mut program = Vec::new();
        emit_sequence(&items, &mut program);
        program.push(Inst::Match);
        Ok(GoRegex { program })
    }

    /// Reports whether the regexp matches anywhere in `text` (Go's `MatchString`).
    pub(super) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut current = ThreadList::new(self.program.len());
        let mut next = ThreadList::new(self.program.len());
        for pos in 0..=chars.len() {
            // An unanchored search starts a new thread at every position.
            if self.add_thread(&mut current, 0, pos, &chars) {
                return true;
            }
            let Some(&c) = chars.get(pos) else {
                break;
            };
            next.clear();
            for &pc in &current.pcs {
                let advances = match self.program.get(pc) {
                    Some(Inst::Char(set)) => set.contains(c),
                    Some(Inst::AnyNotNewline) => c != '\n',
                    _ => false,
                };
                if advances && self.add_thread(&mut next, pc + 1, pos + 1, &chars) {
                    return true;
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds `pc` and everything reachable from it without consuming input; true if `Match` is reached.
    fn add_thread(&self, list: &mut ThreadList, pc: usize, pos: usize, chars: &[char]) -> bool {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !list.insert(pc) {
                continue;
            }
            match self.program.get(pc) {
                Some(Inst::Match) => return true,
                Some(Inst::Jump(target)) => stack.push(*target),
                Some(Inst::Split(first, second)) => {
                    stack.push(*second);
                    stack.push(*first);
                }
                Some(Inst::Assert(assertion)) => {
                    if assertion_holds(*assertion, pos, chars) {
                        stack.push(pc + 1);
                    }
                }
                Some(Inst::Char(_)) | Some(Inst::AnyNotNewline) | None => {}
            }
        }
        false
    }
}

/// The set of program counters alive at one input position, without duplicates.
struct ThreadList {
    pcs: Vec<usize>,
    seen: Vec<bool>,
}

impl ThreadList {
    fn new(size: usize) -> Self {
        ThreadList {
            pcs: Vec::with_capacity(size),
            seen: vec![false; size],
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        match self.seen.get_mut(pc) {
            Some(seen) if !*seen => {
                *seen = true;
                self.pcs.push(pc);
                true
            }
            _ => false,
        }
    }

    fn clear(&mut self) {
        for &pc in &self.pcs {
            if let Some(seen) = self.seen.get_mut(pc) {
                *seen = false;
            }
        }
        self.pcs.clear();
    }
}

fn assertion_holds(assertion: Assertion, pos: usize, chars: &[char]) -> bool {
    let before = pos.checked_sub(1).and_then(|p| chars.get(p)).copied();
    let after = chars.get(pos).copied();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    match assertion {
        Assertion::BeginText => pos == 0,
        Assertion::EndText => pos == chars.len(),
        Assertion::WordBoundary => is_word(before) != is_word(after),
        Assertion::NotWordBoundary => is_word(before) == is_word(after),
    }
}

fn emit_sequence(items: &[Item], program: &mut Vec<Inst>) {
    for item in items {
        emit_item(item, program);
    }
}

fn emit_item(item: &Item, program: &mut Vec<Inst>) {
    match item.repeat {
        Repeat::Once => emit_node(&item.node, program),
        Repeat::ZeroOrOne => {
            let split = program.len();
            program.push(Inst::Split(split + 1, 0));
            emit_node(&item.node, program);
            let after = program.len();
            program[split] = Inst::Split(split + 1, after);
        }
        Repeat::ZeroOrMore => {
            let split = program.len();
            program.push(Inst::Split(split + 1, 0));
            emit_node(&item.node, program);
            program.push(Inst::Jump(split));
            let after = program.len();
            program[split] = Inst::Split(split + 1, after);
        }
        Repeat::OneOrMore => {
            let start = program.len();
            emit_node(&item.node, program);
            let after = program.len() + 1;
            program.push(Inst::Split(start, after));
        }
    }
}

fn emit_node(node: &Node, program: &mut Vec<Inst>) {
    match node {
        Node::Set(set) => program.push(Inst::Char(set.clone())),
        Node::AnyNotNewline => program.push(Inst::AnyNotNewline),
        Node::Assert(assertion) => program.push(Inst::Assert(*assertion)),
        Node::Group(items) => emit_sequence(items, program),
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn rest(&self) -> &[char] {
        self.chars.get(self.pos..).unwrap_or_default()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Parses items up to the end of the text (depth 0) or the `)` closing the current group.
    fn sequence(&mut self, depth: usize) -> Result<Vec<Item>, String> {
        let mut items: Vec<Item> = Vec::new();
        // Go rejects a repetition operator applied to another one (`a**`); a lazy `?` is part of it.
        let mut last_was_repeat = false;
        loop {
            let Some(c) = self.peek() else {
                if depth > 0 {
                    return Err("missing closing `)`".to_owned());
                }
                return Ok(items);
            };
            let mut is_repeat = false;
            match c {
                ')' => {
                    if depth == 0 {
                        return Err("unexpected `)`".to_owned());
                    }
                    self.pos += 1;
                    return Ok(items);
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    if self.peek() == Some('?') {
                        // Non-greedy: the same set of matches.
                        self.pos += 1;
                    }
                    if last_was_repeat {
                        return Err(format!("invalid nested repetition operator `{c}`"));
                    }
                    let Some(last) = items.last_mut() else {
                        return Err(format!("missing argument to repetition operator `{c}`"));
                    };
                    last.repeat = match c {
                        '*' => Repeat::ZeroOrMore,
                        '+' => Repeat::OneOrMore,
                        _ => Repeat::ZeroOrOne,
                    };
                    is_repeat = true;
                }
                '|' => return Err("alternation `|` is not supported".to_owned()),
                '(' => {
                    self.pos += 1;
                    if self.peek() == Some('?') {
                        return Err("group flags `(?` are not supported".to_owned());
                    }
                    let group = self.sequence(depth + 1)?;
                    items.push(Item {
                        node: Node::Group(group),
                        repeat: Repeat::Once,
                    });
                }
                '[' => {
                    let set = self.class()?;
                    items.push(Item {
                        node: Node::Set(set),
                        repeat: Repeat::Once,
                    });
                }
                '.' => {
                    self.pos += 1;
                    items.push(Item {
                        node: Node::AnyNotNewline,
                        repeat: Repeat::Once,
                    });
                }
                '^' | '$' => {
                    self.pos += 1;
                    let assertion = if c == '^' {
                        Assertion::BeginText
                    } else {
                        Assertion::EndText
                    };
                    items.push(Item {
                        node: Node::Assert(assertion),
                        repeat: Repeat::Once,
                    });
                }
                '\\' => {
                    let node = self.escape_outside_class()?;
                    items.push(Item {
                        node,
                        repeat: Repeat::Once,
                    });
                }
                _ => {
                    self.pos += 1;
                    items.push(Item {
                        node: Node::Set(CharSet::single(c)),
                        repeat: Repeat::Once,
                    });
                }
            }
            last_was_repeat = is_repeat;
        }
    }

    /// `\` outside a class: assertions, Perl classes, then single-character escapes.
    fn escape_outside_class(&mut self) -> Result<Node, String> {
        let assertion = match self.peek_at(1) {
            Some('A') => Some(Assertion::BeginText),
            Some('z') => Some(Assertion::EndText),
            Some('b') => Some(Assertion::WordBoundary),
            Some('B') => Some(Assertion::NotWordBoundary),
            Some('C') => return Err("invalid escape sequence `\\C`".to_owned()),
            Some('Q') => return Err("`\\Q...\\E` quoting is not supported".to_owned()),
            Some(c @ ('p' | 'P')) => {
                return Err(format!("Unicode classes `\\{c}` are not supported"));
            }
            _ => None,
        };
        if let Some(assertion) = assertion {
            self.pos += 2;
            return Ok(Node::Assert(assertion));
        }
        if let Some(set) = self.perl_class() {
            return Ok(Node::Set(set));
        }
        let c = self.escaped_char()?;
        Ok(Node::Set(CharSet::single(c)))
    }

    /// `\d`, `\s`, `\w` and their negations, if the text is at one.
    fn perl_class(&mut self) -> Option<CharSet> {
        if self.peek() != Some('\\') {
            return None;
        }
        let (set, negated) = match self.peek_at(1)? {
            'd' => (digit(), false),
            'D' => (digit(), true),
            's' => (perl_space(), false),
            'S' => (perl_space(), true),
            'w' => (word(), false),
            'W' => (word(), true),
            _ => return None,
        };
        self.pos += 2;
        Some(if negated { set.negate() } else { set })
    }

    /// Go's `parseEscape`: the character named by the escape at the current `\`.
    fn escaped_char(&mut self) -> Result<char, String> {
        let start = self.pos;
        self.pos += 1;
        let Some(c) = self.next() else {
            return Err("trailing backslash at end of expression".to_owned());
        };
        let invalid = |parser: &Self| {
            let text: String = parser
                .chars
                .get(start..parser.pos)
                .unwrap_or_default()
                .iter()
                .collect();
            format!("invalid escape sequence `{text}`")
        };
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            return Ok(c);
        }
        let is_octal = |c: Option<char>| c.is_some_and(|c| ('0'..='7').contains(&c));
        match c {
            // A lone `\1`..`\7` would be a backreference, which Go does not support.
            '1'..='7' if !is_octal(self.peek()) => Err(invalid(self)),
            '0'..='7' => {
                let mut value = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    if !is_octal(self.peek()) {
                        break;
                    }
                    value = value * 8 + self.next().and_then(|d| d.to_digit(8)).unwrap_or(0);
                }
                char::from_u32(value).ok_or_else(|| invalid(self))
            }
            'x' => {
                let high = self.next().and_then(|d| d.to_digit(16));
                let low = self.next().and_then(|d| d.to_digit(16));
                match (high, low) {
                    (Some(high), Some(low)) => {
                        char::from_u32(high * 16 + low).ok_or_else(|| invalid(self))
                    }
                    _ => Err(invalid(self)),
                }
            }
            'a' => Ok('\u{7}'),
            'f' => Ok('\u{c}'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\u{b}'),
            _ => Err(invalid(self)),
        }
    }

    /// Go's `parseClass`, at a `[`.
    fn class(&mut self) -> Result<CharSet, String> {
        self.pos += 1;
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut set = CharSet::default();
        // `]` right after `[` or `[^` is a literal.
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err("missing closing `]`".to_owned()),
                Some(']') if !first => break,
                _ => {}
            }
            first = false;
            if self.peek() == Some('[')
                && self.peek_at(1) == Some(':')
                && let Some(named) = self.posix_class()?
            {
                set.add_set(&named);
                continue;
            }
            if self.peek() == Some('\\') && matches!(self.peek_at(1), Some('p' | 'P')) {
                return Err("Unicode classes `\\p` are not supported".to_owned());
            }
            if let Some(perl) = self.perl_class() {
                set.add_set(&perl);
                continue;
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            // `[a-]` is `a` or `-`: a `-` only makes a range when something other than `]` follows.
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.pos += 1;
                hi = self.class_char()?;
                if hi < lo {
                    return Err(format!("invalid character class range `{lo}-{hi}`"));
                }
            }
            set.add(u32::from(lo), u32::from(hi));
        }
        self.pos += 1;
        Ok(if negated {
            set.negate()
        } else {
            set.normalize()
        })
    }

    fn class_char(&mut self) -> Result<char, String> {
        match self.peek() {
            None => Err("missing closing `]`".to_owned()),
            Some('\\') => self.escaped_char(),
            Some(c) => {
                self.pos += 1;
                Ok(c)
            }
        }
    }

    /// Go's `parseNamedClass`: `[:name:]` or `[:^name:]`. Go looks for the closing `:]` anywhere
    /// in the rest of the expression, so this does too; no `:]` at all means a literal `[`.
    fn posix_class(&mut self) -> Result<Option<CharSet>, String> {
        let rest = self.rest();
        let Some(end) = rest
            .windows(2)
            .skip(2)
            .position(|w| w == [':', ']'])
            .map(|i| i + 2)
        else {
            return Ok(None);
        };
        let name: String = rest.get(2..end).unwrap_or_default().iter().collect();
        let (negated, bare) = match name.strip_prefix('^') {
            Some(bare) => (true, bare),
            None => (false, name.as_str()),
        };
        let Some(set) = posix_set(bare) else {
            return Err(format!("invalid character class range `[:{name}:]`"));
        };
        self.pos += end + 2;
        Ok(Some(if negated { set.negate() } else { set }))
    }
}

fn ranges(pairs: &[(char, char)]) -> CharSet {
    CharSet {
        ranges: pairs
            .iter()
            .map(|&(lo, hi)| (u32::from(lo), u32::from(hi)))
            .collect(),
    }
}

fn digit() -> CharSet {
    ranges(&[('0', '9')])
}

fn perl_space() -> CharSet {
    ranges(&[('\t', '\n'), ('\u{c}', '\r'), (' ', ' ')])
}

fn word() -> CharSet {
    ranges(&[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')])
}

/// The ASCII POSIX classes Go knows.
fn posix_set(name: &str) -> Option<CharSet> {
    let set = match name {
        "alnum" => ranges(&[('0', '9'), ('A', 'Z'), ('a', 'z')]),
        "alpha" => ranges(&[('A', 'Z'), ('a', 'z')]),
        "ascii" => ranges(&[('\0', '\u{7f}')]),
        "blank" => ranges(&[('\t', '\t'), (' ', ' ')]),
        "cntrl" => ranges(&[('\0', '\u{1f}'), ('\u{7f}', '\u{7f}')]),
        "digit" => digit(),
        "graph" => ranges(&[('!', '~')]),
        "lower" => ranges(&[('a', 'z')]),
        "print" => ranges(&[(' ', '~')]),
        "punct" => ranges(&[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')]),
        "space" => ranges(&[('\t', '\r'), (' ', ' ')]),
        "upper" => ranges(&[('A', 'Z')]),
        "word" => word(),
        "xdigit" => ranges(&[('0', '9'), ('A', 'F'), ('a', 'f')]),
        _ => return None,
    };
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(re: &str, text: &str) -> bool {
        GoRegex::compile(re)
            .unwrap_or_else(|e| panic!("{re}: {e}"))
            .is_match(text)
    }

    #[test]
    fn translated_shapes() {
        assert!(matches("^[^/]*$", "abc"));
        assert!(!matches("^[^/]*$", "a/c"));
        assert!(matches("^(.*/)?dir2/[^/]*$", "dir/dir2/file"));
        assert!(matches("^(.*/)?dir2/[^/]*$", "dir2/file"));
        assert!(!matches("^(.*/)?dir2/[^/]*$", "dir/dir2/file/x"));
        assert!(matches("^(.*/)?(.*/)?[^/]*\\.txt$", "a/b/c.txt"));
        assert!(!matches("^(.*/)?(.*/)?[^/]*\\.txt$", "a/b/ctxt"));
        assert!(matches("^a[b-d]e$", "ace"));
        assert!(!matches("^a[b-d]e$", "aae"));
        assert!(matches("^a[^b-d]e$", "aze"));
    }

    #[test]
    fn go_meanings_of_pass_through_characters() {
        // A class closed by the generated `[^/]`, then a literal `]`.
        assert!(matches("^[a[^/]*]$", "a[^/]"));
        assert!(matches("^[a[^/]*]$", "]"));
        // POSIX classes.
        assert!(matches("^[[:alpha:]]$", "q"));
        assert!(!matches("^[[:alpha:]]$", "1"));
        assert!(matches("^[[:^alpha:]]$", "1"));
        // A `^` in the middle is an anchor, so this cannot match.
        assert!(!matches("^a^b$", "a^b"));
        // Perl classes and escapes.
        assert!(matches("^\\d\\d$", "42"));
        assert!(matches("^a\\_b$", "a_b"));
        assert!(matches("^\\x41$", "A"));
        assert!(matches("^\\101$", "A"));
        assert!(matches("^\\bab\\b$", "ab"));
        // `.` does not match a newline, a negated class does.
        assert!(!matches("^.$", "\n"));
        assert!(matches("^[^/]$", "\n"));
    }

    #[test]
    fn go_errors() {
        for bad in [
            "^[l-O]$",
            "^[[:nope:]]$",
            "^\\q$",
            "^\\é$",
            "^\\8$",
            "^\\1$",
            "^a**$",
            "*a",
            "^(*a)$",
            "^[a$",
            "^(a$",
            "^a)$",
            "^\\",
        ] {
            assert!(GoRegex::compile(bad).is_err(), "{bad} should be rejected");
        }
        assert!(
            GoRegex::compile("^[]a]$").is_ok(),
            "`]` first in a class is literal"
        );
        assert!(GoRegex::compile("^a*?$").is_ok(), "non-greedy is fine");
        assert!(
            GoRegex::compile("^*$").is_ok(),
            "Go lets an assertion repeat"
        );
    }

    #[test]
    fn many_stars_stay_fast() {
        let re = GoRegex::compile("^[^/]*a[^/]*a[^/]*a[^/]*a[^/]*a[^/]*b$")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!re.is_match(&"a".repeat(5000)));
    }
}
