//! `RUN --mount=…` as BuildKit reads it (`instructions/commands_runmount.go` and
//! `dockerfile2llb/convert_runmount.go`): the comma-separated fields, their defaults, and the
//! combinations BuildKit refuses.
//!
//! A mount is read in two steps, as in BuildKit. When the Dockerfile is parsed
//! ([`MountFlag::parse`]) its fields are split and their keys checked; a mount whose values
//! hold no variable is then checked completely, so its mistakes name the line before anything
//! is built. When its RUN is built ([`RunFlags::mounts`](super::RunFlags::mounts)) the values
//! (never the keys) are expanded with the variables in scope there and the mount is typed.
//! What dockless cannot serve (SSH, a cache seeded from a source) is valid here and refused
//! by the builder.

use super::lex::expand_word;
use values::{clean, csv_fields, parse_bool, parse_number, parse_size, place};

mod values;

/// One `--mount` of a RUN, validated, with BuildKit's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// Where the command sees it: absolute (a relative target is taken from WORKDIR).
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A directory of the context (no `from`), of an earlier stage or of an image, read-only
    /// unless `rw` (writes are then thrown away).
    Bind {
        from: Option<String>,
        source: String,
        read_only: bool,
    },
    /// A directory kept between builds under `id`, never in a layer. `from`/`source` would
    /// seed it from a stage or image (BuildKit does; dockless does not yet).
    Cache {
        id: String,
        sharing: Sharing,
        read_only: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        from: Option<String>,
        source: Option<String>,
    },
    /// An empty in-memory file system, of `size` bytes at most when given.
    Tmpfs { size: Option<u64> },
    /// A secret the build was given (`--secret id=…`), as a file at the target or, with
    /// `env`, as an environment variable: visible to this command only.
    Secret {
        id: String,
        /// `env=NAME`: the secret's value in this variable.
        env: Option<String>,
        /// False when only `env` was asked for: no file.
        as_file: bool,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// The build's SSH agent socket (`--ssh id=…`) at the target.
    Ssh {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl MountKind {
    /// The `type=` that gives this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            MountKind::Bind { .. } => "bind",
            MountKind::Cache { .. } => "cache",
            MountKind::Tmpfs { .. } => "tmpfs",
            MountKind::Secret { .. } => "secret",
            MountKind::Ssh { .. } => "ssh",
        }
    }
}

/// How builds that run at once share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

impl Sharing {
    /// The value of `sharing=` that gives this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }
    }
}

/// A `--mount` value BuildKit would refuse; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--mount={spec}: {problem}")]
pub struct MountError {
    pub spec: String,
    pub problem: MountProblem,
}

/// What is wrong in a `--mount` value, in BuildKit's words where it has some.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountProblem {
    /// A value's variables could not be expanded (the expander's message).
    #[error("{0}")]
    Expand(String),
    #[error("unsupported mount type \"{0}\": expected bind, cache, tmpfs, secret or ssh")]
    UnknownType(String),
    #[error("invalid value for {key}: {value}")]
    InvalidBool { key: String, value: String },
    #[error("--mount from= does not take variables; name the stage with FROM … AS instead")]
    VariableFrom,
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    KeyNotForType {
        key: String,
        mount_type: &'static str,
    },
    #[error("unsupported sharing value \"{0}\": expected shared, private or locked")]
    UnknownSharing(String),
    #[error("invalid value {value} for {key}")]
    InvalidNumber { key: &'static str, value: String },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey { key: String, field: String },
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("{key} not allowed for \"{mount_type}\" type mounts")]
    FileInfoNotForType {
        key: &'static str,
        mount_type: &'static str,
    },
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotForType(&'static str),
    #[error("--mount=type={0} needs a target (target=/path)")]
    NoTarget(&'static str),
    #[error("invalid mount target \"{0}\"")]
    RootTarget(String),
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid secret mount. one of source, target required")]
    SecretUnnamed,
    #[error("a secret mount needs an id (id=NAME)")]
    SecretEmptyId,
    #[error("invalid value for size: {0}")]
    InvalidSize(String),
    #[error("a quoted field is never closed")]
    UnclosedQuote,
    #[error("extraneous text after a quoted field")]
    TextAfterQuote,
    #[error("a bare \" in a field; quote the whole field")]
    BareQuote,
}

/// One `--mount` as written: its fields, each with a known key and its value not expanded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    /// The flag's value as written, for messages.
    spec: String,
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    key: Key,
    /// The key as written, lower-cased (`ro` or `readonly`), for messages.
    name: String,
    /// The value as written; `None` for a bare `ro`, `rw` or `required`.
    value: Option<String>,
}

