//! Capabilities: Docker's default set and nothing more, for root in the sandbox as well.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::io;

/// Docker's (and BuildKit's) default capabilities, by number (linux/capability.h).
const DEFAULT_SET: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// The default set as the two 32-bit words of capset(2).
fn default_words() -> [u32; 2] {
    let mut words = [0u32; 2];
    for cap in DEFAULT_SET {
        words[(cap / 32) as usize] |= 1 << (cap % 32);
    }
    words
}

/// Drops every capability outside the default set from the bounding set (so no exec, setuid
/// binary or file capability can bring one back), and clears the ambient set. Needs
/// CAP_SETPCAP, so it runs before the switch to USER.
pub(super) fn limit_bounding_set() -> Result<(), String> {
    for cap in 0..64u32 {
        // SAFETY: prctl with integer arguments.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if present < 0 {
            // Past the kernel's last capability.
            break;
        }
        // SAFETY: prctl with integer arguments.
        if present == 1
            && !DEFAULT_SET.contains(&cap)
            && unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
        {
            return Err(format!(
                "cannot drop capability {cap} from the bounding set: {}",
                io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: prctl with integer arguments. Fails only on kernels without ambient capabilities
    // (before 4.3), which have none to clear.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Cuts the effective, permitted and inheritable sets to the default set (what the process
/// still has of it: nothing after a switch to a user other than root).
pub(super) fn limit_to_default() -> Result<(), String> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a header and the two data words version 3 reads and writes.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(format!(
            "cannot read capabilities: {}",
            io::Error::last_os_error()
        ));
    }
    for (word, allowed) in data.iter_mut().zip(default_words()) {
        word.permitted &= allowed;
        word.effective &= word.permitted;
        word.inheritable &= word.permitted;
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(format!(
            "cannot limit capabilities: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_dockers() {
        // Docker's default set is 0x00000000a80425fb (as `capsh --decode` shows it).
        let words = default_words();
        assert_eq!(
            (u64::from(words[1]) << 32) | u64::from(words[0]),
            0xa804_25fb
        );
    }
}
