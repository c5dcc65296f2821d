#!/usr/bin/env python3
"""Do the locked dependencies need a newer Rust than the workspace says it supports?

Usage: scripts/msrv-deps.py   (from anywhere in the workspace; CI runs it)

Reads `cargo metadata --locked --all-features` (the versions in Cargo.lock, every optional
dependency on, every target platform) and, for each workspace package with a
`rust-version`, compares it with the `rust-version` of everything that package needs:
  - its dependencies and build-dependencies, followed transitively (what a user builds);
  - its own dev-dependencies, and theirs transitively (what our tests build).
Fails, naming the chain, when one is newer than the package's; fails when a library crate
(one that may be published) states no rust-version at all. Packages that state no
rust-version are counted and named: nothing can be said about those.

What this does not do: build anything with the old compiler (this machine has one
toolchain), check a fresh resolution (a user's Cargo.lock: with resolver 3 cargo prefers
versions whose rust-version fits, see `incompatible-rust-versions`), or check the minimal
versions allowed by the Cargo.toml requirements. Python 3 standard library only.
"""

import json
import subprocess
import sys


def parse(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def show(v):
    return ".".join(str(x) for x in v).removesuffix(".0") if v[2] == 0 else ".".join(map(str, v))


def main():
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        check=True, stdout=subprocess.PIPE).stdout)
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = meta["workspace_members"]

    def deps(pid, kinds):
        out = []
        for d in nodes[pid]["deps"]:
            for k in d["dep_kinds"]:
                if k["kind"] in kinds:
                    out.append((d["pkg"], k.get("target")))
                    break
        return out

    def closure(root, first_kinds):
        """Each package reachable from root -> the chain of names that reaches it."""
        chains, seen = {}, set()
        todo = [(pid, [pkgs[root]["name"], pkgs[pid]["name"]], t) for pid, t in deps(root, first_kinds)]
        while todo:
            pid, chain, target = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            if pid not in members:  # a member is checked against its own rust-version
                chains[pid] = (chain, target)
            for dep, t in deps(pid, (None, "build")):
                todo.append((dep, chain + [pkgs[dep]["name"]], t or target))
        return chains

    failed = False
    unstated = set()
    for mid in sorted(members, key=lambda m: pkgs[m]["name"]):
        p = pkgs[mid]
        publishable = p.get("publish") is None or p.get("publish") != []
        if not p.get("rust_version"):
            if publishable:
                print("msrv: %s may be published and states no rust-version" % p["name"])
                failed = True
            continue
        ours = parse(p["rust_version"])
        for label, kinds in (("dependencies", (None, "build")), ("dev-dependencies", ("dev",))):
            reached = closure(mid, kinds)
            if label == "dev-dependencies":
                normal = closure(mid, (None, "build"))
                reached = {k: v for k, v in reached.items() if k not in normal}
            over, at, stated = [], [], 0
            for pid, (chain, target) in sorted(reached.items(), key=lambda x: pkgs[x[0]]["name"]):
                dep = pkgs[pid]
                rv = dep.get("rust_version")
                if not rv:
                    unstated.add(dep["name"])
                    continue
                stated += 1
                need = parse(rv)
                where = " (target %s)" % target if target else ""
                if need > ours:
                    over.append("  %s %s needs Rust %s%s: %s" % (dep["name"], dep["version"], rv, where,
                                                                 " -> ".join(chain)))
                elif need == ours:
                    at.append(dep["name"])
            if not reached:
                continue
            if not reached:
                continue
            print("msrv: %s (rust-version %s), %s: %d packages, %d state a rust-version, %s above it%s"
                  % (p["name"], show(ours), label, len(reached), stated,
                     "%d" % len(over) if over else "none",
                     "; at it exactly: " + ", ".join(sorted(set(at))) if at else ""))
            for line in over:
                print(line)
            failed |= bool(over)
    if unstated:
        print("msrv: no rust-version stated (not checked): " + ", ".join(sorted(unstated)))
    if failed:
        print("msrv: a dependency needs a newer Rust than the rust-version we state: pin an older "
              "version in Cargo.lock (cargo update -p NAME --precise VERSION), or raise rust-version "
              "in Cargo.toml (and say so in CHANGELOG.md)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
