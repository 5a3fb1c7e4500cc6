//! The RUN cache: like Docker's, a RUN whose parent layers, command and environment are the same
//! as before reuses the layer it made then, without running anything.

use sha2::{Digest as _, Sha256};

use dockless_dockerfile::{MountKind, RunMount};
use dockless_layer::{LayerSettings, WrittenLayer};
use dockless_oci::digest::Digest;
use dockless_oci::store::Store;
use dockless_sandbox::sandbox::Network;

/// The first line of every key's text. Bumped whenever the layer a given RUN produces may
/// change for the same inputs, or the serialisation below changes. v1 hashed the mounts'
/// `Debug` text (so renaming a Rust field changed every key); v2 writes every field by hand.
const VERSION: &str = "dockless-run-key/v2";

/// Everything that decides what a RUN step produces.
///
/// Its key ([`RunKey::hash`]) is shared between machines (`--cache-to`, `--cache-from`), so
/// it is the SHA-256 of a text fixed here, field by field, never of Rust's `Debug` output.
/// The text is the line `dockless-run-key/v2`, then one record per field, each
/// `<tag> <length>:<value>\n` where `<length>` is the value's length in bytes, in decimal (so
/// a value may hold any byte, a newline included, and no two inputs give the same text). In
/// this order:
///
/// 1. `compression` (`gzip:1`, `zstd:3`: [`Compression::key_text`](dockless_oci::image::Compression::key_text)),
///    `epoch` (decimal seconds), `platform` (`os/architecture[/variant]`), `user` (as written; empty for
///    root), `workdir`, `network` (`host` or `none`);
/// 2. `parents`: their count, then one `parent` per diff_id (`sha256:…`), oldest first;
/// 3. `argv`: the count, then one `arg` each;
/// 4. `env`: the count, then `env-key` and `env-value` for each variable, in order;
/// 5. `mounts`: the count, then for each mount in order `mount-type` (`bind`, `cache`,
///    `tmpfs`, `secret`, `ssh`), `mount-target`, and the fields of its type:
///    - bind: `from` (optional), `source`, `read-only`, `bound` (a digest of what the source
///      holds, or the diff_ids of the stage or image it comes from, comma-separated);
///    - cache: `id`, `sharing` (`shared`, `private`, `locked`), `read-only`, `mode`, `uid`,
///      `gid`, `from` (optional), `source` (optional);
///    - tmpfs: `size` (optional);
///    - secret: `id`, `env` (optional), `as-file`, `required`, `mode`, `uid`, `gid` (never the
///      secret's value);
///    - ssh: `id`, `required`, `mode`, `uid`, `gid`.
///
/// Counts and numbers are decimal (`mode` too: 0o755 is `493`), booleans `true` or `false`.
/// An optional value is empty when absent and `=` followed by the value when given.
#[derive(Debug, Clone)]
pub struct RunKey<'a> {
    /// diff_ids of every layer below, oldest first.
    pub parents: &'a [Digest],
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub user: &'a str,
    pub workdir: &'a str,
    pub platform: &'a str,
    pub settings: LayerSettings,
    /// RUN --network (or the build's --network).
    pub network: Network,
    /// What each RUN --mount gives the command, as far as it decides the result.
    pub mounts: &'a [KeyedMount<'a>],
}

/// A RUN's mount as its key sees it: the mount and, for a bind mount, a digest of what it
/// binds (never a secret's value).
#[derive(Debug, Clone)]
pub struct KeyedMount<'a> {
    pub mount: &'a RunMount,
    /// Empty but for bind mounts.
    pub bound: String,
}

impl RunKey<'_> {
    /// The key: lower-case hex of the SHA-256 of [the text above](RunKey).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.text()))
    }

    fn text(&self) -> Vec<u8> {
        let mut text = KeyText(format!("{VERSION}\n").into_bytes());
        text.field("compression", &self.settings.compression.key_text());
        text.field("epoch", &self.settings.epoch.to_string());
        text.field("platform", self.platform);
        text.field("user", self.user);
        text.field("workdir", self.workdir);
        text.field(
            "network",
            match self.network {
                Network::Host => "host",
                Network::None => "none",
            },
        );
        text.count("parents", self.parents.len());
        for parent in self.parents {
            text.field("parent", parent.as_str());
        }
        text.count("argv", self.argv.len());
        for arg in self.argv {
            text.field("arg", arg);
        }
        text.count("env", self.env.len());
        for (key, value) in self.env {
            text.field("env-key", key);
            text.field("env-value", value);
        }
        text.count("mounts", self.mounts.len());
        for mount in self.mounts {
            text.mount(mount);
        }
        text.0
    }
}

/// The text a key hashes, written one `<tag> <length>:<value>\n` record at a time.
struct KeyText(Vec<u8>);

impl KeyText {
    fn field(&mut self, tag: &str, value: &str) {
        self.0
            .extend_from_slice(format!("{tag} {}:", value.len()).as_bytes());
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(b'\n');
    }

    fn optional(&mut self, tag: &str, value: Option<&str>) {
        match value {
            Some(value) => self.field(tag, &format!("={value}")),
            None => self.field(tag, ""),
        }
    }