/// The keys BuildKit knows, aliases folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Type,
    From,
    Source,
    Target,
    ReadOnly,
    ReadWrite,
    Required,
    Size,
    Id,
    Sharing,
    Mode,
    Uid,
    Gid,
    Env,
}

impl Key {
    fn of(name: &str) -> Option<Key> {
        Some(match name {
            "type" => Key::Type,
            "from" => Key::From,
            "source" | "src" => Key::Source,
            "target" | "dst" | "destination" => Key::Target,
            "readonly" | "ro" => Key::ReadOnly,
            "readwrite" | "rw" => Key::ReadWrite,
            "required" => Key::Required,
            "size" => Key::Size,
            "id" => Key::Id,
            "sharing" => Key::Sharing,
            "mode" => Key::Mode,
            "uid" => Key::Uid,
            "gid" => Key::Gid,
            "env" => Key::Env,
            _ => return None,
        })
    }
}

/// The variables in scope at a RUN, by name.
pub(crate) type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

impl MountFlag {
    /// Reads the value of one `--mount=` flag: the fields, their keys, and `from` (which takes
    /// no variables). A mount without `$` is checked completely, with `escape` the Dockerfile's
    /// escape character; the others when they are expanded.
    pub(crate) fn parse(spec: &str, escape: char, ssh_index: usize) -> Result<Self, MountError> {
        let error = |problem| MountError {
            spec: spec.to_owned(),
            problem,
        };
        let fields = csv_fields(spec)
            .map_err(error)?
            .iter()
            .map(|field| Field::parse(field))
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        let flag = MountFlag {
            spec: spec.to_owned(),
            fields,
        };
        if !spec.contains('$') {
            // Nothing to expand: what it means is known now. Only a relative target waits
            // for the WORKDIR it is taken from.
            let (target, _) = flag.resolve(escape, &|_| None, ssh_index)?;
            if target.starts_with('/') {
                place(&target, "/").map_err(error)?;
            }
        }
        Ok(flag)
    }

    /// The stage or image `from=` names, as written (it takes no variables).
    pub fn from(&self) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|field| field.key == Key::From)
            .and_then(|field| field.value.as_deref())
    }

    /// The mount with its values expanded (`vars`: the variables in scope at the RUN) and
    /// BuildKit's defaults filled in; `workdir` (absolute) places a relative target.
    pub(crate) fn expand(
        &self,
        escape: char,
        vars: Vars<'_>,
        workdir: &str,
        ssh_index: usize,
    ) -> Result<RunMount, MountError> {
        let (target, kind) = self.resolve(escape, vars, ssh_index)?;
        let target = place(&target, workdir).map_err(|problem| self.error(problem))?;
        Ok(RunMount { target, kind })
    }

    /// The target as written (maybe relative) and the typed mount.
    fn resolve(
        &self,
        escape: char,
        vars: Vars<'_>,
        ssh_index: usize,
    ) -> Result<(String, MountKind), MountError> {
        let expand = |value: &str| {
            expand_word(value, escape, vars).map_err(|e| MountProblem::Expand(e.to_string()))
        };
        let mut raw = Raw::default();
        // The type decides which keys are allowed, wherever it is written.
        for field in self.fields.iter().filter(|field| field.key == Key::Type) {
            let value = field.value.as_deref().unwrap_or_default();
            raw.kind = expand(value)
                .and_then(|value| parse_type(&value))
                .map_err(|problem| self.error(problem))?;
        }
        for field in &self.fields {
            raw.field(field, &expand)
                .map_err(|problem| self.error(problem))?;
        }
        raw.finish(ssh_index).map_err(|problem| self.error(problem))
    }

    fn error(&self, problem: MountProblem) -> MountError {
        MountError {
            spec: self.spec.clone(),
            problem,
        }
    }
}

