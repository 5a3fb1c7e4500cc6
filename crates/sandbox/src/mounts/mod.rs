//! `RUN --mount=…` as BuildKit reads it (`instructions/commands_runmount.go` and
//! `dockerfile2llb/convert_runmount.go`): the comma-separated fields, their defaults, and the
//! combinations BuildKit refuses.

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
    /// A directory kept between builds under `id`, never in a layer.
    Cache {
        id: String,
        sharing: Sharing,
        read_only: bool,
        mode: u32,
        uid: u32,
        gid: u32,
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
}

/// The mounts of a RUN that has to run, made ready for the sandbox.
#[derive(Debug, Clone, Default)]
pub struct MountPlan {
    pub mounts: Vec<crate::sandbox::SandboxMount>,
    /// Secrets the command gets as environment variables: the name, and the private file
    /// holding the value.
    pub secret_env: Vec<(String, std::path::PathBuf)>,
}

/// How builds that run at once share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// A `--mount` value BuildKit would refuse (or dockless cannot serve); the message names it.
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
    #[error(
        "--mount=type=ssh is not supported: dockless has no SSH agent forwarding; use a secret (--mount=type=secret) for keys the build needs"
    )]
    Ssh,
    #[error("unsupported mount type \"{0}\": expected bind, cache, tmpfs or secret")]
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
    #[error(
        "--mount=type=cache with from= or source= is not supported yet; use an empty cache (drop from and source)"
    )]
    CacheWithSource,
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

/// Parses the value of one `--mount=` flag. `expand` expands a value's variables (not the
/// keys), as BuildKit does, failing with the expander's message; `workdir` is the absolute
/// working directory for relative targets.
pub fn parse(
    spec: &str,
    workdir: &str,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<RunMount, MountError> {
    parse_fields(spec, workdir, &|value| {
        expand(value).map_err(MountProblem::Expand)
    })
    .map_err(|problem| MountError {
        spec: spec.to_owned(),
        problem,
    })
}

type Expand<'a> = &'a dyn Fn(&str) -> Result<String, MountProblem>;

fn parse_fields(spec: &str, workdir: &str, expand: Expand<'_>) -> Result<RunMount, MountProblem> {
    let fields = csv_fields(spec)?;
    let mut raw = Raw::default();
    // The type decides which keys are allowed, wherever it is written.
    for field in &fields {
        if let Some(value) = field_value(field, &["type"]) {
            raw.kind = parse_type(&expand(value)?)?;
        }
    }
    for field in &fields {
        raw.field(field, expand)?;
    }
    raw.finish(workdir)
}

/// The fields as written, before defaults.
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
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Bind => "bind",
            Type::Cache => "cache",
            Type::Tmpfs => "tmpfs",
            Type::Secret => "secret",
        }
    }
}

fn parse_type(value: &str) -> Result<Type, MountProblem> {
    match value.to_ascii_lowercase().as_str() {
        "bind" => Ok(Type::Bind),
        "cache" => Ok(Type::Cache),
        "tmpfs" => Ok(Type::Tmpfs),
        "secret" => Ok(Type::Secret),
        "ssh" => Err(MountProblem::Ssh),
        other => Err(MountProblem::UnknownType(other.to_owned())),
    }
}

/// The value of `field` when its key is one of `keys` (case-insensitive).
fn field_value<'f>(field: &'f str, keys: &[&str]) -> Option<&'f str> {
    let (key, value) = field.split_once('=')?;
    keys.contains(&key.to_ascii_lowercase().as_str())
        .then_some(value)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, MountProblem> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(MountProblem::InvalidBool {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
    }
}

fn parse_number(key: &'static str, value: &str, radix: u32) -> Result<u32, MountProblem> {
    u32::from_str_radix(value, radix).map_err(|_| MountProblem::InvalidNumber {
        key,
        value: value.to_owned(),
    })
}

