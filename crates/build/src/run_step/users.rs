//! The tree's user and group databases, as the step's `USER` is looked up in them.

use dockless_oci::image::users::UserDatabase;
use dockless_sandbox::rootfs::{Rootfs, read_regular, resolve};

/// The user and group databases of the tree as it is now (earlier RUN steps may have added
/// users), read with links resolved inside the tree. One that is not a regular file (a FIFO a
/// RUN left there, which [`read_regular`] does not wait on) counts as absent, as does one that
/// cannot be read.
pub(crate) fn users_of(rootfs: &Rootfs) -> UserDatabase {
    let read = |name: &str| {
        resolve(rootfs.path(), name, false)
            .and_then(|path| read_regular(&path))
            .ok()
    };
    UserDatabase {
        passwd: read("etc/passwd"),
        group: read("etc/group"),
    }
}
