"""The RUN parts (`--run-heavy`, `--per-run`; both in a full run), issue #22's "Must show":

- RUN-heavy: the E2B-template-shaped Dockerfile (run_contexts.TEMPLATE_DOCKERFILE) built and
  pushed to one local registry by dockless, by `docker build` (dockerd 20.10's BuildKit,
  overlay2) + `docker push`, and by `buildah bud --layers` (overlay, runc) + `buildah push`.
- Per-RUN overhead: FROM a base, then `RUN true` ten times, built by dockless and by docker, over
  a ~100 MB Debian minbase (without apt's downloads and lists) and over a ~1 GB one (that base
  plus a layer of files).

Fair terms: each tool has the base locally before anything is timed (pulled, then one untimed
warm-up build); every timed build gets a new BUST build argument, so every RUN runs again; each
round pushes to a new repository per tool, so every round uploads the same. Each image is
checked after the timing (a new digest every round, the Dockerfile's USER in its config), so a
tool that reused a cached RUN or dropped an instruction fails the bench instead of winning it."""

import json
import statistics
import time

from daemons import BuildahStore, DockerDaemon, buildah_pull, docker_pull
from harness import DOCKLESS, Registry, log, run, timed
from run_contexts import RUN_TRUE_COUNT, big_base, run_true_context, slim_base, template_context
from workload import push_base

TARGETS = {
    "run_heavy_vs_docker": 0.8,  # dockless's build+push at most 0.8 x docker's
    "per_run_seconds": 0.3,  # a `RUN true` over either base, build time / 10
    "per_run_big_vs_small": 1.2,  # over the ~1 GB base at most 1.2 x over the ~100 MB one
}
BIG_BASE_MB = {False: 900, True: 200}  # added to the minbase; --quick makes a smaller one


def image_config(ref):
    """What the registry holds under `ref`: its manifest digest and its config."""
    digest = run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"]).strip()
    config = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{ref}"]))
    return digest, config


class Contenders:
    """How each tool builds, and builds and pushes, a context with a build argument."""

    def __init__(self, docker, buildah, env):
        self.docker, self.buildah, self.env = docker, buildah, env

    def build(self, tool, ctx, bust):
        if tool == "dockless":
            return timed([DOCKLESS, "build", ctx, "-q", "--build-arg", f"BUST={bust}"], env=self.env)[0]
        if tool == "docker":
            args = self.docker.docker("build", "-q", "--network", "host", "--build-arg", f"BUST={bust}", "-t", "bench-run", ctx)
            return timed(args, env=self.docker.env)[0]
        args = self.buildah.command("bud", "-q", "--layers", "--runtime", "runc", "--network", "host",
                                    "--tls-verify=false", "--build-arg", f"BUST={bust}", "-t", "bench-run", ctx)
        return timed(args)[0]

    def build_and_push(self, tool, ctx, bust, ref):
        if tool == "dockless":
            return timed([DOCKLESS, "push", ctx, "--to", ref, "-q", "--build-arg", f"BUST={bust}"], env=self.env)[0]
        if tool == "docker":
            build = self.docker.docker("build", "-q", "--network", "host", "--build-arg", f"BUST={bust}", "-t", ref, ctx)
            seconds = timed(build, env=self.docker.env)[0]
            start = time.perf_counter()
            run(self.docker.docker("push", "-q", ref), env=self.docker.env)
            return seconds + time.perf_counter() - start
        build = self.buildah.command("bud", "-q", "--layers", "--runtime", "runc", "--network", "host",
                                     "--tls-verify=false", "--build-arg", f"BUST={bust}", "-t", ref, ctx)
        seconds = timed(build)[0]
        start = time.perf_counter()
        run(self.buildah.command("push", "-q", "--tls-verify=false", ref))
        return seconds + time.perf_counter() - start


def run_heavy_rounds(contenders, ctx, registry, rounds, run_id):
    """Returns the seconds by tool by round, after checking every pushed image."""
    tools = ("dockless", "docker", "buildah")
    for tool in tools:
        log(f"run-heavy: {tool} warm-up build (untimed)")
        contenders.build(tool, ctx, f"{run_id}-warm-up")
    samples, digests = {tool: [] for tool in tools}, {tool: set() for tool in tools}
    for round_number in range(1, rounds + 1):
        for tool in tools:
            ref = f"{registry}/bench/run-heavy-{tool}-r{round_number}:latest"
            seconds = contenders.build_and_push(tool, ctx, f"{run_id}-r{round_number}", ref)
            digest, config = image_config(ref)
            if digest in digests[tool]:
                raise SystemExit(f"bench: {tool} pushed the same image in two rounds: its RUN cache was not busted")
            if config["config"].get("User") != "user":
                raise SystemExit(f"bench: {tool}'s image has User {config['config'].get('User')!r}, not the Dockerfile's 'user'")
            digests[tool].add(digest)
            samples[tool].append(seconds)
        log(f"run-heavy round {round_number} of {rounds}: " + ", ".join(f"{t} {samples[t][-1]:.2f}" for t in tools))
    return samples


def per_run_rounds(contenders, contexts, rounds, run_id):
    """Seconds of the ten-`RUN true` build by tool and base, by round."""
    tools = ("dockless", "docker")
    samples = {(tool, base): [] for tool in tools for base in contexts}
    for base, ctx in contexts.items():
        for tool in tools:
            log(f"per-RUN: {tool} over the {base} base, warm-up build (untimed)")
            contenders.build(tool, ctx, f"{run_id}-warm-up")
    for round_number in range(1, rounds + 1):
        for base, ctx in contexts.items():
            for tool in tools:
                samples[(tool, base)].append(contenders.build(tool, ctx, f"{run_id}-r{round_number}"))
        log(f"per-RUN round {round_number} of {rounds}: "
            + ", ".join(f"{tool}/{base} {values[-1]:.2f}" for (tool, base), values in samples.items()))
    return samples


