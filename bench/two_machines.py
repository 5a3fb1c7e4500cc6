"""Two machines, one cache: A builds and exports its layers with --cache-to; B, a fresh machine
with a fresh checkout, imports them with --cache-from and should pay little more than hashing
its context.

B's budget is A's own no-op (what any build costs when nothing changed: reading the Dockerfile,
the base's manifest, the push's HEADs) plus 1.2 times the hash floor `tar | sha256sum` (B has
no local cache, so it must read and hash every file of its context once to know the layers'
diff_ids; it compresses and uploads nothing)."""

import json
import shutil

from harness import DOCKLESS, run, timed, timed_shell

BUDGET_HASH_FACTOR = 1.2


def hash_floor(ctx):
    """Reading and hashing the whole context once, as one tar stream: what B cannot avoid."""
    return timed_shell(f"tar -C {ctx} -cf - . | sha256sum")


def fresh_checkout(ctx, copy):
    """Another machine's checkout: the same bytes, new inodes and new mtimes (cp without -p),
    so nothing can be recognised by its stat."""
    shutil.rmtree(copy, ignore_errors=True)
    run(["cp", "-r", ctx, copy])


def fresh_machine(cache, env):
    """An empty DOCKLESS_CACHE_DIR: nothing built, nothing listed, no base pulled."""
    shutil.rmtree(cache, ignore_errors=True)
    return {**env, "DOCKLESS_CACHE_DIR": str(cache)}


def push(ctx, target, cache_flag, cache_ref, env):
    seconds, out = timed([DOCKLESS, "push", ctx, "--to", target, cache_flag, cache_ref, "--json"], env=env)
    return seconds, json.loads(out)


def measure(work, ctx, env, registry):
    """One round: returns the times (seconds by step) and what B's push reported."""
    cache_ref = f"{registry}/bench/cache:main"
    # Both machines push to one repository, as CI runners of one project do, so B finds the
    # config and the layers there already and uploads nothing; B's own tag still costs a PUT.
    repository = f"{registry}/bench/shared"
    took = {}
    env_a = fresh_machine(work / "machine-a-cache", env)
    took["machine_a_cold"], a = push(ctx, f"{repository}:a", "--cache-to", cache_ref, env_a)
    took["machine_a_noop"], _ = push(ctx, f"{repository}:a", "--cache-to", cache_ref, env_a)
    took["hash_floor"] = hash_floor(ctx)
    checkout_b = work / "ctx-machine-b"
    fresh_checkout(ctx, checkout_b)
    env_b = fresh_machine(work / "machine-b-cache", env)
    try:
        took["machine_b"], b = push(checkout_b, f"{repository}:b", "--cache-from", cache_ref, env_b)
    finally:
        for leftover in (checkout_b, work / "machine-a-cache", work / "machine-b-cache"):
            shutil.rmtree(leftover, ignore_errors=True)
    took["machine_b_budget"] = took["machine_a_noop"] + BUDGET_HASH_FACTOR * took["hash_floor"]
    facts = {
        "machine_b_uploaded_blobs": b["uploadedBlobs"],
        "machine_b_same_digest": b["digest"] == a["digest"],
    }
    return took, facts