    fn count(&mut self, tag: &str, count: usize) {
        self.field(tag, &count.to_string());
    }

    fn number(&mut self, tag: &str, number: impl ToString) {
        self.field(tag, &number.to_string());
    }

    fn mount(&mut self, keyed: &KeyedMount<'_>) {
        let mount = keyed.mount;
        self.field("mount-type", mount.kind.type_name());
        self.field("mount-target", &mount.target);
        match &mount.kind {
            MountKind::Bind {
                from,
                source,
                read_only,
            } => {
                self.optional("from", from.as_deref());
                self.field("source", source);
                self.number("read-only", read_only);
                self.field("bound", &keyed.bound);
            }
            MountKind::Cache {
                id,
                sharing,
                read_only,
                mode,
                uid,
                gid,
                from,
                source,
            } => {
                self.field("id", id);
                self.field("sharing", sharing.as_str());
                self.number("read-only", read_only);
                self.file_info(*mode, *uid, *gid);
                self.optional("from", from.as_deref());
                self.optional("source", source.as_deref());
            }
            MountKind::Tmpfs { size } => {
                self.optional("size", size.map(|size| size.to_string()).as_deref());
            }
            MountKind::Secret {
                id,
                env,
                as_file,
                required,
                mode,
                uid,
                gid,
            } => {
                self.field("id", id);
                self.optional("env", env.as_deref());
                self.number("as-file", as_file);
                self.number("required", required);
                self.file_info(*mode, *uid, *gid);
            }
            MountKind::Ssh {
                id,
                required,
                mode,
                uid,
                gid,
            } => {
                self.field("id", id);
                self.number("required", required);
                self.file_info(*mode, *uid, *gid);
            }
        }
    }

    fn file_info(&mut self, mode: u32, uid: u32, gid: u32) {
        self.number("mode", mode);
        self.number("uid", uid);
        self.number("gid", gid);
    }
}

/// Where RUN layers are recorded in the store, apart from COPY/ADD layers.
const AREA: &str = dockless_oci::areas::RUN_CACHE;

/// The layer an identical RUN made before, if its blob is still in the store.
pub fn lookup(store: &Store, key: &str) -> Option<WrittenLayer> {
    dockless_layer::cache::lookup_in(store, AREA, key)
}

