#!/usr/bin/env bash
# Build every cargo-fuzz target in fuzz/ and run each for a fixed short time.
#
#   FUZZ_SECONDS=20 (default)  time per target, libFuzzer -max_total_time
#   FUZZ_TARGETS="a b"         run only these targets (default: all)
#   FUZZ_SANITIZER=none        or `address` (ASan: 2.5x the build time and
#                              about 1/4 of the executions; broker-core has no
#                              unsafe code, so the default looks for panics)
#
# Prints the build time and, per target, libFuzzer's count of executed
# inputs; fails if any target crashes (panic, sanitizer report, timeout or
# out-of-memory). A crashing input is left in fuzz/artifacts/<target>/: fix
# the bug and commit the input as a regression test in the decoder's crate
# (broker-core/tests/decoders.rs, store-sled/src/codec.rs, store-redis/src/format.rs).
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets it take the
# nightly flags cargo fuzz passes (sanitizer coverage, -Zsanitizer=address).
# Builds go to fuzz/target (fuzz/ is its own cargo workspace). New corpus
# entries go to fuzz/corpus/<target> (ignored); fuzz/seeds/<target> is read.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi

cd fuzz
# -a: debug assertions (and so integer-overflow checks) in the fuzzed code.
flags=(--debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"

start=$(date +%s)
cargo fuzz build "${flags[@]}" 2>&1 | grep -Ev '^\s+(Compiling|Downloaded|Downloading) ' || true
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  echo "fuzz: build failed" >&2
  exit 1
fi
built=$(date +%s)
echo "fuzz: built $(wc -w <<<"$targets") targets in $((built - start)) s"

mkdir -p artifacts
failed=()
total_runs=0
for t in $targets; do
  mkdir -p "corpus/$t"
  corpora=("corpus/$t")
  if [ -d "seeds/$t" ]; then
    corpora+=("seeds/$t")
  fi
  log="artifacts/$t.log"
  # The first corpus directory receives new inputs; seeds stay untouched.
  if cargo fuzz run "${flags[@]}" "$t" "${corpora[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASHED
    failed+=("$t")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  if [ -z "$runs" ]; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  fi
  corpus=$(find "corpus/$t" -type f | wc -l)
  echo "fuzz: $t: ${runs:-?} executions in ${seconds} s, corpus ${corpus}, $status"
  total_runs=$((total_runs + ${runs:-0}))
  if [ "$status" != ok ]; then
    echo "---- fuzz: $t log (last 60 lines) ----" >&2
    tail -n 60 "$log" >&2
    echo "----" >&2
  fi
done
end=$(date +%s)
echo "fuzz: $total_runs executions in total; $((end - start)) s including the build"

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
  exit 1
fi
