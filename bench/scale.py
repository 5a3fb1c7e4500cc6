"""How cost grows (`--scale`): the bench's context at 1x, 3x and 10x its bytes and files, each
built cold and no-op, with wall time and peak RSS; and one big layer pushed by dockless against
a plain `curl -T` of the same compressed bytes to the same registry."""

import json
import shutil
import statistics
from pathlib import Path

from harness import DOCKLESS, Registry, log, measured, run, timed
from workload import FULL, Spec, big_context, context_stats, generate_context, push_base, scaled
from workload import wipe_cache_but_listings, write_dockerfile

FACTORS = (1, 3, 10)
QUICK_UNIT = Spec(400, 1, 4)  # ~6 MB: the harness checked in seconds
TARGETS = {
    "cold_growth": 1.05,  # cold at N x costs at most 1.05 * N times cold at 1x
    "rss_growth": 1.5,  # peak RSS at the largest scale at most 1.5 times that at 1x
    "big_push_vs_curl": 0.9,  # dockless pushes the big layer at least 0.9 times curl's MB/s
}
# What a context of N x needs on disk beyond itself while it is measured: the store's
# compressed layers and the registry's copy of them (each ~0.6 of the context), plus room.
STORE_AND_REGISTRY_SHARE = 1.4
RESERVE_BYTES = 2e9


def context_dir(work, quick, factor):
    """1x of the full workload is the main run's own context, so both share one copy."""
    if quick:
        return work / f"ctx-scale-quick-x{factor}"
    return work / ("ctx" if factor == 1 else f"ctx-x{factor}")


def fits(work, ctx, spec):
    """Whether the disk holds this scale: its context (unless already generated), the store and
    the registry."""
    unit = spec.files * 5250 + spec.binaries * spec.binary_mb * 1024 * 1024  # mean file 5,250 B
    generated = (ctx / ".bench-stamp").exists()
    need = unit * STORE_AND_REGISTRY_SHARE + (0 if generated else unit) + RESERVE_BYTES
    return shutil.disk_usage(work).free >= need, need


