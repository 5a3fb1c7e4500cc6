"""The generated workloads (deterministic, cached under target/bench) and the base image."""

import random
import shutil
from collections import namedtuple

from harness import DOCKLESS, log, run

# A template context: `files` small text files in a node_modules-like tree, `binaries`
# semi-compressible blobs of `binary_mb` MB each, and 20 source files.
Spec = namedtuple("Spec", "files binaries binary_mb")
FULL = Spec(20000, 10, 20)  # ~315 MB in ~20,000 files
QUICK = Spec(2000, 2, 5)


def scaled(spec, factor):
    """The same kind of context, `factor` times the bytes and the files."""
    return Spec(spec.files * factor, spec.binaries * factor, spec.binary_mb)


WORDS = [f"{w}{i}" for i in range(400) for w in ("function", "return", "const", "module", "export")]


def text(rng, size):
    out = []
    length = 0
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + ";\n"
        out.append(line)
        length += len(line)
    return "".join(out)[:size].encode()


def semi_compressible(rng, size):
    """Half random bytes, half text, in 64 KiB blocks: compresses to roughly 55-60 %."""
    block = 64 * 1024
    parts = []
    filler = text(rng, block)
    for i in range(size // block):
        parts.append(rng.randbytes(block) if i % 2 == 0 else filler)
    return b"".join(parts)


def generate_context(ctx, spec):
    """Writes the context once; a stamp naming the spec lets later runs reuse it."""
    stamp = ctx / ".bench-stamp"
    want = f"v1 {spec.files} {spec.binaries} {spec.binary_mb}"
    if stamp.exists() and stamp.read_text() == want:
        return
    log(f"generating {ctx.name}: {spec.files} files, {spec.binaries} x {spec.binary_mb} MB binaries")
    shutil.rmtree(ctx, ignore_errors=True)
    rng = random.Random(20261128)
    for i in range(spec.files):
        package = f"node_modules/pkg{i // 100:03d}/lib/sub{i % 7}"
        path = ctx / package / f"file{i}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text(rng, rng.randint(500, 10000)))
    for i in range(spec.binaries):
        path = ctx / "bin" / f"blob{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(semi_compressible(rng, spec.binary_mb * 1024 * 1024))
    for i in range(20):
        path = ctx / "src" / f"module{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text(rng, 4000))
    stamp.write_text(want)


def context_stats(ctx):
    """(MB, file count) of a context directory."""
    sizes = [p.stat().st_size for p in ctx.rglob("*") if p.is_file()]
    return sum(sizes) / 1e6, len(sizes)


def write_dockerfile(ctx, base):
    (ctx / "Dockerfile").write_text(
        f"FROM {base}\n"
        "WORKDIR /app\n"
        "COPY node_modules /app/node_modules\n"
        "COPY bin/ /app/bin/\n"
        "COPY src/ /app/src/\n"
        'CMD ["python3", "/app/src/module0.py"]\n'
    )
    (ctx / ".dockerignore").write_text(".bench-stamp\n")


def big_context(work, quick):
    """FROM scratch with one big semi-compressible file: a single big layer (2 GB; 256 MB quick)."""
    big = work / "big-context"
    size_mb = 256 if quick else 2048
    stamp = big / ".stamp"
    if not (stamp.exists() and stamp.read_text() == str(size_mb)):
        log(f"generating a {size_mb} MB file for the big layer (once; cached)")
        shutil.rmtree(big, ignore_errors=True)
        big.mkdir(parents=True)
        rng = random.Random(7)
        with open(big / "big.bin", "wb") as f:
            for _ in range(size_mb):
                f.write(semi_compressible(rng, 1024 * 1024))
        (big / "Dockerfile").write_text("FROM scratch\nCOPY big.bin /big.bin\n")
        (big / ".dockerignore").write_text(".stamp\n")
        stamp.write_text(str(size_mb))
    return big, size_mb


def push_base(work, quick, env, registry):
    """A real Debian root (debootstrap minbase; busybox when quick), packed by dockless FROM
    scratch and pushed. Returns its reference."""
    base_ctx = work / ("base-busybox" if quick else "base-debian")
    rootfs = base_ctx / "rootfs"
    if not (base_ctx / ".done").exists():
        shutil.rmtree(base_ctx, ignore_errors=True)
        base_ctx.mkdir(parents=True)
        if quick:
            (rootfs / "bin").mkdir(parents=True)
            shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
            (rootfs / "etc").mkdir()
            (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        else:
            log("debootstrap --variant=minbase bookworm (once; cached)")
            run(["debootstrap", "--variant=minbase", "bookworm", rootfs], capture=False)
            shutil.rmtree(rootfs / "dev", ignore_errors=True)
            (rootfs / "dev").mkdir()
        (base_ctx / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
        (base_ctx / ".done").write_text("ok")
    ref = f"{registry}/base/debian:bookworm"
    run([DOCKLESS, "push", base_ctx, "--to", ref, "-q"], env=env)
    return ref


def wipe_cache_but_listings(cache):
    """A cold build: nothing in the store but the base's listing, which a machine keeps once it
    has built on that base (its cost is the bench's own line)."""
    listings = cache / "layer-listings"
    kept = cache.parent / "kept-listings"
    shutil.rmtree(kept, ignore_errors=True)
    if listings.exists():
        listings.rename(kept)
    shutil.rmtree(cache, ignore_errors=True)
    if kept.exists():
        cache.mkdir(parents=True)
        kept.rename(listings)
