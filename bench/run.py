#!/usr/bin/env python3
"""dockless benchmark: build + push a generated template context against its peers, in one run.

Everything talks to a throwaway CNCF registry on loopback. Times are wall-clock seconds on this
machine; the claims are the ratios between tools measured in the same run, never absolute times.

    python3 bench/run.py            # full workload (~300 MB, ~20,000 files), about 10 minutes
    python3 bench/run.py --quick    # small workload, to check the harness itself
    python3 bench/run.py --scale    # how cost grows: 1x, 3x, 10x the workload; a 2 GB layer vs curl
    python3 bench/run.py --run-heavy  # only the template-shaped RUN-heavy build+push vs docker, buildah
    python3 bench/run.py --per-run    # only the per-RUN overhead over a ~100 MB and a ~1 GB base

A full run is the main run and then both RUN parts (run_heavy.py), each with its own table.
"""

import argparse
import json
import os
import shutil
import statistics

import peers
import run_heavy
import scale
import two_machines
from harness import DOCKLESS, WORK, Registry, ensure_tools, log
from workload import FULL, QUICK, context_stats, generate_context, push_base, wipe_cache_but_listings, write_dockerfile

TARGETS = {
    "cold_vs_skopeo_umoci": 0.35,
    # An empty store, the base's listing included (issue #22): what a first build on a machine pays.
    "cold_with_listing_vs_skopeo_umoci": 0.4,
    "cold_vs_pigz_floor": 0.6,
    "noop_seconds": 0.3,
    "one_file_seconds": 0.5,
    "rss_mb": 100,
    "cold_vs_skopeo_copy": 1.0,
    # B's push over its budget: A's no-op + 1.2 x the hash floor (see two_machines.py).
    "machine_b_vs_budget": 1.0,
    "machine_b_same_image": "0 blobs uploaded, A's digest",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small workload, to check the harness")
    parser.add_argument("--no-buildah", action="store_true", help="skip the buildah peer")
    parser.add_argument("--scale", action="store_true", help="only the scale run: 1x, 3x, 10x and a big layer vs curl")
    parser.add_argument("--run-heavy", action="store_true", help="only the RUN-heavy part: template-shaped Dockerfile vs docker and buildah")
    parser.add_argument("--per-run", action="store_true", help="only the per-RUN overhead part: RUN true x 10 over ~100 MB and ~1 GB bases")
    parser.add_argument("--no-run-parts", action="store_true", help="the main run without the RUN parts (no dockerd)")
    parser.add_argument("--rounds", type=int, help="rounds to take medians over (default 3; 1 with --scale)")
    return parser.parse_args()


def one_round(work, ctx, env, quick, last, with_buildah):
    """Every step once against a fresh registry (so no blob, and no peer's memory of one, carries
    over). Returns the seconds by step and the facts the checks need."""
    cache = work / "dockless-cache"
    took, facts = {}, {}
    with Registry(work / "registry") as registry:
        base_ref = push_base(work, quick, env, registry.address)
        write_dockerfile(ctx, base_ref)
        log("pigz floor")
        took["pigz_floor"] = peers.pigz_floor(ctx)
        log("base listing, once per base per machine")
        took["base_listing"] = peers.base_listing(work, base_ref, env)
        log("dockless cold, an empty store: the base's listing included")
        shutil.rmtree(cache, ignore_errors=True)
        took["dockless_cold_with_listing"], _ = peers.dockless_push(ctx, f"{registry.address}/bench/dockless-empty:1", env)
        log("dockless cold, an empty store but the base's listing")
        wipe_cache_but_listings(cache)
        target = f"{registry.address}/bench/dockless:1"
        took["dockless_cold"], facts["cold"] = peers.dockless_push(ctx, target, env)
        log("dockless no-op")
        took["dockless_noop"], facts["noop"] = peers.dockless_push(ctx, target, env)
        log("dockless one file changed")
        changed = ctx / "src" / "module0.py"
        original = changed.read_bytes()
        changed.write_bytes(original + b"# changed\n")
        try:
            took["dockless_one_file"], facts["one"] = peers.dockless_push(ctx, target, env)
        finally:
            changed.write_bytes(original)
        log("two machines, one cache: A exports, B imports")
        shared, facts["machine_b"] = two_machines.measure(work, ctx, env, registry.address)
        took.update(shared)
        log("skopeo copy of the same image as an OCI layout")
        took["skopeo_copy"] = peers.skopeo_copy_of_layout(work, ctx, env, registry.address)
        log("skopeo + umoci")
        took["skopeo_umoci"] = peers.skopeo_umoci(work, ctx, peers.base_layout(work, base_ref), registry.address)
        if last and with_buildah:
            log("buildah bud + push (vfs, chroot)")
            took["buildah"] = peers.buildah(work, ctx, registry.address)
        if last:
            log("peak RSS of a big-layer push")
            facts["big_mb"], facts["rss"] = peers.peak_rss_mb(work, env, registry.address, quick)
    return took, facts


def evaluate(results, facts_by_round):
    """The ratios to report and whether each target is met (facts from the last round, except
    B's, which must hold in every round)."""
    last = facts_by_round[-1]
    ratios = {
        "cold_vs_skopeo_umoci": results["dockless_cold"] / results["skopeo_umoci"],
        "cold_with_listing_vs_skopeo_umoci": results["dockless_cold_with_listing"] / results["skopeo_umoci"],
        "cold_vs_pigz_floor": results["dockless_cold"] / results["pigz_floor"],
        "cold_vs_skopeo_copy": results["dockless_cold"] / results["skopeo_copy"],
        "machine_b_vs_budget": results["machine_b"] / results["machine_b_budget"],
    }
    if "buildah" in results:
        ratios["cold_vs_buildah"] = results["dockless_cold"] / results["buildah"]
    b_rounds = [facts["machine_b"] for facts in facts_by_round]
    checks = {
        "cold_vs_skopeo_umoci": ratios["cold_vs_skopeo_umoci"] <= TARGETS["cold_vs_skopeo_umoci"],
        "cold_with_listing_vs_skopeo_umoci": ratios["cold_with_listing_vs_skopeo_umoci"] <= TARGETS["cold_with_listing_vs_skopeo_umoci"],
        "cold_vs_pigz_floor": ratios["cold_vs_pigz_floor"] <= TARGETS["cold_vs_pigz_floor"],
        "cold_vs_skopeo_copy": ratios["cold_vs_skopeo_copy"] <= TARGETS["cold_vs_skopeo_copy"],
        "noop_seconds": results["dockless_noop"] <= TARGETS["noop_seconds"] and last["noop"]["uploadedBlobs"] == 0,
        "one_file_seconds": results["dockless_one_file"] <= TARGETS["one_file_seconds"],
        "rss_mb": last["rss"] <= TARGETS["rss_mb"],
        "machine_b_vs_budget": ratios["machine_b_vs_budget"] <= TARGETS["machine_b_vs_budget"],
        "machine_b_same_image": all(b["machine_b_uploaded_blobs"] == 0 and b["machine_b_same_digest"] for b in b_rounds),
    }
    return ratios, checks


def print_table(results, ratios, facts, workload_line):
    b = facts["machine_b"]
    rows = [
        ("dockless cold, empty store", results["dockless_cold_with_listing"],
         f"base listing included; = {ratios['cold_with_listing_vs_skopeo_umoci']:.2f}x skopeo + umoci"),
        ("dockless cold build+push", results["dockless_cold"], "the base's listing already in the store"),
        ("dockless no-op build+push", results["dockless_noop"], f"{facts['noop']['uploadedBlobs']} blobs uploaded"),
        ("dockless one file changed", results["dockless_one_file"], f"{facts['one']['uploadedBlobs']} blobs uploaded"),
        ("skopeo copy (same image)", results["skopeo_copy"], f"dockless cold = {ratios['cold_vs_skopeo_copy']:.2f}x"),
        ("skopeo + umoci", results["skopeo_umoci"], f"dockless cold = {ratios['cold_vs_skopeo_umoci']:.2f}x"),
    ]
    if "buildah" in results:
        rows.append(("buildah bud + push", results["buildah"], f"dockless cold = {ratios['cold_vs_buildah']:.2f}x"))
    rows += [
        ("tar | pigz -p2 -1 floor", results["pigz_floor"], f"dockless cold = {ratios['cold_vs_pigz_floor']:.2f}x"),
        ("base listing (once per base)", results["base_listing"], "fetch + list the base's layers"),
        ("A: cold, --cache-to", results["machine_a_cold"], "machine A, empty store"),
        ("A: no-op, --cache-to", results["machine_a_noop"], "floor 1"),
        ("tar | sha256sum floor", results["hash_floor"], "floor 2"),
        ("B: fresh, --cache-from", results["machine_b"],
         f"{b['machine_b_uploaded_blobs']} blobs uploaded, {'same' if b['machine_b_same_digest'] else 'OTHER'} digest as A; "
         f"{ratios['machine_b_vs_budget']:.2f}x the budget {results['machine_b_budget']:.2f} s (A no-op + 1.2 x hash floor)"),
    ]
    print(workload_line)
    print(f"| {'step':<28} | {'seconds':>8} | note")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 30}")
    for name, seconds, note in rows:
        print(f"| {name:<28} | {seconds:8.2f} | {note}")
    print(f"| {'peak RSS, ' + str(facts['big_mb']) + ' MB layer push':<28} | {facts['rss']:6.1f} MB |")
    print()