impl Field {
    /// One field of the record: `key=value`, or a bare `ro`, `rw` or `required`. A key is
    /// never expanded, so an unknown one is refused now; so is a variable in `from`.
    fn parse(field: &str) -> Result<Field, MountProblem> {
        let (name, value) = match field.split_once('=') {
            Some((name, value)) => (name.to_ascii_lowercase(), Some(value.to_owned())),
            None => (field.to_ascii_lowercase(), None),
        };
        let key = match (Key::of(&name), &value) {
            (Some(key @ (Key::ReadOnly | Key::ReadWrite | Key::Required)), None) => key,
            (_, None) => return Err(MountProblem::NotKeyValue(name)),
            (Some(Key::From), Some(from)) if from.contains('$') => {
                return Err(MountProblem::VariableFrom);
            }
            (Some(key), Some(_)) => key,
            (None, Some(_)) => {
                return Err(MountProblem::UnknownKey {
                    key: name,
                    field: field.to_owned(),
                });
            }
        };
        Ok(Field { key, name, value })
    }
}

/// The fields as expanded, before defaults.
#[derive(Debug, Default)]
struct Raw {
    kind: Type,
    from: Option<String>,
    source: Option<String>,
    target: Option<String>,
    read_only: Option<bool>,
    size: Option<u64>,
    id: Option<String>,
    sharing: Option<Sharing>,
    required: bool,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    env: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Type {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Bind => "bind",
            Type::Cache => "cache",
            Type::Tmpfs => "tmpfs",
            Type::Secret => "secret",
            Type::Ssh => "ssh",
        }
    }
}

fn parse_type(value: &str) -> Result<Type, MountProblem> {
    match value.to_ascii_lowercase().as_str() {
        "bind" => Ok(Type::Bind),
        "cache" => Ok(Type::Cache),
        "tmpfs" => Ok(Type::Tmpfs),
        "secret" => Ok(Type::Secret),
        "ssh" => Ok(Type::Ssh),
        other => Err(MountProblem::UnknownType(other.to_owned())),
    }
}