def cold_and_noop(work, ctx, quick, env):
    """One scale: a fresh registry, the base pushed, an empty store but the base's listing (as
    the main run's cold build), then cold and no-op build+push, each timed with its peak RSS."""
    cache = work / "scale-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**env, "DOCKLESS_CACHE_DIR": str(cache)}
    try:
        with Registry(work / "registry-scale") as registry:
            base_ref = push_base(work, quick, env, registry.address)
            write_dockerfile(ctx, base_ref)
            wipe_cache_but_listings(cache)
            command = [DOCKLESS, "push", ctx, "--to", f"{registry.address}/bench/scale:1", "--json"]
            cold_s, cold_rss, _ = measured(command, env)
            noop_s, noop_rss, noop = measured(command, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if json.loads(noop)["uploadedBlobs"] != 0:
        raise SystemExit(f"bench: the no-op push of {ctx.name} uploaded blobs")
    return {"cold_s": cold_s, "cold_rss_mb": cold_rss, "noop_s": noop_s, "noop_rss_mb": noop_rss}


def built_big_layer(work, quick, env):
    """The big context built once into the store; returns the path of its one compressed layer
    blob and that layer's descriptor."""
    big, size_mb = big_context(work, quick)
    image = json.loads(run([DOCKLESS, "build", big, "--json", "-q"], env=env))
    layer = image["layers"][0]
    algorithm, hex_digest = layer["digest"].split(":")
    store = Path(env["DOCKLESS_CACHE_DIR"])
    return big, size_mb, store / "blobs" / algorithm / hex_digest, layer


def curl_monolithic_upload(registry, repository, blob, digest):
    """The plain way to send one blob: POST for an upload session, then one PUT of the whole
    file with its digest (curl -T). Only the PUT is timed."""
    headers = run(["curl", "-fsS", "-o", "/dev/null", "-D", "-", "-X", "POST", f"http://{registry}/v2/{repository}/blobs/uploads/"])
    location = next(line.split(":", 1)[1].strip() for line in headers.splitlines() if line.lower().startswith("location:"))
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    seconds, _ = timed(["curl", "-fsS", "-o", "/dev/null", "-H", "Content-Type: application/octet-stream", "-T", blob, url])
    return seconds


def big_layer_round(work, quick, env):
    """dockless pushing an already-built image whose one layer is already compressed, to an
    empty registry, against curl uploading the same blob file to another empty registry."""
    big, size_mb, blob, layer = built_big_layer(work, quick, env)
    with Registry(work / "registry-big") as registry:
        dockless_s, rss, out = measured([DOCKLESS, "push", big, "--to", f"{registry.address}/bench/big:1", "--json"], env)
    pushed = json.loads(out)
    if pushed["uploadedBytes"] < layer["size"]:
        raise SystemExit(f"bench: dockless uploaded {pushed['uploadedBytes']} bytes, less than the layer's {layer['size']}")
    with Registry(work / "registry-big") as registry:
        curl_s = curl_monolithic_upload(registry.address, "bench/big", blob, layer["digest"])
    return {"size_mb": size_mb, "blob_mb": layer["size"] / 1e6, "dockless_s": dockless_s, "dockless_rss_mb": rss, "curl_s": curl_s}


def median_by_key(samples):
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def run_scale(work, quick, rounds, env):
    unit = QUICK_UNIT if quick else FULL
    log(f"scale run: free disk {shutil.disk_usage(work).free / 1e9:.1f} GB")
    scales = []
    for factor in FACTORS:
        spec = scaled(unit, factor)
        ctx = context_dir(work, quick, factor)
        ok, need = fits(work, ctx, spec)
        if not ok:
            log(f"{factor}x needs ~{need / 1e9:.1f} GB free and the disk has less: the largest scale is the one before")
            break
        generate_context(ctx, spec)
        scales.append((factor, ctx))
    samples = {factor: [] for factor, _ in scales}
    big_samples = []
    for round_number in range(1, rounds + 1):
        for factor, ctx in scales:
            log(f"round {round_number} of {rounds}: {factor}x cold and no-op")
            samples[factor].append(cold_and_noop(work, ctx, quick, env))
        log(f"round {round_number} of {rounds}: the big layer, dockless push and curl -T")
        big_samples.append(big_layer_round(work, quick, env))
    rows = []
    for factor, ctx in scales:
        mb, files = context_stats(ctx)
        rows.append({"factor": factor, "context_mb": round(mb, 1), "files": files, **median_by_key(samples[factor])})
    return rows, median_by_key(big_samples), {"scales": samples, "big_layer": big_samples}


def peak_rss(row):
    return max(row["cold_rss_mb"], row["noop_rss_mb"])


def checks(rows, big):
    first, last = rows[0], rows[-1]
    growth = last["factor"] / first["factor"]
    ratios = {
        "cold_growth": last["cold_s"] / first["cold_s"] / growth,
        "rss_growth": peak_rss(last) / peak_rss(first),
        "big_push_vs_curl": big["curl_s"] / big["dockless_s"],
    }
    met = {
        "cold_growth": ratios["cold_growth"] <= TARGETS["cold_growth"],
        "rss_growth": ratios["rss_growth"] <= TARGETS["rss_growth"],
        "big_push_vs_curl": ratios["big_push_vs_curl"] >= TARGETS["big_push_vs_curl"],
    }
    return ratios, met


def print_report(rows, big, ratios, met, rounds):
    print(f"scale run; medians of {rounds} round(s); peak RSS = the larger of cold and no-op")
    print("| scale | MB | files | cold s | cold s per 1x | no-op s | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['factor']}x | {row['context_mb']:.0f} | {row['files']} | {row['cold_s']:.2f} "
            f"| {row['cold_s'] / row['factor']:.2f} | {row['noop_s']:.2f} | {peak_rss(row):.1f} |"
        )
    print()
    blob = big["blob_mb"]
    print(f"one {big['size_mb']} MB file, FROM scratch: a {blob:.0f} MB compressed layer, uploaded to an empty registry")
    print("| upload | seconds | MB/s | note |")
    print("|---|---:|---:|---|")
    print(f"| dockless push (image already built) | {big['dockless_s']:.2f} | {blob / big['dockless_s']:.0f} | peak RSS {big['dockless_rss_mb']:.1f} MB |")
    print(f"| curl -T, one monolithic PUT | {big['curl_s']:.2f} | {blob / big['curl_s']:.0f} | dockless = {ratios['big_push_vs_curl']:.2f}x curl's speed |")
    print()
    largest = rows[-1]["factor"]
    wording = {
        "cold_growth": f"cold at {largest}x <= {TARGETS['cold_growth']} * {largest} * cold at 1x (measured {ratios['cold_growth']:.2f})",
        "rss_growth": f"peak RSS at {largest}x <= {TARGETS['rss_growth']} * at 1x (measured {ratios['rss_growth']:.2f})",
        "big_push_vs_curl": f"dockless push >= {TARGETS['big_push_vs_curl']} * curl's MB/s (measured {ratios['big_push_vs_curl']:.2f})",
    }
    for name, ok in met.items():
        print(f"  {'met    ' if ok else 'NOT met'}  {name}: {wording[name]}")


def main(work, quick, rounds, env):
    rows, big, samples = run_scale(work, quick, rounds, env)
    ratios, met = checks(rows, big)
    report = {
        "quick": quick,
        "rounds": rounds,
        "largest_factor": rows[-1]["factor"],
        "scales": [{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()} for row in rows],
        "big_layer": {k: round(v, 3) for k, v in big.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "targets": TARGETS,
        "targets_met": met,
        "samples": samples,
    }
    (work / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(rows, big, ratios, met, rounds)
    if rows[-1]["factor"] != FACTORS[-1]:
        print(f"  note: the disk could not hold {FACTORS[-1]}x; the largest scale measured is {rows[-1]['factor']}x")
    print(f"\nJSON: {work / 'scale.json'}")
