//! The seccomp filter: the system calls Docker's default profile refuses to a container without
//! CAP_SYS_ADMIN, refused here with EPERM (compiled to BPF by `seccompiler`).
//!
//! Docker's profile is an allow list; this is the matching deny list, with the system calls
//! newer than that list that it refuses (memfd_secret, statmount, listmount) and its argument
//! rules for personality and socket(AF_VSOCK). A system call newer still is allowed:
//! capabilities and namespaces still fence it.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Refused outright: kernel keyrings, BPF, perf, userfaultfd, kexec, module loading, handles
/// that bypass paths, every way to mount, namespaces, reboot, swap, accounting, clock and
/// NUMA policy changes, io_uring (which runs system calls the filter does not see), and what
/// Docker keeps for CAP_SYS_PTRACE beyond ptrace itself: taking another process's file
/// descriptors (pidfd_getfd) and advising on its memory (process_madvise).
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_fanotify_init,
    libc::SYS_finit_module,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fsopen,
    libc::SYS_fspick,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_io_uring_setup,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_migrate_pages,
    libc::SYS_mount,
    libc::SYS_mount_setattr,
    libc::SYS_move_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_open_tree,
    libc::SYS_perf_event_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_pivot_root,
    libc::SYS_process_madvise,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_set_mempolicy_home_node,
    libc::SYS_setdomainname,
    libc::SYS_sethostname,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapoff,
    libc::SYS_swapon,
    libc::SYS_syslog,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_userfaultfd,
    libc::SYS_vhangup,
    // Newer than Docker's allow list, so refused by it: secret memory hidden from the kernel's
    // own inspection, and listing the mounts of any mount namespace by ID.
    SYS_MEMFD_SECRET,
    SYS_STATMOUNT,
    SYS_LISTMOUNT,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
];

/// System calls added since 5.x have one number on every architecture (asm-generic).
const SYS_MEMFD_SECRET: libc::c_long = 447;
const SYS_STATMOUNT: libc::c_long = 457;
const SYS_LISTMOUNT: libc::c_long = 458;

/// `personality(2)` values Docker's profile allows (Linux, UNAME26, ADDR_NO_RANDOMIZE, both,
/// and the query 0xffffffff); any other (READ_IMPLIES_EXEC, which makes every readable page
/// executable) is refused.
const PERSONALITIES: [u64; 5] = [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// The address family Docker's profile refuses to `socket(2)`: host-guest sockets, which no
/// network namespace fences (so `--network none` would not hold).
const AF_VSOCK: u64 = 40;

/// clone(2) flags that make namespaces: refused as Docker refuses them.
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for this architecture: {e}"))
}

/// Everything in [`DENIED`], clone with a namespace flag, personality outside Docker's values
/// and AF_VSOCK sockets return EPERM.
fn denials() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&nr| (nr, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_clone, clone_rules);
    rules.insert(libc::SYS_personality, vec![other_personality()?]);
    let vsock = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, AF_VSOCK)
        .and_then(|condition| SeccompRule::new(vec![condition]))
        .map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_socket, vec![vsock]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    let mut program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    refuse_x32(&mut program);
    Ok(program)
}

/// Matches a personality outside [`PERSONALITIES`] (every condition of a rule must hold).
fn other_personality() -> Result<SeccompRule, String> {
    let conditions = PERSONALITIES
        .iter()
        .map(|&value| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

/// x86-64 kernels may also take x32 system calls (the number with bit 30 set), which the filter
/// above, keyed by number, would let through: they are refused ahead of it.
fn refuse_x32(program: &mut BpfProgram) {
    #[cfg(target_arch = "x86_64")]
    {
        use seccompiler::sock_filter;
        const BPF_LD_W_ABS: u16 = 0x20;
        const BPF_JGE_K: u16 = 0x35;
        const BPF_RET_K: u16 = 0x06;
        const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
        let head = [
            sock_filter {
                code: BPF_LD_W_ABS,
                jt: 0,
                jf: 0,
                k: 0, // seccomp_data.nr
            },
            sock_filter {
                code: BPF_JGE_K,
                jt: 0,
                jf: 1,
                k: 0x4000_0000,
            },
            sock_filter {
                code: BPF_RET_K,
                jt: 0,
                jf: 0,
                k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
            },
        ];
        program.splice(0..0, head);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = program;
}

/// clone3 passes its flags in memory the filter cannot read: ENOSYS makes the C library fall
/// back to clone, whose flags it can (Docker does the same).
fn no_clone3() -> Result<BpfProgram, String> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Installs the filters on this (single-threaded) process; no_new_privs must be set already.
pub(super) fn install() -> Result<(), String> {
    for program in [denials()?, no_clone3()?] {
        seccompiler::apply_filter(&program)
            .map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_architecture() {
        let denials = denials().unwrap();
        assert!(denials.len() > DENIED.len(), "a jump per denied call");
        assert!(!no_clone3().unwrap().is_empty());
    }
}