def main_run(work, args, env):
    rounds = args.rounds or 3
    ctx = work / ("ctx-quick" if args.quick else "ctx")
    log("generating the workload (deterministic; cached)")
    generate_context(ctx, QUICK if args.quick else FULL)
    context_mb, file_count = context_stats(ctx)

    # Every step once per round, interleaved, and the median of each is reported.
    samples, facts_by_round = {}, []
    for round_number in range(1, rounds + 1):
        log(f"round {round_number} of {rounds}")
        took, facts = one_round(work, ctx, env, args.quick, round_number == rounds, not args.no_buildah)
        for step, seconds in took.items():
            samples.setdefault(step, []).append(seconds)
        facts_by_round.append(facts)
        log("  " + ", ".join(f"{k} {v:.2f}" for k, v in took.items()))
    results = {step: statistics.median(values) for step, values in samples.items()}
    ratios, checks = evaluate(results, facts_by_round)
    last = facts_by_round[-1]

    report = {
        "workload": {"quick": args.quick, "context_mb": round(context_mb, 1), "files": file_count, "big_layer_mb": last["big_mb"]},
        "seconds": {k: round(v, 3) for k, v in results.items()},
        "rounds": rounds,
        "samples": {k: [round(v, 3) for v in values] for k, values in samples.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "dockless": {
            "cold_uploaded_blobs": last["cold"]["uploadedBlobs"],
            "noop_uploaded_blobs": last["noop"]["uploadedBlobs"],
            "one_file_uploaded_blobs": last["one"]["uploadedBlobs"],
            "big_push_peak_rss_mb": round(last["rss"], 1),
            "machine_b_by_round": [facts["machine_b"] for facts in facts_by_round],
        },
        "targets": TARGETS,
        "targets_met": checks,
        "machine": {"cpus": os.cpu_count()},
    }
    (work / "results.json").write_text(json.dumps(report, indent=2) + "\n")

    base = "busybox" if args.quick else "Debian bookworm"
    print_table(results, ratios, last, f"workload: {context_mb:.0f} MB in {file_count} files on a {base} base; {os.cpu_count()} cores; medians of {rounds} rounds")
    for name, ok in checks.items():
        print(f"  {'met    ' if ok else 'NOT met'}  {name} (target {TARGETS[name]})")
    print(f"\nJSON: {work / 'results.json'}")


def main():
    args = parse_args()
    if not DOCKLESS.exists():
        raise SystemExit(f"bench: build {DOCKLESS} first (just build-release)")
    ensure_tools()
    WORK.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKLESS_CACHE_DIR": str(WORK / "dockless-cache")}
    # A shared cache from the environment would change what every step measures.
    for variable in ("RUST_LOG", "DOCKLESS_CACHE_REPO"):
        env.pop(variable, None)
    if args.scale:
        scale.main(WORK, args.quick, args.rounds or 1, env)
        return
    parts = {name for name, chosen in (("run_heavy", args.run_heavy), ("per_run", args.per_run)) if chosen}
    if not parts:
        main_run(WORK, args, env)
        if args.no_run_parts:
            return
        parts = {"run_heavy", "per_run"}
        print()
    run_heavy.main(WORK, args.quick, args.rounds or 3, env, parts)


if __name__ == "__main__":
    main()