impl Raw {
    fn field(
        &mut self,
        field: &Field,
        expand: &dyn Fn(&str) -> Result<String, MountProblem>,
    ) -> Result<(), MountProblem> {
        let kind = self.kind;
        let key = field.name.as_str();
        let not_for = || MountProblem::KeyNotForType {
            key: key.to_owned(),
            mount_type: kind.name(),
        };
        let takes_required = matches!(kind, Type::Secret | Type::Ssh);
        let Some(value) = &field.value else {
            // A bare flag: `ro`, `rw` or `required` (the only ones `Field::parse` lets by).
            match field.key {
                Key::ReadOnly => self.read_only = Some(true),
                Key::ReadWrite => self.read_only = Some(false),
                Key::Required if takes_required => self.required = true,
                _ => return Err(not_for()),
            }
            return Ok(());
        };
        let value = expand(value)?;
        match field.key {
            Key::Type => {}
            Key::From => self.from = Some(value),
            Key::Source => self.source = Some(value),
            Key::Target => self.target = Some(value),
            Key::ReadOnly => self.read_only = Some(parse_bool(key, &value)?),
            Key::ReadWrite => self.read_only = Some(!parse_bool(key, &value)?),
            Key::Required if takes_required => self.required = parse_bool(key, &value)?,
            Key::Size if kind == Type::Tmpfs => self.size = Some(parse_size(&value)?),
            Key::Required | Key::Size => return Err(not_for()),
            Key::Id => self.id = Some(value),
            Key::Sharing => {
                self.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountProblem::UnknownSharing(value)),
                })
            }
            Key::Mode => self.mode = Some(parse_number("mode", &value, 8)?),
            Key::Uid => self.uid = Some(parse_number("uid", &value, 10)?),
            Key::Gid => self.gid = Some(parse_number("gid", &value, 10)?),
            Key::Env => self.env = Some(value),
        }
        Ok(())
    }

    /// The target as written and the typed mount, with BuildKit's defaults.
    fn finish(self, ssh_index: usize) -> Result<(String, MountKind), MountProblem> {
        let kind = self.kind;
        let file_info = matches!(kind, Type::Secret | Type::Ssh | Type::Cache);
        if !file_info {
            for (name, set) in [
                ("mode", self.mode.is_some()),
                ("uid", self.uid.is_some()),
                ("gid", self.gid.is_some()),
            ] {
                if set {
                    return Err(MountProblem::FileInfoNotForType {
                        key: name,
                        mount_type: kind.name(),
                    });
                }
            }
        }
        if self.sharing.is_some() && kind != Type::Cache {
            return Err(MountProblem::SharingNotForType(kind.name()));
        }
        let read_only = self
            .read_only
            .unwrap_or(!matches!(kind, Type::Cache | Type::Tmpfs));
        let (target, mount) = match kind {
            Type::Secret => self.secret()?,
            Type::Ssh => (
                // BuildKit's default: one socket per ssh mount of the RUN.
                Some(
                    self.target
                        .clone()
                        .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}")),
                ),
                MountKind::Ssh {
                    id: self.id.clone().unwrap_or_else(|| "default".to_owned()),
                    required: self.required,
                    mode: self.mode.unwrap_or(0o600),
                    uid: self.uid.unwrap_or(0),
                    gid: self.gid.unwrap_or(0),
                },
            ),
            Type::Bind => (
                self.target.clone(),
                MountKind::Bind {
                    from: self.from.clone(),
                    source: self.source.clone().unwrap_or_default(),
                    read_only,
                },
            ),
            Type::Cache => {
                let target = self.target.clone().unwrap_or_default();
                let id = self.id.clone().unwrap_or_else(|| clean(&target));
                (
                    self.target.clone(),
                    MountKind::Cache {
                        id,
                        sharing: self.sharing.unwrap_or(Sharing::Shared),
                        read_only,
                        mode: self.mode.unwrap_or(0o755),
                        uid: self.uid.unwrap_or(0),
                        gid: self.gid.unwrap_or(0),
                        from: self.from.clone(),
                        source: self.source.clone(),
                    },
                )
            }
            Type::Tmpfs => (self.target.clone(), MountKind::Tmpfs { size: self.size }),
        };
        match target {
            Some(target) if !target.is_empty() => Ok((target, mount)),
            _ => Err(MountProblem::NoTarget(mount.type_name())),
        }
    }

    /// A secret's id and target: `source`, else `id`, else the target's file name; the target
    /// defaults to `/run/secrets/<id>` unless only `env` is asked for.
    fn secret(&self) -> Result<(Option<String>, MountKind), MountProblem> {
        if self.from.is_some() {
            return Err(MountProblem::SecretFrom);
        }
        if self.source.is_some() && self.id.is_some() {
            return Err(MountProblem::SecretSourceAndId);
        }
        let id = match self.source.clone().or_else(|| self.id.clone()) {
            Some(id) => id,
            None => match &self.target {
                Some(target) => target.rsplit('/').next().unwrap_or_default().to_owned(),
                None => return Err(MountProblem::SecretUnnamed),
            },
        };
        if id.is_empty() {
            return Err(MountProblem::SecretEmptyId);
        }
        let as_file = self.env.is_none() || self.target.is_some();
        let target = match (&self.target, as_file) {
            (Some(target), _) => Some(target.clone()),
            (None, true) => Some(format!(
                "/run/secrets/{}",
                id.rsplit('/').next().unwrap_or(&id)
            )),
            // Only an environment variable: no file, so no target; the mount keeps a
            // placeholder target that nothing mounts.
            (None, false) => Some(format!("/run/secrets/{id}")),
        };
        Ok((
            target,
            MountKind::Secret {
                id,
                env: self.env.clone(),
                as_file,
                required: self.required,
                mode: self.mode.unwrap_or(0o400),
                uid: self.uid.unwrap_or(0),
                gid: self.gid.unwrap_or(0),
            },
        ))
    }
}

#[cfg(test)]
mod tests;