def evaluate(heavy, per_run):
    """Medians, ratios and targets of whichever parts ran (None for a part that did not)."""
    report = {"targets": TARGETS, "seconds": {}, "ratios": {}, "targets_met": {}}
    if heavy:
        med = {tool: statistics.median(values) for tool, values in heavy.items()}
        report["seconds"]["run_heavy"] = med
        report["ratios"]["run_heavy_vs_docker"] = med["dockless"] / med["docker"]
        report["ratios"]["run_heavy_vs_buildah"] = med["dockless"] / med["buildah"]
        report["targets_met"]["run_heavy_vs_docker"] = report["ratios"]["run_heavy_vs_docker"] <= TARGETS["run_heavy_vs_docker"]
    if per_run:
        per = {f"{tool}/{base}": statistics.median(values) / RUN_TRUE_COUNT for (tool, base), values in per_run.items()}
        report["seconds"]["per_run"] = per
        for tool in ("dockless", "docker"):
            report["ratios"][f"per_run_big_vs_small_{tool}"] = per[f"{tool}/big"] / per[f"{tool}/small"]
        report["targets_met"]["per_run_seconds"] = max(per["dockless/small"], per["dockless/big"]) <= TARGETS["per_run_seconds"]
        report["targets_met"]["per_run_big_vs_small"] = report["ratios"]["per_run_big_vs_small_dockless"] <= TARGETS["per_run_big_vs_small"]
    return report


def print_report(report, rounds, sizes):
    print(f"RUN parts; medians of {rounds} round(s); every RUN's cache busted each round")
    seconds, ratios = report["seconds"], report["ratios"]
    if "run_heavy" in seconds:
        heavy = seconds["run_heavy"]
        print(f"template-shaped Dockerfile (3,000-file RUN, COPY --chown of 200 files, 5 RUNs) on the {sizes['minbase']} MB minbase, build + push:")
        print("| tool | seconds | dockless = |")
        print("|---|---:|---:|")
        print(f"| dockless | {heavy['dockless']:.2f} | |")
        print(f"| docker build (20.10 BuildKit, overlay2) + docker push | {heavy['docker']:.2f} | {ratios['run_heavy_vs_docker']:.2f}x |")
        print(f"| buildah bud --layers (overlay, runc) + buildah push | {heavy['buildah']:.2f} | {ratios['run_heavy_vs_buildah']:.2f}x |")
        print()
    if "per_run" in seconds:
        per = seconds["per_run"]
        print(f"per-RUN overhead: FROM base + {RUN_TRUE_COUNT} x RUN true, build time / {RUN_TRUE_COUNT}:")
        print(f"| tool | s per RUN, {sizes['small']} MB base | s per RUN, {sizes['big']} MB base | big / small |")
        print("|---|---:|---:|---:|")
        for tool in ("dockless", "docker"):
            print(f"| {tool} | {per[f'{tool}/small']:.3f} | {per[f'{tool}/big']:.3f} | {ratios[f'per_run_big_vs_small_{tool}']:.2f}x |")
        print()
    for name, ok in report["targets_met"].items():
        print(f"  {'met    ' if ok else 'NOT met'}  {name} (target {TARGETS[name]})")


def image_mb(docker, ref):
    """An image's unpacked size in MB, as the Docker daemon that pulled it counts it."""
    return round(int(run(docker.docker("image", "inspect", "--format", "{{.Size}}", ref), env=docker.env)) / 1e6)


def main(work, quick, rounds, env, parts):
    """Runs the selected parts ({"run_heavy", "per_run"}) against one registry and one dockerd,
    prints their tables and writes target/bench/run-parts.json."""
    env = {**env, "DOCKLESS_CACHE_DIR": str(work / "run-cache")}
    run_id = f"{time.time_ns():x}"  # a build argument no cache can have seen
    heavy = per_run = None
    with Registry(work / "registry-run") as registry, DockerDaemon(registry.address) as docker, BuildahStore(work) as buildah:
        minbase = push_base(work, False, env, registry.address)
        contenders = Contenders(docker, buildah, env)
        docker_pull(docker, minbase)
        sizes = {"minbase": image_mb(docker, minbase)}
        if "run_heavy" in parts:
            buildah_pull(buildah, minbase)
            heavy = run_heavy_rounds(contenders, template_context(work, minbase), registry.address, rounds, run_id)
        if "per_run" in parts:
            small = slim_base(work, env, registry.address)
            big = big_base(work, small, env, registry.address, BIG_BASE_MB[quick])
            for base in (small, big):
                docker_pull(docker, base)
            sizes.update(small=image_mb(docker, small), big=image_mb(docker, big))
            contexts = {"small": run_true_context(work, "small", small), "big": run_true_context(work, "big", big)}
            per_run = per_run_rounds(contenders, contexts, rounds, run_id)
    report = evaluate(heavy, per_run)
    report.update({
        "rounds": rounds,
        "base_mb": sizes,
        "samples": {
            "run_heavy": heavy,
            "per_run": {f"{tool}/{base}": values for (tool, base), values in (per_run or {}).items()},
        },
    })
    (work / "run-parts.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, rounds, sizes)
    print(f"\nJSON: {work / 'run-parts.json'}")
