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

/// Parses one `--secret` value: `id=NAME` with `src=FILE` (or `source=`), `env=VAR`, and an
/// optional `type=file|env`; `id=NAME` alone takes the environment variable NAME, as buildx
/// does.
pub fn parse_secret_flag(spec: &str) -> Result<(String, SecretSource), String> {
    let bad =
        |why: &str| format!("--secret {spec}: {why}; expected id=NAME,src=FILE or id=NAME,env=VAR");
    let mut fields = BTreeMap::new();
    for field in spec.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad("each field is KEY=VALUE"))?;
        let key = match key.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => "src".to_owned(),
            other => other.to_owned(),
        };
        if fields.insert(key.clone(), value.to_owned()).is_some() {
            return Err(bad(&format!("{key} is given twice")));
        }
    }
    let id = fields
        .remove("id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad("id is missing"))?;
    let kind = fields.remove("type");
    let source = match (kind.as_deref(), fields.remove("src"), fields.remove("env")) {
        (None | Some("file"), Some(src), None) => SecretSource::File(PathBuf::from(src)),
        (None | Some("env"), None, Some(env)) => SecretSource::Env(env),
        (Some("env"), Some(var), None) => SecretSource::Env(var),
        (None | Some("env"), None, None) => SecretSource::Env(id.clone()),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some(other), _, _) if other != "file" && other != "env" => {
            return Err(bad(&format!("type={other} is not file or env")));
        }
        _ => return Err(bad("give either src or env")),
    };
    if let Some(key) = fields.keys().next() {
        return Err(bad(&format!("unknown field {key}")));
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
    }
}
