//! The tree's user and group databases, as the step's `USER` is looked up in them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use dockless_oci::image::users::UserDatabase;
use dockless_sandbox::rootfs::Rootfs;

/// The databases of a larger file are not read: no real one comes near it, and a RUN could
/// have left a file of any size there.
const LARGEST_DATABASE: u64 = 64 << 20;

/// The user and group databases of the tree as it is now (earlier RUN steps may have added
/// users), read with links resolved inside the tree. One that is not a regular file counts as
/// absent, as does one that cannot be read.
pub(crate) fn users_of(rootfs: &Rootfs) -> UserDatabase {
    let read = |name: &str| {
        dockless_sandbox::rootfs::resolve(rootfs.path(), name, false)
            .and_then(|path| read_regular(&path))
            .ok()
    };
    UserDatabase {
        passwd: read("etc/passwd"),
        group: read("etc/group"),
    }
}

/// The text of `path` when it is a regular file. An earlier RUN may have left a FIFO in its
/// place, which a plain read would wait on for ever: it is opened without blocking and refused
/// once its kind is known.
fn read_regular(path: &Path) -> io::Result<String> {
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() > LARGEST_DATABASE {
        return Err(io::Error::other(
            "not a regular file of a user database's size",
        ));
    }
    let mut text = String::new();
    file.take(LARGEST_DATABASE).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_fifo_in_place_of_a_database_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("passwd");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
        let (sent, answer) = mpsc::channel();
        std::thread::spawn(move || sent.send(read_regular(&fifo).is_err()));
        let refused = answer
            .recv_timeout(Duration::from_secs(10))
            .expect("reading a FIFO as the user database blocked");
        assert!(refused, "a FIFO was read as the user database");
    }

    #[test]
    fn a_regular_database_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(
            read_regular(&passwd).unwrap(),
            "root:x:0:0::/root:/bin/sh\n"
        );
    }
}
