"""The RUN parts' peers with state of their own: a Docker daemon (Debian's docker.io: dockerd
20.10, BuildKit, overlay2) started for the bench and stopped after, and a buildah store on the
overlay driver. Both live in temporary directories and leave no mount and no file behind."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness import log, run

# Debian's docker.io CLI, not whichever `docker` comes first on PATH: a newer client without
# buildx refuses DOCKER_BUILDKIT=1, and the point is Docker 20.10's own builder.
DOCKER_CLI = "/usr/bin/docker"


def unmount_under(directory):
    """Lazily unmounts whatever is still mounted below `directory`, deepest first (a daemon
    killed mid-build can leave overlay and shm mounts behind)."""
    prefix = str(Path(directory).resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)


class DockerDaemon:
    """dockerd with its own data-root, exec-root, socket and pid file under a temporary directory
    (short, under /tmp: containerd's socket paths must fit in 108 bytes). No bridge and no
    iptables: builds use `--network host`, as dockless's RUN does by default. The registry is
    named insecure, so it is reached over plain HTTP."""

    def __init__(self, registry_address):
        self.registry_address = registry_address
        self.dir = None
        self.process = None
        self.env = None

    def __enter__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-dockerd-", dir="/tmp"))
        socket = self.dir / "docker.sock"
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{socket}",
            "DOCKER_BUILDKIT": "1",
            "DOCKER_CONFIG": str(self.dir / "client-config"),
        }
        self.log_file = open(self.dir / "dockerd.log", "w")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--data-root", self.dir / "root",
                "--exec-root", self.dir / "exec",
                "--pidfile", self.dir / "dockerd.pid",
                "--host", f"unix://{socket}",
                "--storage-driver", "overlay2",
                "--insecure-registry", self.registry_address,
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
            ],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            probe = subprocess.run([DOCKER_CLI, "version"], env=self.env, capture_output=True)
            if probe.returncode == 0:
                log(f"dockerd started (data in {self.dir})")
                return self
            time.sleep(0.3)
        tail = (self.dir / "dockerd.log").read_text()[-2000:]
        self.__exit__(None, None, None)
        raise SystemExit(f"bench: dockerd did not start:\n{tail}")

    def docker(self, *args):
        return [DOCKER_CLI, *args]

    def __exit__(self, *_):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        # dockerd stops the containerd it started; give it a moment, then take what is left.
        time.sleep(1)
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


class BuildahStore:
    """A buildah root on the overlay driver, its OCI runtime runc (crun refuses this machine's
    hybrid cgroup hierarchy). `command(...)` gives the buildah argv with the store's options."""

    def __init__(self, work):
        self.root = work / "buildah-overlay-root"
        self.runroot = work / "buildah-overlay-runroot"

    def __enter__(self):
        self.__exit__(None, None, None)
        return self

    def command(self, *args):
        return ["buildah", "--root", self.root, "--runroot", self.runroot, "--storage-driver", "overlay", *args]

    def __exit__(self, *_):
        if self.root.exists():
            subprocess.run([str(a) for a in self.command("rmi", "-a", "-f")], capture_output=True)
        for directory in (self.root, self.runroot):
            if directory.exists():
                unmount_under(directory)
                shutil.rmtree(directory, ignore_errors=True)


def docker_pull(daemon, ref):
    run(daemon.docker("pull", "-q", ref), env=daemon.env)


def buildah_pull(store, ref):
    run(store.command("pull", "-q", "--tls-verify=false", ref))
