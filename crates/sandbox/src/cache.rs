//! The RUN cache: like Docker's, a RUN whose parent layers, command and environment are the same
//! as before reuses the layer it made then, without running anything.

use sha2::{Digest as _, Sha256};

use dockless_layer::{LayerSettings, WrittenLayer};
use dockless_oci::digest::Digest;
use dockless_oci::store::Store;

/// Bumped whenever the layer a given RUN produces may change for the same inputs.
const VERSION: &str = "dockless-run-cache-v2";

/// Everything that decides what a RUN step produces.
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
    pub network: crate::sandbox::Network,
    /// What each RUN --mount gives the command, as far as it decides the result: the mount
    /// and, for a bind mount, a digest of what it binds (never a secret's value).
    pub mounts: &'a [String],
}

impl RunKey<'_> {
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        let compression = self.settings.compression.key_text();
        let mut text = format!(
            "{VERSION}\n{compression}\n{}\n{}\n{}\n{}\n",
            self.settings.epoch, self.platform, self.user, self.workdir
        );
        // Only `none` adds a line: keys of RUNs with the host's network stay what they were.
        if self.network == crate::sandbox::Network::None {
            text.push_str("network:none\n");
        }
        for parent in self.parents {
            text.push_str(parent.as_str());
            text.push('\n');
        }
        // Lengths before values: no two different lists hash alike.
        for arg in self.argv {
            text.push_str(&format!("a{}:{arg}\n", arg.len()));
        }
        for (key, value) in self.env {
            text.push_str(&format!("e{}:{key}={}:{value}\n", key.len(), value.len()));
        }
        for mount in self.mounts {
            text.push_str(&format!("m{}:{mount}\n", mount.len()));
        }
        hasher.update(text.as_bytes());
        hex::encode(hasher.finalize())
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
    use dockless_oci::image::Compression;

    #[test]
    fn every_input_changes_the_key() {
        let parents = vec![Digest::of(b"a")];
        let argv = vec!["sh".to_owned(), "-c".to_owned(), "true".to_owned()];
        let env = vec![("A".to_owned(), "1".to_owned())];
        let key = RunKey {
            parents: &parents,
            argv: &argv,
            env: &env,
            user: "",
            workdir: "/",
            platform: "linux/amd64",
            settings: LayerSettings {
                compression: Compression::Gzip { level: 1 },
                epoch: 0,
            },
            network: crate::sandbox::Network::Host,
            mounts: &[],
        };
        let base = key.hash();
        assert_eq!(key.hash(), base, "stable");
        let other_argv = vec!["sh".to_owned(), "-c".to_owned(), "false".to_owned()];
        let other_env = vec![("A".to_owned(), "2".to_owned())];
        let no_parents: Vec<Digest> = Vec::new();
        for changed in [
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
                network: crate::sandbox::Network::None,
                ..key.clone()
            },
        ] {
            assert_ne!(changed.hash(), base);
        }
    }
}
