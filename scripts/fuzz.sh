#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on the first crash, printing the input that
# reproduces it. CI calls it after the tests (.ci/run); run it by hand the same way.
#
#   FUZZ_SECONDS   seconds per target (default 25)
#   FUZZ_TARGETS   space-separated targets to run (default: every target `cargo fuzz list` shows)
#   FUZZ_JOBS      parallel jobs of cargo's build (default: cargo's own)
#
# The build (nightly where present, with libFuzzer's sanitizer-coverage flags) goes to a target dir of its own,
# "$CARGO_TARGET_DIR/fuzz", so it never invalidates the stable build. libFuzzer's working corpus lives beside it
# ("$CARGO_TARGET_DIR/fuzz-corpus/<target>", kept between runs so a warm machine starts where it stopped); the
# checked-in seeds (fuzz/seeds/<target>) are read, never written.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-25}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
fuzz_target_dir="$CARGO_TARGET_DIR/fuzz"
corpus_root="$CARGO_TARGET_DIR/fuzz-corpus"
artifacts_root="$CARGO_TARGET_DIR/fuzz-artifacts"

# Nightly where the machine has it, as cargo-fuzz expects. Without a sanitizer cargo-fuzz passes no -Z flag, so
# the default (stable) toolchain builds the same targets on a machine that has no nightly and cannot fetch one.
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "fuzz: no nightly toolchain here; building with the default toolchain"
fi
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# Release with debug assertions (overflow checks on: the money parsers use i64 arithmetic). No sanitizer: the
# code under test is safe Rust, where AddressSanitizer finds nothing that a panic would not, at half the speed.
build_flags=(--release --debug-assertions --sanitizer none --target-dir "$fuzz_target_dir")
if [ -n "${FUZZ_JOBS:-}" ]; then export CARGO_BUILD_JOBS="$FUZZ_JOBS"; fi

echo "fuzz: building the targets"
cargo "${toolchain[@]}" fuzz build "${build_flags[@]}"

targets="${FUZZ_TARGETS:-$(cargo "${toolchain[@]}" fuzz list)}"
passed=0
failed=0
for target in $targets; do
  corpus="$corpus_root/$target"
  artifacts="$artifacts_root/$target"
  mkdir -p "$corpus" "$artifacts"
  log="$(mktemp)"
  echo "fuzz: $target for ${FUZZ_SECONDS}s"
  # -max_total_time bounds the run; artifacts go outside the work tree; the seeds are a second, read-only corpus.
  if cargo "${toolchain[@]}" fuzz run "${build_flags[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    runs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
    speed="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)"
    echo "fuzz: $target passed: ${runs:-?} executions, ${speed:-?}/s"
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    tail -n 40 "$log"
    reproducer="$(grep -oE "Test unit written to [^ ]+" "$log" | awk '{print $5}' | tail -n1 || true)"
    echo "fuzz: FAILED: $target crashed; reproducer: ${reproducer:-see the log above}"
    if [ -n "$reproducer" ]; then
      echo "fuzz: replay it with: cargo ${toolchain[*]} fuzz run ${build_flags[*]} $target $reproducer"
    fi
  fi
  rm -f "$log"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
