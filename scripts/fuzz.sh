#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on the first crash, printing the input that
# reproduces it. CI calls it after the tests (.ci/run); run it by hand the same way.
#
#   FUZZ_SECONDS   seconds per target (default 25)
#   FUZZ_TARGETS   space-separated targets to run (default: every target `cargo fuzz list` shows)
#   FUZZ_JOBS      parallel jobs of cargo's build (default: cargo's own)
#   FUZZ_CODEGEN_UNITS  codegen units of the fuzz build (default 16; cargo-fuzz's own default is 1)
#
# The build (the default toolchain, with libFuzzer's sanitizer-coverage flags) goes to a target dir of its own,
# "$CARGO_TARGET_DIR/fuzz", so it never invalidates the test build. Each run starts from the checked-in seeds
# (fuzz/seeds/<target>, read, never written) with a fresh working corpus that is deleted afterwards, so nothing
# grows between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-25}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
fuzz_target_dir="$CARGO_TARGET_DIR/fuzz"
artifacts_root="$CARGO_TARGET_DIR/fuzz-artifacts"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Always the default toolchain: without a sanitizer cargo-fuzz passes no -Z flag, so no nightly is needed, and
# picking one up "where present" would switch toolchains (a cold rebuild) whenever one appears or disappears.
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# Release with debug assertions (overflow checks on: the money parsers use i64 arithmetic). No sanitizer: the
# code under test is safe Rust, where AddressSanitizer finds nothing that a panic would not, at half the speed.
# 16 codegen units instead of cargo-fuzz's 1: the build (the whole server crate and its dependencies) is most of
# the job's time, and the targets run somewhat slower for it, which a 25-second run does not notice.
build_flags=(--release --debug-assertions --sanitizer none --codegen-units "${FUZZ_CODEGEN_UNITS:-16}"
  --target-dir "$fuzz_target_dir")
if [ -n "${FUZZ_JOBS:-}" ]; then export CARGO_BUILD_JOBS="$FUZZ_JOBS"; fi

# The fuzz crate is outside the workspace, so `cargo fmt --all` there does not see it. (Clippy on it would be a
# second build of every dependency, in check mode: left out.)
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "fuzz: building the targets"
cargo fuzz build "${build_flags[@]}"

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
passed=0
failed=0
for target in $targets; do
  corpus="$scratch/corpus-$target"
  artifacts="$artifacts_root/$target"
  mkdir -p "$corpus" "$artifacts"
  log="$scratch/$target.log"
  echo "fuzz: $target for ${FUZZ_SECONDS}s"
  # -max_total_time bounds the run, -timeout fails an input that takes over 10 s (a hang); artifacts go outside
  # the work tree; new units go to the fresh corpus, the seeds are a second, read-only one.
  if cargo fuzz run "${build_flags[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -artifact_prefix="$artifacts/" -print_final_stats=1 \
    >"$log" 2>&1; then
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
      echo "fuzz: replay it with: cargo fuzz run ${build_flags[*]} $target $reproducer"
    fi
  fi
  rm -rf "$log" "$corpus"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