/// Records the layer a RUN made; failing to is harmless (the next build runs it again).
pub fn record(store: &Store, key: &str, layer: &WrittenLayer) {
    dockless_layer::cache::record_in(store, AREA, key, layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockless_dockerfile::Sharing;
    use dockless_oci::image::Compression;

    fn mount(target: &str, kind: MountKind) -> RunMount {
        RunMount {
            target: target.to_owned(),
            kind,
        }
    }

    /// One mount of every kind, with every optional value given once and absent once.
    fn every_kind_of_mount() -> Vec<RunMount> {
        vec![
            mount(
                "/src",
                MountKind::Bind {
                    from: Some("tools".into()),
                    source: "/out".into(),
                    read_only: true,
                },
            ),
            mount(
                "/var/cache/apt",
                MountKind::Cache {
                    id: "apt".into(),
                    sharing: Sharing::Locked,
                    read_only: false,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    from: None,
                    source: None,
                },
            ),
            mount(
                "/tmp",
                MountKind::Tmpfs {
                    size: Some(1 << 20),
                },
            ),
            mount(
                "/run/secrets/npmrc",
                MountKind::Secret {
                    id: "npmrc".into(),
                    env: None,
                    as_file: true,
                    required: false,
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
            ),
            mount(
                "/run/buildkit/ssh_agent.0",
                MountKind::Ssh {
                    id: "default".into(),
                    required: true,
                    mode: 0o600,
                    uid: 1000,
                    gid: 1000,
                },
            ),
        ]
    }

    fn keyed(mounts: &[RunMount]) -> Vec<KeyedMount<'_>> {
        mounts
            .iter()
            .map(|mount| KeyedMount {
                mount,
                bound: match mount.kind {
                    MountKind::Bind { .. } => Digest::of(b"bound").to_string(),
                    _ => String::new(),
                },
            })
            .collect()
    }

    fn settings() -> LayerSettings {
        LayerSettings {
            compression: Compression::Gzip { level: 1 },
            epoch: 0,
        }
    }

    #[test]
    fn the_text_is_the_documented_one() {
        let parents = [Digest::of(b"a")];
        let argv = ["sh".to_owned(), "-c".to_owned(), "echo\nhi".to_owned()];
        let env = [("A".to_owned(), "1".to_owned())];
        let mounts = [mount("/tmp", MountKind::Tmpfs { size: None })];
        let keyed = keyed(&mounts);
        let key = RunKey {
            parents: &parents,
            argv: &argv,
            env: &env,
            user: "",
            workdir: "/",
            platform: "linux/amd64",
            settings: settings(),
            network: Network::Host,
            mounts: &keyed,
        };
        let text = String::from_utf8(key.text()).unwrap();
        let expected = format!(
            "dockless-run-key/v2\ncompression 6:gzip:1\nepoch 1:0\nplatform 11:linux/amd64\n\
             user 0:\nworkdir 1:/\nnetwork 4:host\nparents 1:1\nparent 71:{}\nargv 1:3\n\
             arg 2:sh\narg 2:-c\narg 7:echo\nhi\nenv 1:1\nenv-key 1:A\nenv-value 1:1\n\
             mounts 1:1\nmount-type 5:tmpfs\nmount-target 4:/tmp\nsize 0:\n",
            parents[0]
        );
        assert_eq!(text, expected);
        assert_eq!(key.hash(), hex::encode(Sha256::digest(expected)));
    }

    /// A key shared by `--cache-to` must not change unless `VERSION` does: this one is pinned.
    /// A field left out of the text, a renamed tag or a reordered field fails here.
    #[test]
    fn a_known_key_is_pinned() {
        let parents = [Digest::of(b"base"), Digest::of(b"apt")];
        let argv = [
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "apt-get update".to_owned(),
        ];
        let env = [
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned()),
        ];
        let mounts = every_kind_of_mount();
        let keyed = keyed(&mounts);
        let key = RunKey {
            parents: &parents,
            argv: &argv,
            env: &env,
            user: "1000:1000",
            workdir: "/app",
            platform: "linux/arm64",
            settings: LayerSettings {
                compression: Compression::Zstd { level: 3 },
                epoch: 1_700_000_000,
            },
            network: Network::None,
            mounts: &keyed,
        };
        // Also what a separate script, written from the format documented on `RunKey`, gives.
        assert_eq!(
            key.hash(),
            "90b80426666b38a14d07d6d771aed8595cf5e697fbcf2adafa079b4aa9a516dd"
        );
    }

    #[test]
    fn every_input_changes_the_key() {
        let parents = vec![Digest::of(b"a")];
        let argv = vec!["sh".to_owned(), "-c".to_owned(), "true".to_owned()];
        let env = vec![("A".to_owned(), "1".to_owned())];
        let mounts = every_kind_of_mount();
        let all = keyed(&mounts);
        let key = RunKey {
            parents: &parents,
            argv: &argv,
            env: &env,
            user: "",
            workdir: "/",
            platform: "linux/amd64",
            settings: settings(),
            network: Network::Host,
            mounts: &all,
        };
        let base = key.hash();
        assert_eq!(key.hash(), base, "stable");
        let other_argv = vec!["sh".to_owned(), "-c true".to_owned()];
        let other_env = vec![("A".to_owned(), "2".to_owned())];
        let no_parents: Vec<Digest> = Vec::new();
        let fewer = keyed(&mounts[1..]);
        let mut rebound = keyed(&mounts);
        rebound[0].bound = Digest::of(b"changed").to_string();
        let mut changed_mounts = Vec::new();
        for (index, changed) in [
            MountKind::Bind {
                from: None,
                source: "/out".into(),
                read_only: true,
            },
            MountKind::Cache {
                id: "apt".into(),
                sharing: Sharing::Shared,
                read_only: false,
                mode: 0o755,
                uid: 0,
                gid: 0,
                from: None,
                source: None,
            },
            MountKind::Tmpfs { size: None },
            MountKind::Secret {
                id: "npmrc".into(),
                env: Some("NPMRC".into()),
                as_file: true,
                required: false,
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
            MountKind::Ssh {
                id: "default".into(),
                required: true,
                mode: 0o600,
                uid: 1000,
                gid: 0,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let mut one_changed = mounts.clone();
            one_changed[index].kind = changed;
            changed_mounts.push(one_changed);
        }
        let mut moved = mounts.clone();
        moved[0].target = "/elsewhere".into();
        changed_mounts.push(moved);
        let changed_keyed: Vec<Vec<KeyedMount<'_>>> =
            changed_mounts.iter().map(|m| keyed(m)).collect();
        let mut changes = vec![
            RunKey {
                argv: &other_argv,
                ..key.clone()
            },
            RunKey {
                env: &other_env,
                ..key.clone()
            },
            RunKey {
                parents: &no_parents,
                ..key.clone()
            },
            RunKey {
                user: "1000",
                ..key.clone()
            },
            RunKey {
                workdir: "/tmp",
                ..key.clone()
            },
            RunKey {
                platform: "linux/arm64",
                ..key.clone()
            },
            RunKey {
                settings: LayerSettings {
                    epoch: 1,
                    ..settings()
                },
                ..key.clone()
            },
            RunKey {
                settings: LayerSettings {
                    compression: Compression::Zstd { level: 1 },
                    ..settings()
                },
                ..key.clone()
            },
            RunKey {
                network: Network::None,
                ..key.clone()
            },
            RunKey {
                mounts: &fewer,
                ..key.clone()
            },
            RunKey {
                mounts: &rebound,
                ..key.clone()
            },
        ];
        for mounts in &changed_keyed {
            changes.push(RunKey {
                mounts,
                ..key.clone()
            });
        }
        let mut seen = std::collections::BTreeSet::from([base]);
        for (index, changed) in changes.iter().enumerate() {
            assert!(seen.insert(changed.hash()), "change {index} kept a key");
        }
    }
}
