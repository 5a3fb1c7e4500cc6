//! Heredocs (`RUN <<EOF`, `COPY <<EOF /path`) as BuildKit's parser reads them: the words of
//! a RUN, COPY or ADD line (or of an ONBUILD trigger of one) that open a heredoc, in order, and
//! the lines after the instruction that make up each body, up to a line holding exactly the
//! name (after leading tabs with `<<-`).

use super::lex::{LexOptions, process};
use super::{Command, CommandLine};

/// A heredoc an instruction opens, with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The name once quotes are removed (`<<'EOF'` → `EOF`): the terminator, and for COPY
    /// and ADD the file name.
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body's lines and the terminator.
    pub chomp: bool,
    /// No part of the name was quoted: COPY and ADD expand variables in the body.
    pub expand: bool,
    /// The body, each line ending with `\n`, tabs not yet stripped.
    pub body: String,
}

impl Heredoc {
    /// The body as a file holds it: leading tabs stripped with `<<-`.
    pub fn content(&self) -> String {
        if !self.chomp {
            return self.body.clone();
        }
        self.body
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// Whether an instruction with this text may open heredocs (RUN, COPY, ADD, and ONBUILD of
/// one of those).
pub(crate) fn may_open_heredocs(text: &str) -> bool {
    let mut words = text.split_whitespace().map(str::to_ascii_uppercase);
    let first = words.next().unwrap_or_default();
    let keyword = if first == "ONBUILD" {
        words.next().unwrap_or_default()
    } else {
        first
    };
    text.contains("<<") && matches!(keyword.as_str(), "RUN" | "COPY" | "ADD")
}

/// The heredocs the instruction `line` opens, in order, bodies still empty. BuildKit splits the
/// whole line into words with quotes and escapes kept and unset variables left alone; a line
/// it cannot split opens none.
pub(crate) fn opened_by(line: &str) -> Result<Vec<Heredoc>, String> {
    let options = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..LexOptions::default()
    };
    let Ok(processed) = process(line, '\\', &|_| None, options) else {
        return Ok(Vec::new());
    };
    let mut opened = Vec::new();
    for word in &processed.words {
        if let Some(heredoc) = parse_word(word)? {
            opened.push(heredoc);
        }
    }
    Ok(opened)
}

/// The heredoc a word opens: BuildKit's `^(\d*)<<(-?)\s*([^<]*)$` with a name that is a single
/// word once quotes are removed.
pub fn parse_word(word: &str) -> Result<Option<Heredoc>, String> {
    let Some(rest) = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")
    else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let words = |raw_quotes| {
        let options = LexOptions {
            raw_quotes,
            skip_unset: true,
            ..LexOptions::default()
        };
        process(rest, '\\', &|_| None, options)
            .map(|p| p.words)
            .map_err(|e| format!("cannot read the heredoc name `{rest}`: {e}"))
    };
    let plain = words(false)?;
    let [name] = plain.as_slice() else {
        return Ok(None);
    };
    let raw = words(true)?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: name.clone(),
        chomp,
        expand,
        body: String::new(),
    }))
}

