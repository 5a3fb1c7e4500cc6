//! The seccomp filter: Docker's default profile as an allow list (compiled to BPF by
//! `seccompiler`). A system call outside it gets EPERM, the profile's `defaultErrnoRet`; clone3
//! gets ENOSYS, as the profile answers it, so that the C library falls back to clone, whose
//! flags the filter can read.
//!
//! The list itself is in [`profile`]; the entries with argument conditions are here: clone
//! without namespace flags, personality with the profile's values, socket outside AF_ALG and
//! AF_VSOCK. Everything the sandbox does after installing the filter (execve) is in the list.
//!
//! Steps fail with text: in the helper, an error only becomes the status file's message.

mod profile;

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// `personality(2)` values Docker's profile allows (Linux, UNAME26, ADDR_NO_RANDOMIZE, both,
/// and the query 0xffffffff); any other (READ_IMPLIES_EXEC, which makes every readable page
/// executable) is refused.
const PERSONALITIES: [u64; 5] = [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// The address families Docker's profile refuses to `socket(2)`: the kernel's crypto API
/// (AF_ALG, 38) and host-guest sockets (AF_VSOCK, 40), which no network namespace fences (so
/// `--network none` would not hold). AF_NFC (39) between them is allowed.
const AF_ALG: u64 = 38;
const AF_NFC: u64 = 39;
const AF_VSOCK: u64 = 40;

/// The clone(2) flags that make namespaces (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID,
/// NEWNET): the profile's mask 2114060288, which must be clear for clone to be allowed.
const NAMESPACE_FLAGS: u64 = 0x7e02_0000;

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for this architecture: {e}"))
}

fn rule(
    conditions: Vec<Result<SeccompCondition, seccompiler::BackendError>>,
) -> Result<SeccompRule, String> {
    let conditions = conditions
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    SeccompRule::new(conditions).map_err(|e| e.to_string())
}

fn first_arg(len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, String> {
    rule(vec![SeccompCondition::new(0, len, op, value)])
}

/// Allows [`profile::ALLOWED`], clone3 (answered by [`no_clone3`]), and clone, personality and
/// socket under the profile's conditions; everything else returns EPERM. x32 system calls (on
/// x86-64, the number with bit 30 set) match no allowed number, so they are refused too.
fn allow_list() -> Result<BpfProgram, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = profile::ALLOWED
        .iter()
        .chain([&libc::SYS_clone3])
        .map(|&nr| (nr, Vec::new()))
        .collect();
    let clone = first_arg(
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
        0,
    )?;
    rules.insert(libc::SYS_clone, vec![clone]);
    let personalities = PERSONALITIES
        .iter()
        .map(|&value| first_arg(SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_personality, personalities);
    let families = vec![
        first_arg(SeccompCmpArgLen::Dword, SeccompCmpOp::Lt, AF_ALG)?,
        first_arg(SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, AF_NFC)?,
        first_arg(SeccompCmpArgLen::Dword, SeccompCmpOp::Gt, AF_VSOCK)?,
    ];
    rules.insert(libc::SYS_socket, families);
    compile(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )
}

/// clone3 passes its flags in memory the filter cannot read: ENOSYS makes the C library fall
/// back to clone, whose flags it can (Docker does the same).
fn no_clone3() -> Result<BpfProgram, String> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    compile(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, String> {
    let filter =
        SeccompFilter::new(rules, mismatch, matched, arch()?).map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Installs the filters on this (single-threaded) process; no_new_privs must be set already.
pub(super) fn install() -> Result<(), String> {
    for program in [allow_list()?, no_clone3()?] {
        seccompiler::apply_filter(&program)
            .map_err(|e| format!("cannot install the seccomp filter: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lsm_list_modules: Docker's profile grants it only with CAP_SYS_ADMIN, which the sandbox
    /// never keeps; the deny list let it through.
    const SYS_LSM_LIST_MODULES: libc::c_long = 461;

    /// What `call` returns in a child process under the filters: 0, or the errno it failed with.
    fn answer_under_filters(call: impl Fn() -> libc::c_long) -> i32 {
        let programs = [allow_list().unwrap(), no_clone3().unwrap()];
        // SAFETY: the child only installs the prepared filters, makes system calls and _exits
        // (nothing that allocates or takes a lock another thread may hold).
        match unsafe { libc::fork() } {
            0 => {
                for program in &programs {
                    if seccompiler::apply_filter(program).is_err() {
                        unsafe { libc::_exit(255) };
                    }
                }
                let code = if call() < 0 {
                    std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(254)
                } else {
                    0
                };
                unsafe { libc::_exit(code) }
            }
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            child => {
                let mut status = 0;
                // SAFETY: waiting for the child just forked.
                assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
                assert!(libc::WIFEXITED(status), "child status {status}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    #[test]
    fn the_filters_compile_for_this_architecture() {
        assert!(
            allow_list().unwrap().len() > profile::ALLOWED.len(),
            "a jump per allowed call"
        );
        assert!(!no_clone3().unwrap().is_empty());
    }

    #[test]
    fn a_call_outside_dockers_list_is_refused_with_eperm() {
        // SAFETY: null pointers with a zero size: the kernel answers EFAULT/EINVAL if it runs it.
        let lsm = || unsafe { libc::syscall(SYS_LSM_LIST_MODULES, 0, 0, 0) };
        assert_eq!(answer_under_filters(lsm), libc::EPERM);
        // SAFETY: socket and getpid with integer arguments.
        let af_alg = || unsafe { libc::socket(AF_ALG as i32, libc::SOCK_SEQPACKET, 0) }.into();
        assert_eq!(answer_under_filters(af_alg), libc::EPERM);
        let getpid = || unsafe { libc::getpid() }.into();
        assert_eq!(answer_under_filters(getpid), 0);
    }

    #[test]
    fn clone3_is_enosys_and_clone_with_a_namespace_eperm() {
        // SAFETY: clone3 with a null argument never creates a process.
        let clone3 = || unsafe { libc::syscall(libc::SYS_clone3, 0, 0) };
        assert_eq!(answer_under_filters(clone3), libc::ENOSYS);
        // SAFETY: the flags are refused before the kernel sees them; if not, the child exits.
        let clone_newuser = || {
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    libc::CLONE_NEWUSER | libc::SIGCHLD,
                    0,
                    0,
                    0,
                    0,
                )
            };
            if pid == 0 {
                unsafe { libc::_exit(0) };
            }
            pid
        };
        assert_eq!(answer_under_filters(clone_newuser), libc::EPERM);
    }
}
