//! Which fields of which instructions Docker expands variables in.
//!
//! As in BuildKit: ENV and LABEL keys and values; ARG names and defaults; COPY and ADD sources,
//! destination and `--chown`/`--chmod`/`--from`/`--checksum`; WORKDIR; USER; EXPOSE (which
//! may split into several ports); VOLUME; STOPSIGNAL; FROM image, stage name and
//! `--platform`. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD and MAINTAINER are left as
//! written: the shell (or nothing) interprets them at run time. RUN's `--mount` values are
//! expanded by [`RunFlags::mounts`](super::RunFlags::mounts), which also needs the WORKDIR.

use super::heredoc::Heredoc;
use super::lex::{expand_heredoc, expand_word, expand_words};
use super::{Add, ArgDecl, Command, Copy, ExpandError, From, KeyValue};

type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Command {
    /// Returns this command with its variables expanded. `vars` is a snapshot of the variables
    /// in scope *before* the instruction (so `ENV A=1 B=$A` sees the previous `A`); for FROM
    /// pass only the global ARGs (those declared before the first FROM). `escape` is
    /// [`Dockerfile::escape`](super::Dockerfile::escape).
    pub fn expand(&self, escape: char, vars: Vars) -> Result<Command, ExpandError> {
        let expander = Expander { escape, vars };
        Ok(match self {
            Command::From(from) => Command::From(From {
                image: expander.word(&from.image)?,
                stage_name: expander.flag(&from.stage_name)?,
                platform: expander.flag(&from.platform)?,
            }),
            Command::Copy(copy) => Command::Copy(Copy {
                sources: expander.words(&copy.sources)?,
                dest: expander.word(&copy.dest)?,
                from: expander.flag(&copy.from)?,
                chown: expander.flag(&copy.chown)?,
                chmod: expander.flag(&copy.chmod)?,
                link: copy.link,
                exclude: expander.words(&copy.exclude)?,
                parents: copy.parents,
                inline: expander.inline(&copy.inline)?,
            }),
            Command::Add(add) => Command::Add(Add {
                sources: expander.words(&add.sources)?,
                dest: expander.word(&add.dest)?,
                chown: expander.flag(&add.chown)?,
                chmod: expander.flag(&add.chmod)?,
                checksum: expander.flag(&add.checksum)?,
                keep_git_dir: add.keep_git_dir,
                link: add.link,
                unpack: add.unpack,
                exclude: expander.words(&add.exclude)?,
                inline: expander.inline(&add.inline)?,
            }),
            Command::Env(pairs) => Command::Env(expander.pairs(pairs)?),
            Command::Label(pairs) => Command::Label(expander.pairs(pairs)?),
            Command::Arg(declarations) => Command::Arg(
                declarations
                    .iter()
                    .map(|declaration| {
                        Ok(ArgDecl {
                            name: expander.word(&declaration.name)?,
                            default: match &declaration.default {
                                Some(default) => Some(expander.word(default)?),
                                None => None,
                            },
                        })
                    })
                    .collect::<Result<_, ExpandError>>()?,
            ),
            Command::Workdir(path) => Command::Workdir(expander.word(path)?),
            Command::User(user) => Command::User(expander.word(user)?),
            Command::StopSignal(signal) => Command::StopSignal(expander.word(signal)?),
            Command::Volume(paths) => Command::Volume(expander.words(paths)?),
            Command::Expose(ports) => {
                let mut expanded = Vec::new();
                for port in ports {
                    expanded.extend(expand_words(port, escape, vars)?);
                }
                Command::Expose(expanded)
            }
            Command::Run(_)
            | Command::Cmd(_)
            | Command::Entrypoint(_)
            | Command::Shell(_)
            | Command::Healthcheck(_)
            | Command::Onbuild(_)
            | Command::Maintainer(_) => self.clone(),
        })
    }
}

struct Expander<'a> {
    escape: char,
    vars: Vars<'a>,
}

impl Expander<'_> {
    fn word(&self, word: &str) -> Result<String, ExpandError> {
        expand_word(word, self.escape, self.vars)
    }

    fn words(&self, words: &[String]) -> Result<Vec<String>, ExpandError> {
        words.iter().map(|word| self.word(word)).collect()
    }

    /// A flag value; one that expands to nothing counts as not given, as in BuildKit.
    fn flag(&self, value: &Option<String>) -> Result<Option<String>, ExpandError> {
        match value {
            Some(value) => {
                let expanded = self.word(value)?;
                Ok((!expanded.is_empty()).then_some(expanded))
            }
            None => Ok(None),
        }
    }

    /// Inline files: the body, tabs stripped with `<<-`, and expanded unless the heredoc's
    /// name was quoted.
    fn inline(&self, heredocs: &[Heredoc]) -> Result<Vec<Heredoc>, ExpandError> {
        heredocs
            .iter()
            .map(|heredoc| {
                let content = heredoc.content();
                Ok(Heredoc {
                    body: if heredoc.expand {
                        expand_heredoc(&content, self.vars)?
                    } else {
                        content
                    },
                    chomp: false,
                    expand: false,
                    name: heredoc.name.clone(),
                })
            })
            .collect()
    }

    fn pairs(&self, pairs: &[KeyValue]) -> Result<Vec<KeyValue>, ExpandError> {
        pairs
            .iter()
            .map(|pair| {
                Ok(KeyValue {
                    key: self.word(&pair.key)?,
                    value: self.word(&pair.value)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
