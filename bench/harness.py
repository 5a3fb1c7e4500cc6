"""Processes, timing and the throwaway registry, shared by every part of the bench."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKLESS = ROOT / "target" / "release" / "dockless"
WORK = ROOT / "target" / "bench"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(args, env=None, stdin=None, capture=True, cwd=None):
    result = subprocess.run(
        [str(a) for a in args],
        env=env,
        input=stdin,
        cwd=cwd,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def settle():
    """Writes back what earlier steps left dirty, so no step pays for another's writeback."""
    os.sync()
    time.sleep(0.5)


def timed(args, **kwargs):
    settle()
    start = time.perf_counter()
    out = run(args, **kwargs)
    return time.perf_counter() - start, out


def timed_shell(script, env=None):
    settle()
    start = time.perf_counter()
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measured(args, env=None):
    """Wall seconds, peak RSS in MB and stdout of one command.

    GNU time reports the peak of the one process it waits for. Python's RUSAGE_CHILDREN would
    not do: it is the maximum over every child this process has ever waited for."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-", suffix=".txt") as report:
        seconds, out = timed(["/usr/bin/time", "-v", "-o", report.name, *args], env=env)
        for line in report.read().splitlines():
            if "Maximum resident set size" in line:
                return seconds, int(line.split(":")[1]) / 1024, out
    raise SystemExit(f"bench: /usr/bin/time printed no maximum resident set size for {args[0]}")


def ensure_tools():
    """Installs the peers and tools the bench needs when missing (scripts/bench-setup.sh)."""
    run(["bash", ROOT / "scripts" / "bench-setup.sh"], capture=False)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A CNCF distribution registry on a free loopback port, its storage emptied on start and
    on stop (the bench's registries hold gigabytes)."""

    def __init__(self, data):
        self.data = data
        self.process = None
        self.address = None

    def __enter__(self):
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        port = free_port()
        config = self.data / "config.yml"
        config.write_text(
            f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {self.data}/storage\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    self.address = f"127.0.0.1:{port}"
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise SystemExit("bench: the registry did not start")

    def __exit__(self, *_):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.data, ignore_errors=True)
