#!/usr/bin/env bash
# The stated MSRV (`rust-version` in Cargo.toml, inherited by every crate), checked with the
# one toolchain CI has. CI runs this after `cargo clippy`, which is the check proper:
#
#  checked  - (cargo clippy step, -D warnings) clippy's `incompatible_msrv` lint: a call to a
#             standard-library function, method or type stabilized after our rust-version
#             (read from Cargo.toml) fails CI, in library code, binaries, examples, benches
#             and the helpers of integration tests;
#           - (here, 1) nothing switches that lint off: no clippy.toml `msrv` overriding
#             rust-version, no allow/expect of the lint or of its groups (clippy::suspicious,
#             clippy::all) in the sources or the Cargo.toml [lints] tables;
#           - (here, 2) a canary: a scratch crate with our rust-version that calls an API
#             newer than it must fail clippy with incompatible_msrv (so a clippy release
#             that renames, moves or weakens the lint cannot turn the check off silently);
#           - (here, 3) scripts/msrv-deps.py: no locked dependency (normal, build or dev, all
#             features, all platforms) states a rust-version above ours.
#  not checked - that the workspace builds with that old Rust itself: CI has no such
#             compiler. So not: language features newer than the MSRV (syntax such as
#             `[x; _]`, stable since 1.89: clippy's lint sees library items only), code in
#             #[test] functions, #[cfg(test)] modules and doc tests (the lint skips them;
#             they are ours, not users'), const-ness of std functions, Cargo features of a
#             newer cargo, and dependencies that state no rust-version (msrv-deps.py names
#             them).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"

# The lowest rust-version among the crates that may be published.
msrv="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
m = json.load(sys.stdin)
vs = [p["rust_version"] for p in m["packages"] if p.get("publish") != [] and p.get("rust_version")]
print(min(vs, key=lambda v: tuple(int(x) for x in v.split("."))) if vs else "")')"
[ -n "$msrv" ] || { echo "msrv: no library crate states a rust-version" >&2; exit 1; }
echo "msrv: the library crates state rust-version $msrv"

# 1. Nothing switches the lint off or points clippy at another MSRV.
status=0
if found="$(find . -path ./target -prune -o \( -name clippy.toml -o -name .clippy.toml \) -print | head -5)" &&
  [ -n "$found" ] && grep -HnE '^[[:space:]]*msrv[[:space:]]*=' $found; then
  echo "msrv: a clippy.toml sets msrv (above): clippy would check against it, not rust-version" >&2
  status=1
fi
if grep -rnE --include='*.rs' --exclude-dir=target \
  '(allow|expect)\([^)]*clippy::(incompatible_msrv|suspicious|all)([^_[:alnum:]]|$)' .; then
  echo "msrv: the sources switch clippy's incompatible_msrv off (above)" >&2
  status=1
fi
if grep -nE '^[[:space:]]*(incompatible_msrv|suspicious|all)[[:space:]]*=.*allow' Cargo.toml */Cargo.toml; then
  echo "msrv: a Cargo.toml switches clippy's incompatible_msrv off (above)" >&2
  status=1
fi
[ "$status" -eq 0 ] || exit 1
echo "msrv: nothing switches clippy's incompatible_msrv off"

# 2. The canary: the first API in this table stabilized after $msrv (and not after this
# toolchain) must make clippy fail with incompatible_msrv.
newer() { python3 -c 'import sys; t=lambda v: tuple(int(x) for x in v.split(".")[:3]); sys.exit(0 if t(sys.argv[1]) > t(sys.argv[2]) else 1)' "$1" "$2"; }
rustc_v="$(rustc --version | awk '{print $2}' | cut -d- -f1)"
canary=""
while IFS='|' read -r since code; do
  if newer "$since" "$msrv" && ! newer "$since" "$rustc_v"; then canary="$code"; canary_since="$since"; break; fi
done <<'EOF'
1.89|pub fn canary(f: &std::fs::File) -> std::io::Result<()> { f.lock() }
1.91|pub fn canary(s: &str) -> usize { s.ceil_char_boundary(1) }
1.94|pub fn canary(s: &[u8]) -> Option<usize> { s.element_offset(&s[0]) }
1.95|pub fn canary(v: &mut Vec<u8>) -> &mut u8 { v.insert_mut(0, 1) }
EOF
if [ -z "$canary" ]; then
  echo "msrv: no canary API newer than $msrv known to this script for rustc $rustc_v: add one" \
    "to its table (the check of the lint itself is skipped)"
else
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
  mkdir "$dir/src"
  # Set up as ours is: rust-version inherited from the workspace, clippy::all at warn.
  cat > "$dir/Cargo.toml" <<EOF
[workspace]
[workspace.package]
rust-version = "$msrv"
[package]
name = "msrv-canary"
version = "0.0.0"
edition = "2024"
rust-version.workspace = true
publish = false
[lints.clippy]
all = { level = "warn", priority = -1 }
EOF
  printf '//! MSRV canary\n#![allow(missing_docs)]\n%s\n' "$canary" > "$dir/src/lib.rs"
  if out="$(cd "$dir" && CARGO_TARGET_DIR="$target/msrv-canary" cargo clippy --quiet -- -D warnings 2>&1)"; then
    echo "$out"
    echo "msrv: clippy passed a call to an API stable since $canary_since under rust-version $msrv:" \
      "its incompatible_msrv lint no longer works as CI expects" >&2
    exit 1
  elif ! grep -q 'incompatible.msrv' <<<"$out"; then
    echo "$out"
    echo "msrv: the canary failed clippy, but not with incompatible_msrv (above)" >&2
    exit 1
  fi
  echo "msrv: clippy's incompatible_msrv fires (canary: an API stable since $canary_since)"
fi

# 3. The locked dependencies' own rust-version.
python3 scripts/msrv-deps.py