impl Raw {
    fn field(&mut self, field: &str, expand: Expand<'_>) -> Result<(), MountProblem> {
        let Some((key, value)) = field.split_once('=') else {
            return self.flag(&field.to_ascii_lowercase());
        };
        let key = key.to_ascii_lowercase();
        if key == "from" && value.contains('$') {
            return Err(MountProblem::VariableFrom);
        }
        let value = expand(value)?;
        let not_for = |key: &str| MountProblem::KeyNotForType {
            key: key.to_owned(),
            mount_type: self.kind.name(),
        };
        match key.as_str() {
            "type" => {}
            "from" => self.from = Some(value),
            "source" | "src" => self.source = Some(value),
            "target" | "dst" | "destination" => self.target = Some(value),
            "readonly" | "ro" => self.read_only = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => self.read_only = Some(!parse_bool(&key, &value)?),
            "required" if self.kind == Type::Secret => {
                self.required = parse_bool(&key, &value)?;
            }
            "size" if self.kind == Type::Tmpfs => self.size = Some(parse_size(&value)?),
            "required" | "size" => return Err(not_for(&key)),
            "id" => self.id = Some(value),
            "sharing" => {
                self.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountProblem::UnknownSharing(value)),
                })
            }
            "mode" => self.mode = Some(parse_number("mode", &value, 8)?),
            "uid" => self.uid = Some(parse_number("uid", &value, 10)?),
            "gid" => self.gid = Some(parse_number("gid", &value, 10)?),
            "env" => self.env = Some(value),
            _ => {
                return Err(MountProblem::UnknownKey {
                    key,
                    field: field.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// A field without `=`.
    fn flag(&mut self, key: &str) -> Result<(), MountProblem> {
        match key {
            "readonly" | "ro" => self.read_only = Some(true),
            "readwrite" | "rw" => self.read_only = Some(false),
            "required" if self.kind == Type::Secret => self.required = true,
            "required" => {
                return Err(MountProblem::KeyNotForType {
                    key: key.to_owned(),
                    mount_type: self.kind.name(),
                });
            }
            _ => return Err(MountProblem::NotKeyValue(key.to_owned())),
        }
        Ok(())
    }

    fn finish(self, workdir: &str) -> Result<RunMount, MountProblem> {
        let file_info = matches!(self.kind, Type::Secret | Type::Cache);
        if !file_info {
            for (name, set) in [
                ("mode", self.mode.is_some()),
                ("uid", self.uid.is_some()),
                ("gid", self.gid.is_some()),
            ] {
                if set {
                    return Err(MountProblem::FileInfoNotForType {
                        key: name,
                        mount_type: self.kind.name(),
                    });
                }
            }
        }
        if self.sharing.is_some() && self.kind != Type::Cache {
            return Err(MountProblem::SharingNotForType(self.kind.name()));
        }
        let read_only = self
            .read_only
            .unwrap_or(!matches!(self.kind, Type::Cache | Type::Tmpfs));
        let (target, kind) = match self.kind {
            Type::Secret => self.secret()?,
            Type::Bind => (
                self.target.clone(),
                MountKind::Bind {
                    from: self.from.clone(),
                    source: self.source.clone().unwrap_or_default(),
                    read_only,
                },
            ),
            Type::Cache => {
                if self.from.is_some() || self.source.is_some() {
                    return Err(MountProblem::CacheWithSource);
                }
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
                    },
                )
            }
            Type::Tmpfs => (self.target.clone(), MountKind::Tmpfs { size: self.size }),
        };
        let target = target.unwrap_or_default();
        if target.is_empty() {
            return Err(MountProblem::NoTarget(kind_name(&kind)));
        }
        let absolute = if target.starts_with('/') {
            clean(&target)
        } else {
            clean(&format!("{workdir}/{target}"))
        };
        if absolute == "/" {
            return Err(MountProblem::RootTarget(target));
        }
        Ok(RunMount {
            target: absolute,
            kind,
        })
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

fn kind_name(kind: &MountKind) -> &'static str {
    match kind {
        MountKind::Bind { .. } => "bind",
        MountKind::Cache { .. } => "cache",
        MountKind::Tmpfs { .. } => "tmpfs",
        MountKind::Secret { .. } => "secret",
    }
}

/// `path.Clean` for absolute and relative paths: no `.`, no `..` above the root, no doubled
/// or trailing slashes.
fn clean(path: &str) -> String {
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
fn parse_size(value: &str) -> Result<u64, MountProblem> {
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
fn csv_fields(text: &str) -> Result<Vec<String>, MountProblem> {
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

#[cfg(test)]
mod tests;