/// Reads the bodies of `opened` from `lines` (the physical lines after the instruction), one
/// after the other; returns how many lines they took, or the name of the first heredoc whose
/// terminator never came.
pub(crate) fn read_bodies(opened: &mut [Heredoc], lines: &[&str]) -> Result<usize, String> {
    let mut used = 0;
    for heredoc in opened.iter_mut() {
        let mut terminated = false;
        while let Some(line) = lines.get(used) {
            used += 1;
            let candidate = if heredoc.chomp {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if candidate == heredoc.name {
                terminated = true;
                break;
            }
            heredoc.body.push_str(line);
            heredoc.body.push('\n');
        }
        if !terminated {
            return Err(heredoc.name.clone());
        }
    }
    Ok(used)
}

/// Gives a parsed command the heredocs its line opened: RUN keeps them for its shell, COPY and
/// ADD take their heredoc sources as inline files, an ONBUILD trigger carries the bodies in its
/// text (as BuildKit stores it in the image config).
pub(crate) fn attach(command: Command, heredocs: Vec<Heredoc>) -> Result<Command, String> {
    if heredocs.is_empty() {
        return Ok(command);
    }
    match command {
        Command::Run(mut run) => match run.command {
            CommandLine::Shell(_) => {
                run.heredocs = heredocs;
                Ok(Command::Run(run))
            }
            CommandLine::Exec(_) => Err(
                "RUN's JSON (exec) form cannot take a heredoc; use the shell form, e.g. RUN <<EOF"
                    .into(),
            ),
        },
        Command::Copy(mut copy) => {
            (copy.sources, copy.inline) =
                inline_sources("COPY", copy.sources, &copy.dest, &heredocs)?;
            Ok(Command::Copy(copy))
        }
        Command::Add(mut add) => {
            (add.sources, add.inline) = inline_sources("ADD", add.sources, &add.dest, &heredocs)?;
            Ok(Command::Add(add))
        }
        Command::Onbuild(mut trigger) => {
            for heredoc in &heredocs {
                trigger.push('\n');
                trigger.push_str(&heredoc.body);
                trigger.push_str(&heredoc.name);
            }
            Ok(Command::Onbuild(trigger))
        }
        other => Ok(other),
    }
}

/// Splits COPY or ADD sources into paths and heredocs (by name, as BuildKit looks them up).
fn inline_sources(
    keyword: &str,
    sources: Vec<String>,
    dest: &str,
    heredocs: &[Heredoc],
) -> Result<(Vec<String>, Vec<Heredoc>), String> {
    if parse_word(dest)?.is_some() {
        return Err(format!(
            "{keyword} cannot take a heredoc as its destination: name the file to write, e.g. {keyword} <<EOF /etc/app.conf"
        ));
    }
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for source in sources {
        match parse_word(&source)? {
            Some(mut word) => {
                word.body = heredocs
                    .iter()
                    .find(|h| h.name == word.name)
                    .map(|h| h.body.clone())
                    .unwrap_or_default();
                inline.push(word);
            }
            None => paths.push(source),
        }
    }
    Ok((paths, inline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        opened_by(line)
            .unwrap()
            .into_iter()
            .map(|h| (h.name, h.chomp, h.expand))
            .collect()
    }

    #[test]
    fn heredoc_words_are_found_as_buildkit_finds_them() {
        let owned = |v: &[(&str, bool, bool)]| -> Vec<(String, bool, bool)> {
            v.iter().map(|(n, c, e)| (n.to_string(), *c, *e)).collect()
        };
        assert_eq!(names("RUN <<EOF"), owned(&[("EOF", false, true)]));
        assert_eq!(names("RUN cat <<EOF > /x"), owned(&[("EOF", false, true)]));
        assert_eq!(names("RUN <<-EOF"), owned(&[("EOF", true, true)]));
        assert_eq!(names("RUN python3 <<'PY'"), owned(&[("PY", false, false)]));
        assert_eq!(names("RUN 3<<\"END\""), owned(&[("END", false, false)]));
        assert_eq!(names("COPY <<EOF /dst"), owned(&[("EOF", false, true)]));
        assert_eq!(
            names("RUN <<A <<B"),
            owned(&[("A", false, true), ("B", false, true)])
        );
        assert_eq!(names("RUN <<E\"O\"F"), owned(&[("EOF", false, false)]));
    }

    #[test]
    fn other_uses_of_angle_brackets_open_nothing() {
        for line in [
            "RUN echo hi",
            "RUN echo '<<EOF'",
            "RUN echo \"a<<b\"",
            "RUN cat <<<\"here string\"",
            "RUN a << b",
            "RUN echo <<",
            "RUN echo 'unterminated <<EOF",
        ] {
            assert_eq!(names(line), Vec::new(), "{line}");
        }
    }

    #[test]
    fn bodies_end_at_their_terminators_and_chomp_strips_tabs() {
        let mut opened = opened_by("RUN <<A <<-B").unwrap();
        let lines = ["one", "  A", "A", "\tx", "\t\tB", "after"];
        assert_eq!(read_bodies(&mut opened, &lines), Ok(5));
        assert_eq!(opened[0].body, "one\n  A\n");
        assert_eq!(opened[1].body, "\tx\n");
        assert_eq!(opened[1].content(), "x\n");
        let mut open = opened_by("RUN <<EOF").unwrap();
        assert_eq!(
            read_bodies(&mut open, &["never", "ends"]),
            Err("EOF".into())
        );
    }

    #[test]
    fn may_open_only_for_run_copy_add_and_their_triggers() {
        assert!(may_open_heredocs("RUN <<EOF"));
        assert!(may_open_heredocs("copy <<EOF /x"));
        assert!(may_open_heredocs("ONBUILD ADD <<EOF /x"));
        assert!(!may_open_heredocs("ENV A=<<EOF"));
        assert!(!may_open_heredocs("RUN echo"));
    }
}
