#!/usr/bin/env python3
"""dockless benchmark: build + push a generated template context against its peers, in one run.

Everything talks to a throwaway CNCF registry on loopback. Times are wall-clock seconds on this
machine; the claims are the ratios between tools measured in the same run, never absolute times.

    python3 bench/run.py            # full workload (~300 MB, ~20,000 files), about 10 minutes
    python3 bench/run.py --quick    # small workload, to check the harness itself
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKLESS = ROOT / "target" / "release" / "dockless"
TARGETS = {
    "cold_vs_skopeo_umoci": 0.35,
    "cold_vs_pigz_floor": 0.6,
    "noop_seconds": 0.3,
    "one_file_seconds": 0.5,
    "rss_mb": 100,
    "cold_vs_skopeo_copy": 1.0,
}


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


def ensure_tools():
    wanted = {
        "docker-registry": "docker-registry",
        "skopeo": "skopeo",
        "umoci": "umoci",
        "buildah": "buildah",
        "pigz": "pigz",
        "debootstrap": "debootstrap",
    }
    missing = [pkg for cmd, pkg in wanted.items() if shutil.which(cmd) is None]
    if not Path("/usr/bin/time").exists():
        missing.append("time")
    if missing:
        log(f"installing {' '.join(missing)}")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        run(sudo + ["apt-get", "update", "-qq"])
        run(sudo + ["apt-get", "install", "-y", "-qq", *missing], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


# ---------------------------------------------------------------- workload (deterministic)

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


def generate_context(ctx, quick):
    files, binaries, binary_mb = (2000, 2, 5) if quick else (20000, 10, 20)
    stamp = ctx / ".bench-stamp"
    want = f"v1 {files} {binaries} {binary_mb}"
    if stamp.exists() and stamp.read_text() == want:
        return
    shutil.rmtree(ctx, ignore_errors=True)
    rng = random.Random(20261128)
    for i in range(files):
        package = f"node_modules/pkg{i // 100:03d}/lib/sub{i % 7}"
        path = ctx / package / f"file{i}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text(rng, rng.randint(500, 10000)))
    for i in range(binaries):
        path = ctx / "bin" / f"blob{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(semi_compressible(rng, binary_mb * 1024 * 1024))
    for i in range(20):
        path = ctx / "src" / f"module{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text(rng, 4000))
    stamp.write_text(want)


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


# ---------------------------------------------------------------- registry and base

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work):
    data = work / "registry"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    port = free_port()
    config = data / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {data}/storage\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("bench: the registry did not start")


def make_base(work, quick, env, registry):
    """A real Debian root (debootstrap minbase), packed by dockless FROM scratch, pushed."""
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
    layout = work / "base-layout"
    shutil.rmtree(layout, ignore_errors=True)
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:base"])
    return ref, layout


# ---------------------------------------------------------------- the contenders

def dockless_push(ctx, ref, env):
    seconds, out = timed([DOCKLESS, "push", ctx, "--to", ref, "--json"], env=env)
    return seconds, json.loads(out)


def base_listing(work, base_ref, env):
    """The one-time cost per base per machine: an empty cache, then a build whose WORKDIR makes
    dockless fetch and list the base's layers."""
    probe = work / "listing-probe"
    shutil.rmtree(probe, ignore_errors=True)
    probe.mkdir()
    (probe / "Dockerfile").write_text(f"FROM {base_ref}\nWORKDIR /listing-probe\n")
    cache = work / "listing-cache"
    shutil.rmtree(cache, ignore_errors=True)
    seconds, _ = timed([DOCKLESS, "build", probe, "-q"], env={**env, "DOCKLESS_CACHE_DIR": str(cache)})
    shutil.rmtree(cache, ignore_errors=True)
    return seconds


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


def skopeo_umoci(work, ctx, base_layout, registry):
    layout = work / "umoci-layout"
    shutil.rmtree(layout, ignore_errors=True)
    script = f"""
skopeo copy -q oci:{base_layout}:base oci:{layout}:base
umoci config --image {layout}:base --tag bench --config.workingdir /app
umoci insert --rootless --image {layout}:bench {ctx}/node_modules /app/node_modules
umoci insert --rootless --image {layout}:bench {ctx}/bin /app/bin
umoci insert --rootless --image {layout}:bench {ctx}/src /app/src
skopeo copy -q --dest-tls-verify=false oci:{layout}:bench docker://{registry}/bench/umoci:1
"""
    return timed_shell(script)


