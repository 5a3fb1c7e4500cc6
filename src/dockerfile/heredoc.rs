//! Recognising heredocs (`RUN <<EOF`), which dockless does not support yet, the way BuildKit
//! recognises them, so that a Dockerfile using one fails clearly instead of running `<<EOF`
//! as text.

use super::lex::{LexOptions, process};

/// Fails if the shell-form RUN, COPY or ADD `line` opens a heredoc.
pub(crate) fn reject_heredoc(line: &str) -> Result<(), String> {
    if !line.contains("<<") {
        return Ok(());
    }
    // BuildKit splits the whole line into words with quotes and escapes kept and unset
    // variables left alone; a line it cannot split has no heredoc.
    let options = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
    };
    let Ok(processed) = process(line, '\\', &|_| None, options) else {
        return Ok(());
    };
    match processed.words.iter().find_map(|word| heredoc_name(word)) {
        Some(name) => Err(format!(
            "heredocs (<<{name}) are not supported yet: put the content in a file in the build \
             context and COPY it, or write it with printf in a RUN"
        )),
        None => Ok(()),
    }
}

/// The name of the heredoc a word opens: BuildKit's `^(\d*)<<(-?)([^<]*)$` with a name that
/// is a single word once quotes are removed.
fn heredoc_name(word: &str) -> Option<String> {
    let rest = word
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let options = LexOptions {
        skip_unset: true,
        ..LexOptions::default()
    };
    match process(rest, '\\', &|_| None, options) {
        Ok(processed) if processed.words.len() == 1 => processed.words.into_iter().next(),
        Ok(_) => None,
        // BuildKit fails the whole parse on a heredoc name it cannot read.
        Err(_) => Some(rest.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredocs_are_rejected() {
        for line in [
            "RUN <<EOF",
            "RUN cat <<EOF > /x",
            "RUN <<-EOF",
            "RUN python3 <<'PY'",
            "RUN 3<<\"END\"",
            "COPY <<EOF /dst",
            "RUN <<A <<B",
        ] {
            let error = reject_heredoc(line).unwrap_err();
            assert!(error.contains("not supported yet"), "{line}: {error}");
        }
        assert!(
            reject_heredoc("RUN cat <<'PY'")
                .unwrap_err()
                .contains("<<PY")
        );
    }

    #[test]
    fn other_uses_of_angle_brackets_are_fine() {
        for line in [
            "RUN echo hi",
            "RUN echo '<<EOF'",
            "RUN echo \"a<<b\"",
            "RUN cat <<<\"here string\"",
            "RUN a << b",
            "RUN echo <<",
            "RUN echo 'unterminated <<EOF",
        ] {
            assert_eq!(reject_heredoc(line), Ok(()), "{line}");
        }
    }
}
