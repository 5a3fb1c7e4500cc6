//! The image's user and group databases (/etc/passwd, /etc/group): `--chown`, `USER` and
//! `WORKDIR` owners by number or by name.

#[derive(Debug, Clone, Default)]
pub struct UserDatabase {
    /// Contents of /etc/passwd, if the image has one.
    pub passwd: Option<String>,
    /// Contents of /etc/group, if the image has one.
    pub group: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChownError {
    #[error("user '{name}' is not in the image's /etc/passwd{hint}")]
    UnknownUser {
        spec: String,
        name: String,
        hint: &'static str,
    },
    #[error("group '{name}' is not in the image's /etc/group{hint}")]
    UnknownGroup {
        spec: String,
        name: String,
        hint: &'static str,
    },
    #[error("`{0}` is not an owner: expected USER, USER:GROUP, UID or UID:GID")]
    Malformed(String),
}

const NO_FILE_HINT: &str = " (the image has none; use numeric IDs such as 1000:1000)";

impl UserDatabase {
    /// Resolves `user[:group]` as Docker does: a user without a group takes the user's primary
    /// group when named, or the same number when numeric.
    pub fn resolve(&self, spec: &str) -> Result<(u64, u64), ChownError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err(ChownError::Malformed(spec.into()));
        }
        let (uid, primary_gid) = match user.parse::<u64>() {
            Ok(uid) => (uid, uid),
            Err(_) => {
                lookup(self.passwd.as_deref(), user, 2).ok_or_else(|| ChownError::UnknownUser {
                    spec: spec.into(),
                    name: user.into(),
                    hint: if self.passwd.is_none() {
                        NO_FILE_HINT
                    } else {
                        ""
                    },
                })?
            }
        };
        let gid = match group {
            None => primary_gid,
            Some(g) => match g.parse::<u64>() {
                Ok(gid) => gid,
                Err(_) => lookup(self.group.as_deref(), g, 2)
                    .map(|(gid, _)| gid)
                    .ok_or_else(|| ChownError::UnknownGroup {
                        spec: spec.into(),
                        name: g.into(),
                        hint: if self.group.is_none() {
                            NO_FILE_HINT
                        } else {
                            ""
                        },
                    })?,
            },
        };
        Ok((uid, gid))
    }
}

impl UserDatabase {
    /// The identity a RUN command gets for `USER user[:group]`, by runc's rules (which differ
    /// from `--chown`'s): a number the passwd file does not list runs with group 0, a listed
    /// one with its primary group.
    pub fn exec_user(&self, spec: &str) -> Result<(u64, u64), ChownError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, gid) = match user.parse::<u64>() {
            Ok(uid) => {
                let listed = self.passwd.as_deref().and_then(|passwd| {
                    passwd.lines().find_map(|line| {
                        let fields: Vec<&str> = line.split(':').collect();
                        (fields.get(2)?.parse::<u64>().ok()? == uid)
                            .then(|| fields.get(3)?.parse::<u64>().ok())
                            .flatten()
                    })
                });
                (uid, listed.unwrap_or(0))
            }
            Err(_) => return self.resolve(spec),
        };
        match group {
            None => Ok((uid, gid)),
            Some(_) => self.resolve(&format!("{uid}:{}", group.unwrap_or_default())),
        }
    }

    /// The home directory of `user` (a name or a number, as USER gives it) from /etc/passwd,
    /// else `/`: what runc sets `HOME` to when the environment has none.
    pub fn home(&self, user: &str) -> String {
        let user = user.split(':').next().unwrap_or_default();
        let user = if user.is_empty() { "0" } else { user };
        let numeric = user.parse::<u64>().ok();
        self.passwd
            .as_deref()
            .and_then(|passwd| {
                passwd.lines().find_map(|line| {
                    let fields: Vec<&str> = line.split(':').collect();
                    let matches = match numeric {
                        Some(uid) => fields.get(2).and_then(|f| f.parse::<u64>().ok()) == Some(uid),
                        None => fields.first() == Some(&user),
                    };
                    matches.then(|| fields.get(5).copied().unwrap_or_default().to_owned())
                })
            })
            .filter(|home| !home.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }
}

/// Finds `name` in a colon-separated database; returns the numeric fields at `id_field` and the
/// one after it (passwd: uid, gid; group: gid, and whatever follows, unused).
fn lookup(file: Option<&str>, name: &str, id_field: usize) -> Option<(u64, u64)> {
    file?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        let id = fields.get(id_field)?.parse().ok()?;
        let next = fields
            .get(id_field + 1)
            .and_then(|f| f.parse().ok())
            .unwrap_or(id);
        Some((id, next))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> UserDatabase {
        UserDatabase {
            passwd: Some(
                "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1001::/home/user:/bin/bash\n".into(),
            ),
            group: Some("root:x:0:\nstaff:x:50:user\nuser:x:1001:\n".into()),
        }
    }

    #[test]
    fn resolves_names_and_numbers_like_docker() {
        let db = db();
        assert_eq!(db.resolve("user").unwrap(), (1000, 1001));
        assert_eq!(db.resolve("user:staff").unwrap(), (1000, 50));
        assert_eq!(db.resolve("42").unwrap(), (42, 42));
        assert_eq!(db.resolve("42:7").unwrap(), (42, 7));
        assert_eq!(db.resolve("1000:staff").unwrap(), (1000, 50));
    }

    #[test]
    fn unknown_names_and_bad_specs_are_clear_errors() {
        let err = db().resolve("nobody").unwrap_err().to_string();
        assert!(err.contains("'nobody'"), "{err}");
        let err = UserDatabase::default()
            .resolve("user")
            .unwrap_err()
            .to_string();
        assert!(err.contains("numeric"), "{err}");
        assert!(db().resolve(":1").is_err());
        assert!(db().resolve("1:").is_err());
    }

    #[test]
    fn run_identity_follows_runc() {
        let db = db();
        assert_eq!(db.exec_user("4242").unwrap(), (4242, 0));
        assert_eq!(db.exec_user("1000").unwrap(), (1000, 1001));
        assert_eq!(db.exec_user("user").unwrap(), (1000, 1001));
        assert_eq!(db.exec_user("4242:50").unwrap(), (4242, 50));
        assert_eq!(db.exec_user("4242:staff").unwrap(), (4242, 50));
        assert!(db.exec_user("nosuch").is_err());
    }

    #[test]
    fn home_comes_from_passwd_by_name_or_number_else_root_directory() {
        let db = db();
        assert_eq!(db.home(""), "/root");
        assert_eq!(db.home("user"), "/home/user");
        assert_eq!(db.home("1000"), "/home/user");
        assert_eq!(db.home("1000:50"), "/home/user");
        assert_eq!(db.home("4242"), "/");
        assert_eq!(db.home("nosuch"), "/");
        assert_eq!(UserDatabase::default().home("root"), "/");
    }
}
