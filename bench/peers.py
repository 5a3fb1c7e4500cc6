"""The contenders of the main run: dockless's own steps and its peers, each timed alone."""

import json
import shutil
import subprocess
from pathlib import Path

from harness import DOCKLESS, measured, run, timed, timed_shell
from workload import big_context


def base_layout(work, base_ref):
    """The base as an OCI layout on disk, where skopeo + umoci start from."""
    layout = work / "base-layout"
    shutil.rmtree(layout, ignore_errors=True)
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{base_ref}", f"oci:{layout}:base"])
    return layout


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


def skopeo_umoci(work, ctx, base, registry):
    layout = work / "umoci-layout"
    shutil.rmtree(layout, ignore_errors=True)
    script = f"""
skopeo copy -q oci:{base}:base oci:{layout}:base
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
    """Peak RSS of dockless building and pushing one big layer (2 GB; 256 MB quick)."""
    big, size_mb = big_context(work, quick)
    _, rss, _ = measured([DOCKLESS, "push", big, "--to", f"{registry}/bench/big:1", "-q"], env)
    return size_mb, rss
