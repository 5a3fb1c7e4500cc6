//! `--secret id=NAME,src=FILE` / `--secret id=NAME,env=VAR`: where the secrets that
//! `RUN --mount=type=secret` uses come from, as `docker buildx build --secret` reads the flag.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where one secret comes from. Only the place is held here; the value is read when a RUN
/// that mounts it has to run, and is never logged, stored in a layer or a cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE`: the file's content.
    File(PathBuf),
    /// `env=VAR`: the value of dockless's environment variable.
    Env(String),
}

/// A `--secret` value that cannot be read; the message names it and shows the two forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--secret {spec}: {problem}; expected id=NAME,src=FILE or id=NAME,env=VAR")]
pub struct SecretFlagError {
    pub spec: String,
    pub problem: SecretFlagProblem,
}

/// What is wrong in a `--secret` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFlagProblem {
    #[error("each field is KEY=VALUE")]
    NotKeyValue,
    #[error("{0} is given twice")]
    Repeated(String),
    #[error("id is missing")]
    NoId,
    #[error("type={0} is not file or env")]
    UnknownType(String),
    #[error("give either src or env")]
    SourceAndEnv,
    #[error("unknown field {0}")]
    UnknownField(String),
}

/// Parses one `--secret` value: `id=NAME` with `src=FILE` (or `source=`), `env=VAR`, and an
/// optional `type=file|env`; `id=NAME` alone takes the environment variable NAME, as buildx
/// does.
pub fn parse_secret_flag(spec: &str) -> Result<(String, SecretSource), SecretFlagError> {
    let bad = |problem| SecretFlagError {
        spec: spec.to_owned(),
        problem,
    };
    let mut fields = BTreeMap::new();
    for field in spec.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad(SecretFlagProblem::NotKeyValue))?;
        let key = match key.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => "src".to_owned(),
            other => other.to_owned(),
        };
        if fields.insert(key.clone(), value.to_owned()).is_some() {
            return Err(bad(SecretFlagProblem::Repeated(key)));
        }
    }
    let id = fields
        .remove("id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad(SecretFlagProblem::NoId))?;
    let kind = fields.remove("type");
    let source = match (kind.as_deref(), fields.remove("src"), fields.remove("env")) {
        (None | Some("file"), Some(src), None) => SecretSource::File(PathBuf::from(src)),
        (None | Some("env"), None, Some(env)) => SecretSource::Env(env),
        (Some("env"), Some(var), None) => SecretSource::Env(var),
        (None | Some("env"), None, None) => SecretSource::Env(id.clone()),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some(other), _, _) if other != "file" && other != "env" => {
            return Err(bad(SecretFlagProblem::UnknownType(other.to_owned())));
        }
        _ => return Err(bad(SecretFlagProblem::SourceAndEnv)),
    };
    if let Some(key) = fields.into_keys().next() {
        return Err(bad(SecretFlagProblem::UnknownField(key)));
    }
    Ok((id, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_flags_read_like_buildx() {
        assert_eq!(
            parse_secret_flag("id=npmrc,src=/home/me/.npmrc").unwrap(),
            ("npmrc".into(), SecretSource::File("/home/me/.npmrc".into()))
        );
        assert_eq!(
            parse_secret_flag("id=token,env=GH_TOKEN").unwrap(),
            ("token".into(), SecretSource::Env("GH_TOKEN".into()))
        );
        assert_eq!(
            parse_secret_flag("id=TOKEN").unwrap(),
            ("TOKEN".into(), SecretSource::Env("TOKEN".into()))
        );
        assert_eq!(
            parse_secret_flag("type=file,id=a,source=f").unwrap(),
            ("a".into(), SecretSource::File("f".into()))
        );
        for bad in [
            "src=f",
            "id=a,src=f,env=E",
            "id=a,nosuch=1",
            "id=a,type=ssh",
            "id",
            "id=a,id=b",
        ] {
            assert!(parse_secret_flag(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_secret_flag("id=a,type=ssh").unwrap_err().to_string(),
            "--secret id=a,type=ssh: type=ssh is not file or env; expected id=NAME,src=FILE or \
             id=NAME,env=VAR"
        );
    }
}