def buildah(work, ctx, registry):
    root = work / "buildah-root"
    runroot = work / "buildah-runroot"
    for d in (root, runroot):
        shutil.rmtree(d, ignore_errors=True)
    conf = Path("/etc/containers/registries.conf.d")
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "dockless-bench.conf").write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    common = f"buildah --root {root} --runroot {runroot} --storage-driver vfs"
    script = f"""
{common} bud -q --isolation chroot -t bench {ctx} >/dev/null
{common} push -q --tls-verify=false bench docker://{registry}/bench/buildah:1
"""
    try:
        return timed_shell(script)
    finally:
        subprocess.run(["bash", "-c", f"{common} rm -a >/dev/null 2>&1; {common} rmi -a -f >/dev/null 2>&1"])
        shutil.rmtree(root, ignore_errors=True)


def skopeo_copy_of_layout(work, ctx, env, registry):
    layout = work / "dockless-layout"
    shutil.rmtree(layout, ignore_errors=True)
    run([DOCKLESS, "build", ctx, "--output", layout, "--tag", "t", "-q"], env=env)
    seconds, _ = timed(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{registry}/bench/skopeo:1"])
    return seconds


def pigz_floor(ctx):
    return timed_shell(f"tar -C {ctx} -cf - . | pigz -p2 -1 | sha256sum")


def peak_rss_mb(work, env, registry, quick):
    big = work / "big-context"
    size_mb = 256 if quick else 2048
    stamp = big / ".stamp"
    if not (stamp.exists() and stamp.read_text() == str(size_mb)):
        shutil.rmtree(big, ignore_errors=True)
        big.mkdir(parents=True)
        rng = random.Random(7)
        with open(big / "big.bin", "wb") as f:
            for _ in range(size_mb):
                f.write(semi_compressible(rng, 1024 * 1024))
        (big / "Dockerfile").write_text("FROM scratch\nCOPY big.bin /big.bin\n")
        (big / ".dockerignore").write_text(".stamp\n")
        stamp.write_text(str(size_mb))
    result = subprocess.run(
        ["/usr/bin/time", "-v", str(DOCKLESS), "push", str(big), "--to", f"{registry}/bench/big:1", "-q"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: big push failed: {result.stderr[-2000:]}")
    for line in result.stderr.splitlines():
        if "Maximum resident set size" in line:
            return size_mb, int(line.split(":")[1]) / 1024
    raise SystemExit("bench: /usr/bin/time printed no maximum resident set size")


# ---------------------------------------------------------------- report

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small workload, to check the harness")
    parser.add_argument("--no-buildah", action="store_true", help="skip the buildah peer")
    parser.add_argument("--rounds", type=int, default=3, help="rounds to take medians over (default 3)")
    args = parser.parse_args()
    if not DOCKLESS.exists():
        raise SystemExit(f"bench: build {DOCKLESS} first (just build-release)")
    ensure_tools()
    work = ROOT / "target" / "bench"
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "dockless-cache"
    env = {**os.environ, "DOCKLESS_CACHE_DIR": str(cache)}
    env.pop("RUST_LOG", None)

    ctx = work / ("ctx-quick" if args.quick else "ctx")
    log("generating the workload (deterministic; cached)")
    generate_context(ctx, args.quick)
    context_mb = sum(p.stat().st_size for p in ctx.rglob("*") if p.is_file()) / 1e6
    file_count = sum(1 for p in ctx.rglob("*") if p.is_file())

    # Rounds, each against a fresh registry (so no blob, and no peer's memory of one, carries
    # over); every step once per round, interleaved, and the median of each is reported.
    samples = {}
    for round_number in range(1, args.rounds + 1):
        last = round_number == args.rounds
        log(f"round {round_number} of {args.rounds}")
        registry_process, registry = start_registry(work)
        try:
            base_ref, base_layout = make_base(work, args.quick, env, registry)
            write_dockerfile(ctx, base_ref)
            took = {}
            log("pigz floor")
            took["pigz_floor"] = pigz_floor(ctx)
            log("base listing, once per base per machine")
            took["base_listing"] = base_listing(work, base_ref, env)
            log("dockless cold")
            wipe_cache_but_listings(cache)
            took["dockless_cold"], cold = dockless_push(ctx, f"{registry}/bench/dockless:1", env)
            log("dockless no-op")
            took["dockless_noop"], noop = dockless_push(ctx, f"{registry}/bench/dockless:1", env)
            log("dockless one file changed")
            changed = ctx / "src" / "module0.py"
            original = changed.read_bytes()
            changed.write_bytes(original + b"# changed\n")
            try:
                took["dockless_one_file"], one = dockless_push(ctx, f"{registry}/bench/dockless:1", env)
            finally:
                changed.write_bytes(original)
            log("skopeo copy of the same image as an OCI layout")
            took["skopeo_copy"] = skopeo_copy_of_layout(work, ctx, env, registry)
            log("skopeo + umoci")
            took["skopeo_umoci"] = skopeo_umoci(work, ctx, base_layout, registry)
            if last and not args.no_buildah:
                log("buildah bud + push (vfs, chroot)")
                took["buildah"] = buildah(work, ctx, registry)
            if last:
                log("peak RSS of a big-layer push")
                big_mb, rss = peak_rss_mb(work, env, registry, args.quick)
        finally:
            registry_process.kill()
            registry_process.wait()
        for step, seconds in took.items():
            samples.setdefault(step, []).append(seconds)
        log("  " + ", ".join(f"{k} {v:.2f}" for k, v in took.items()))
    results = {step: statistics.median(values) for step, values in samples.items()}

    ratios = {
        "cold_vs_skopeo_umoci": results["dockless_cold"] / results["skopeo_umoci"],
        "cold_vs_pigz_floor": results["dockless_cold"] / results["pigz_floor"],
        "cold_vs_skopeo_copy": results["dockless_cold"] / results["skopeo_copy"],
    }
    if "buildah" in results:
        ratios["cold_vs_buildah"] = results["dockless_cold"] / results["buildah"]
    checks = {
        "cold_vs_skopeo_umoci": ratios["cold_vs_skopeo_umoci"] <= TARGETS["cold_vs_skopeo_umoci"],
        "cold_vs_pigz_floor": ratios["cold_vs_pigz_floor"] <= TARGETS["cold_vs_pigz_floor"],
        "cold_vs_skopeo_copy": ratios["cold_vs_skopeo_copy"] <= TARGETS["cold_vs_skopeo_copy"],
        "noop_seconds": results["dockless_noop"] <= TARGETS["noop_seconds"] and noop["uploaded_blobs"] == 0,
        "one_file_seconds": results["dockless_one_file"] <= TARGETS["one_file_seconds"],
        "rss_mb": rss <= TARGETS["rss_mb"],
    }
    report = {
        "workload": {"quick": args.quick, "context_mb": round(context_mb, 1), "files": file_count, "big_layer_mb": big_mb},
        "seconds": {k: round(v, 3) for k, v in results.items()},
        "rounds": args.rounds,
        "samples": {k: [round(v, 3) for v in values] for k, values in samples.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "dockless": {
            "cold_uploaded_blobs": cold["uploaded_blobs"],
            "noop_uploaded_blobs": noop["uploaded_blobs"],
            "one_file_uploaded_blobs": one["uploaded_blobs"],
            "big_push_peak_rss_mb": round(rss, 1),
        },
        "targets_met": checks,
        "machine": {"cpus": os.cpu_count()},
    }
    (work / "results.json").write_text(json.dumps(report, indent=2) + "\n")

    rows = [
        ("dockless cold build+push", results["dockless_cold"], ""),
        ("dockless no-op build+push", results["dockless_noop"], f"{noop['uploaded_blobs']} blobs uploaded"),
        ("dockless one file changed", results["dockless_one_file"], f"{one['uploaded_blobs']} blobs uploaded"),
        ("skopeo copy (same image)", results["skopeo_copy"], f"dockless cold = {ratios['cold_vs_skopeo_copy']:.2f}x"),
        ("skopeo + umoci", results["skopeo_umoci"], f"dockless cold = {ratios['cold_vs_skopeo_umoci']:.2f}x"),
    ]
    if "buildah" in results:
        rows.append(("buildah bud + push", results["buildah"], f"dockless cold = {ratios['cold_vs_buildah']:.2f}x"))
    rows.append(("tar | pigz -p2 -1 floor", results["pigz_floor"], f"dockless cold = {ratios['cold_vs_pigz_floor']:.2f}x"))
    rows.append(("base listing (once per base)", results["base_listing"], "fetch + list the base's layers"))
    print(f"workload: {context_mb:.0f} MB in {file_count} files on a {'busybox' if args.quick else 'Debian bookworm'} base; {os.cpu_count()} cores; medians of {args.rounds} rounds")
    print(f"| {'step':<28} | {'seconds':>8} | note")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 30}")
    for name, seconds, note in rows:
        print(f"| {name:<28} | {seconds:8.2f} | {note}")
    print(f"| {'peak RSS, ' + str(big_mb) + ' MB layer push':<28} | {rss:6.1f} MB |")
    print()
    for name, ok in checks.items():
        print(f"  {'met    ' if ok else 'NOT met'}  {name} (target {TARGETS[name]})")
    print(f"\nJSON: {work / 'results.json'}")


if __name__ == "__main__":
    main()
