#!/usr/bin/env bash
# The public API of the three library crates, checked against the snapshots in api/.
#
#   scripts/api-snapshot.sh          regenerate the listings and diff them against api/*.txt;
#                                    fails on any difference (CI runs this)
#   scripts/api-snapshot.sh --bless  write the listings to api/*.txt (after an intended change)
#
# Each listing (api/pool-core.txt, ...) is every public path of the crate with all its
# features on, one line per item: its kind and signature, public fields, variants, trait
# items, inherent methods, trait impls including Send/Sync/Unpin/UnwindSafe (see
# scripts/api-listing.py for what is and is not listed). It comes from rustdoc's JSON output,
# which is unstable: RUSTC_BOOTSTRAP=1 lets the stable toolchain write it. The format can
# change with the toolchain, so a new Rust may need one --bless with no API change. The
# listings are those of x86_64 Linux (CI's platform) with Cargo.lock's dependencies.
# Side effect: rustdoc replaces target/doc/pool_core/ (the HTML docs) with pool_core.json;
# `cargo doc` brings the HTML back. That also means cargo never takes this JSON as fresh from
# an earlier run: it is written anew each time (a few seconds after CI's docs.rs step, which
# builds the same dependencies with the same RUSTC_BOOTSTRAP=1 and features).
#
# This is not cargo-semver-checks: it says *that* the API changed, not whether the change is
# breaking. Every change to a listing is reviewed in the diff and needs a CHANGELOG entry.
# (cargo-semver-checks has no prebuilt binary reachable here: `cargo install
# cargo-semver-checks --locked` builds 306 crates, 22 minutes on CI's 2 cores, too much for
# every run; and with nothing published yet, its baseline could only be a git revision.
# At release time, by hand: cargo semver-checks -p pool-core --baseline-rev <last tag>.)
set -euo pipefail
cd "$(dirname "$0")/.."

bless=0
case "${1:-}" in
  --bless) bless=1 ;;
  "") ;;
  *) echo "usage: scripts/api-snapshot.sh [--bless]" >&2; exit 2 ;;
esac

crates=(pool-core pool-sql pool-http)
target="$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# One cargo doc for the three (their features unified, as in CI's docs.rs step, so the
# dependencies built there are reused); --no-deps: JSON for these three crates only.
pkgs=()
for c in "${crates[@]}"; do pkgs+=(-p "$c"); done
RUSTC_BOOTSTRAP=1 RUSTDOCFLAGS="-Z unstable-options --output-format json" \
  cargo doc "${pkgs[@]}" --all-features --no-deps --locked --quiet

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
mkdir -p api
for c in "${crates[@]}"; do
  json="$target/doc/${c//-/_}.json"
  if [ ! -s "$json" ]; then
    echo "api-snapshot: rustdoc wrote no $json" >&2
    exit 1
  fi
  # The other crates' JSON names their items by their public paths in this one's listing.
  others=()
  for o in "${crates[@]}"; do
    [ "$o" = "$c" ] || others+=("$target/doc/${o//-/_}.json")
  done
  python3 scripts/api-listing.py "$json" "${others[@]}" > "$out/$c.txt"
  if [ "$bless" -eq 1 ]; then
    if ! cmp -s "$out/$c.txt" "api/$c.txt"; then
      cp "$out/$c.txt" "api/$c.txt"
      echo "api-snapshot: wrote api/$c.txt ($(grep -cv '^\(#\|$\)' "api/$c.txt") items)"
    else
      echo "api-snapshot: api/$c.txt unchanged"
    fi
  elif [ ! -f "api/$c.txt" ]; then
    echo "api-snapshot: api/$c.txt is missing" >&2
    status=1
  elif ! diff -u --label "api/$c.txt (committed)" --label "api/$c.txt (this tree)" \
      "api/$c.txt" "$out/$c.txt"; then
    status=1
  else
    echo "api-snapshot: $c's public API matches api/$c.txt"
  fi
done

if [ "$status" -ne 0 ]; then
  cat >&2 <<'EOF'

api-snapshot: the public API differs from the snapshot in api/ (diff above: - committed,
+ this tree). If the change is intended:
  1. run `scripts/api-snapshot.sh --bless` and commit the updated api/*.txt with the change;
  2. add a CHANGELOG.md entry under [Unreleased] (Added / Changed / Removed), and say there
     if it breaks users (a removed or changed item, a new required trait item, a lost
     auto trait such as Send or Sync, a new field or variant in a type without
     #[non_exhaustive]).
If it is not intended, the diff shows which item to put back.
EOF
fi
exit "$status"
