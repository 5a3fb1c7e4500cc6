//! Writing `template_id` back into `e2b.toml` after the first build, keeping the user's
//! comments, key order and other keys (toml_edit), through a temporary file and a rename.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, value};

use super::config::FILE_NAME;

const HEADER: &str = "# This is a config for E2B sandbox template.\n# You can use template ID or template name to create a sandbox.\n";

#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    #[error("{}: {action}: {source}; the template ID is {template_id}: add `template_id = \"{template_id}\"` yourself", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        template_id: String,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML ({message}); the template ID is {template_id}", path.display())]
    Parse {
        path: PathBuf,
        message: String,
        template_id: String,
    },
}

/// Records `template_id` (and, on a new file, the template name and Dockerfile) in the
/// context's `e2b.toml`. Returns true when the file changed.
pub(crate) fn write_template_id(
    context: &Path,
    template_id: &str,
    template_name: Option<&str>,
    dockerfile: Option<&str>,
) -> Result<bool, WritebackError> {
    let path = context.join(FILE_NAME);
    let io = |action, source| WritebackError::Io {
        path: path.clone(),
        action,
        template_id: template_id.to_owned(),
        source,
    };
    let (text, existed) = match std::fs::read_to_string(&path) {
        Ok(text) => (text, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), false),
        Err(e) => return Err(io("read", e)),
    };
    let mut document: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| WritebackError::Parse {
                path: path.clone(),
                message: e.message().to_owned(),
                template_id: template_id.to_owned(),
            })?;
    // Legacy files say `id`; update the key the user has rather than adding a second one.
    let key = if document.contains_key("template_id") || !document.contains_key("id") {
        "template_id"
    } else {
        "id"
    };
    if document.get(key).and_then(|v| v.as_str()) == Some(template_id) {
        return Ok(false);
    }
    match document.get_mut(key).and_then(|item| item.as_value_mut()) {
        Some(existing) => {
            // Keep the comment and spacing around the old value.
            let decor = existing.decor().clone();
            *existing = template_id.into();
            *existing.decor_mut() = decor;
        }
        None => {
            document[key] = value(template_id);
        }
    }
    if !existed {
        if let Some(name) = template_name {
            document["template_name"] = value(name);
        }
        if let Some(dockerfile) = dockerfile {
            document["dockerfile"] = value(dockerfile);
        }
    }
    let temp = path.with_file_name(format!(".{FILE_NAME}.dockless-{}", std::process::id()));
    let text = if existed {
        document.to_string()
    } else {
        format!("{HEADER}\n{document}")
    };
    std::fs::write(&temp, text).map_err(|e| io("write", e))?;
    std::fs::rename(&temp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        io("replace", e)
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_comments_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let original =
            "# my template\ntemplate_name = \"web\" # the name\n\n# resources\nmemory_mb = 1024\n";
        std::fs::write(dir.path().join(FILE_NAME), original).unwrap();
        assert!(write_template_id(dir.path(), "tpl123", None, None).unwrap());
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with(original), "{text}");
        assert!(text.contains("template_id = \"tpl123\""), "{text}");
        // Again: nothing to change.
        assert!(!write_template_id(dir.path(), "tpl123", None, None).unwrap());
        // A new ID replaces the old value in place.
        assert!(write_template_id(dir.path(), "tpl456", None, None).unwrap());
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.matches("template_id").count(), 1, "{text}");
        assert!(
            text.contains("tpl456") && text.contains("# resources"),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
    }

    #[test]
    fn legacy_id_is_updated_and_new_files_get_a_header() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "id = \"old\" # kept\nname = \"x\"\n",
        )
        .unwrap();
        write_template_id(dir.path(), "new", None, None).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "id = \"new\" # kept\nname = \"x\"\n");

        let fresh = tempfile::tempdir().unwrap();
        write_template_id(fresh.path(), "t1", Some("web"), Some("e2b.Dockerfile")).unwrap();
        let text = std::fs::read_to_string(fresh.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with("# This is a config for E2B"), "{text}");
        let parsed: crate::config::TemplateConfig = toml::from_str(&text).unwrap();
        assert_eq!(parsed.template_id.as_deref(), Some("t1"));
        assert_eq!(parsed.template_name.as_deref(), Some("web"));
    }
}
