#!/usr/bin/env bash
# Short fuzzing smoke run for CI: every target for FUZZ_SECONDS (default 30)
# seconds, starting from its seed corpus (regression inputs included).
# Skips (exit 0) when no nightly toolchain or no cargo-fuzz is installed;
# exits non-zero when a target crashes or fails to build.
#
#   fuzz/smoke.sh                 # all targets
#   FUZZ_SECONDS=5 fuzz/smoke.sh relay_bytes
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(relay_bytes relay_stanzas store_value config xml_framer)
if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
fi
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz smoke: skipped (no nightly toolchain; rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: skipped (no cargo-fuzz; cargo install cargo-fuzz --locked)"
  exit 0
fi

# The core forbids unsafe code, so the runs go without a sanitizer (several
# times faster); debug assertions stay on to catch overflows.
FLAGS=(--sanitizer none --debug-assertions)

# New corpus entries go to a scratch directory: the seed corpus in the repo
# stays as committed.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cargo +nightly fuzz build "${FLAGS[@]}"

failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/$t" "corpus/$t"
  echo "fuzz smoke: $t for ${SECONDS_PER_TARGET}s"
  if ! cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$WORK/$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$WORK/$t.log" 2>&1; then
    echo "fuzz smoke: $t FAILED; the input is in fuzz/artifacts/$t/:"
    grep -A20 -m1 'panicked\|ERROR: libFuzzer' "$WORK/$t.log" || tail -40 "$WORK/$t.log"
    failed+=("$t")
    continue
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$WORK/$t.log" | tail -1 || true
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke: crashes in: ${failed[*]}"
  exit 1
fi
echo "fuzz smoke: ${#TARGETS[@]} targets, no crash"
