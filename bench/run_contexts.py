"""The contexts of the RUN parts (deterministic, cached under target/bench): an E2B-template-shaped
Dockerfile (issue #22's shape), `RUN true` ten times, a ~100 MB base (the Debian minbase without
apt's downloads and lists) and a ~1 GB one made by adding files to it as one layer."""

import random
import shutil

from harness import DOCKLESS, log, run

APP_FILES = 200
VENV_PACKAGES, VENV_MODULES = 60, 50  # 3,000 small files, as a venv's site-packages
RUN_TRUE_COUNT = 10

# Every RUN follows `ARG BUST`, so a new value each round makes every RUN a cache miss in every
# tool (an ARG in scope is part of each later RUN's environment). The value is also written to
# pyvenv.cfg, so an image that did not run its RUNs again would keep its old digest.
TEMPLATE_DOCKERFILE = f"""FROM {{base}}
ARG BUST
RUN useradd --create-home --shell /bin/bash --uid 1000 user
RUN set -e; site=/opt/venv/lib/python3.11/site-packages; mkdir -p /opt/venv/bin; \\
    body=$(seq 1 40 | sed 's/.*/VALUE_& = "&"  # a module-level constant/'); \\
    for p in $(seq -w 1 {VENV_PACKAGES}); do mkdir -p "$site/pkg$p/sub"; \\
      for m in $(seq -w 1 {VENV_MODULES}); do printf '%s\\n' "$body" > "$site/pkg$p/sub/mod$m.py"; done; done; \\
    printf 'home = /usr/bin\\nbench-round = %s\\n' "$BUST" > /opt/venv/pyvenv.cfg
RUN echo 'export PATH=/opt/venv/bin:$PATH' >> /etc/bash.bashrc
RUN mkdir -p /home/user/.cache && chown user:user /home/user/.cache
WORKDIR /home/user/app
COPY --chown=user:user app/ /home/user/app/
RUN sha256sum /home/user/app/*.py > /home/user/.app-checksums
USER user
CMD ["/bin/bash"]
"""


def template_context(work, base_ref):
    """Issue #22's shape: useradd, a RUN writing 3,000 small files, two one-line RUNs, WORKDIR,
    COPY --chown of 200 files, one more RUN, USER, CMD."""
    ctx = work / "ctx-run-heavy"
    app = ctx / "app"
    if not (ctx / ".stamp").exists():
        shutil.rmtree(ctx, ignore_errors=True)
        app.mkdir(parents=True)
        rng = random.Random(22)
        for i in range(APP_FILES):
            lines = [f"def handler_{i}_{j}(event):\n    return {rng.randint(0, 10**6)}\n" for j in range(rng.randint(5, 60))]
            (app / f"module{i:03d}.py").write_text("".join(lines))
        (ctx / ".stamp").write_text("v1")
    (ctx / "Dockerfile").write_text(TEMPLATE_DOCKERFILE.format(base=base_ref))
    (ctx / ".dockerignore").write_text(".stamp\n")
    return ctx


def run_true_context(work, name, base_ref):
    """FROM the base, ARG BUST, then `RUN true` ten times."""
    ctx = work / f"ctx-run-true-{name}"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(f"FROM {base_ref}\nARG BUST\n" + "RUN true\n" * RUN_TRUE_COUNT)
    return ctx


def filler_files(root, total_mb):
    """What makes a base big the way python:3.x is: many small library files and a few large
    shared objects. About 30 % of the bytes in files of 1-24 KB (text, compressible), the rest in
    20 MB half-random blobs."""
    rng = random.Random(1024)
    words = [f"{w}{i}" for i in range(300) for w in ("def", "import", "self", "return", "class")]
    corpus = " ".join(rng.choice(words) for _ in range(200_000)).encode()
    small_bytes = total_mb * 1024 * 1024 * 3 // 10
    written, index = 0, 0
    while written < small_bytes:
        size = rng.randint(1024, 24 * 1024)
        start = rng.randrange(0, len(corpus) - size)
        path = root / f"lib/python3/site-packages/pkg{index // 200:03d}/mod{index % 200:03d}.py"
        if index % 200 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(corpus[start : start + size])
        written += size
        index += 1
    blob_mb = 20
    for i in range((total_mb * 7 // 10) // blob_mb):
        path = root / f"lib/native/lib{i:02d}.so"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for block in range(blob_mb * 16):  # 64 KiB blocks, every other one random
                out.write(rng.randbytes(65536) if block % 2 == 0 else corpus[block * 100 : block * 100 + 65536])
    return index


def slim_base(work, env, registry):
    """The ~100 MB base: the bench's Debian minbase root (workload.push_base makes it) without
    what an image does not carry, the downloaded packages and package lists (as Debian's own
    images and the RUN tests' base drop them). Hard links to that root, so nothing is copied;
    built FROM scratch and pushed by dockless as base/debian-slim:bookworm."""
    ctx = work / "ctx-slim-base"
    if not (ctx / ".stamp").exists():
        shutil.rmtree(ctx, ignore_errors=True)
        ctx.mkdir(parents=True)
        run(["cp", "-al", work / "base-debian" / "rootfs", ctx / "rootfs"])
        for directory in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (ctx / "rootfs" / directory).iterdir():
                if entry.is_file() or entry.is_symlink():
                    entry.unlink()
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
        (ctx / ".dockerignore").write_text(".stamp\n")
        (ctx / ".stamp").write_text("v1")
    ref = f"{registry}/base/debian-slim:bookworm"
    run([DOCKLESS, "push", ctx, "--to", ref, "-q"], env=env)
    return ref


def big_base(work, minbase_ref, env, registry, total_mb):
    """The slim base plus ~`total_mb` MB of files in one layer under /opt/big, built and pushed by
    dockless as base/debian-big:bookworm. The files are generated once (a stamp names the size)."""
    ctx = work / "ctx-big-base"
    stamp = ctx / ".stamp"
    if not (stamp.exists() and stamp.read_text() == f"v1 {total_mb}"):
        log(f"generating ~{total_mb} MB of base files (once; cached)")
        shutil.rmtree(ctx, ignore_errors=True)
        (ctx / "files").mkdir(parents=True)
        count = filler_files(ctx / "files", total_mb)
        log(f"  {count} small files and the blobs written")
        stamp.write_text(f"v1 {total_mb}")
    (ctx / "Dockerfile").write_text(f"FROM {minbase_ref}\nCOPY files/ /opt/big/\n")
    (ctx / ".dockerignore").write_text(".stamp\n")
    ref = f"{registry}/base/debian-big:bookworm"
    run([DOCKLESS, "push", ctx, "--to", ref, "-q"], env=env)
    return ref
