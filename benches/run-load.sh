#!/usr/bin/env bash
# Runs axrelay-load against both runtimes (and the echo ceiling, memcached
# cold and warm, body sizes, user counts, a fixed-rate latency run and a
# one-million-message soak), then prints every RESULT line as a table.
#
#   benches/run-load.sh            the full set (about 5 minutes when the machine is idle)
#   benches/run-load.sh quick      a smaller set (under a minute)
#   benches/run-load.sh FILTER     only the runs whose label contains FILTER (e.g. memcached)
#
# Everything listens on 127.0.0.1 only; memcached is started by the
# generator on a free loopback port and stopped at the end. Results go to
# $OUT (default: target/load-results.txt). Figures are only meaningful on
# an otherwise idle machine: check `uptime` first.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-full}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="${OUT:-$TARGET_DIR/load-results.txt}"

if ! command -v memcached >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing memcached" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached >/dev/null
  else
    echo "memcached is missing: apt-get install -y memcached" >&2
    exit 1
  fi
fi

cargo build --release -q -p axrelay -p axrelay-benches --bins
LOAD="$TARGET_DIR/release/axrelay-load"
RELAY="$TARGET_DIR/release/axrelay"

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT"

FAILED=0
run() {
  local label="$1"
  shift
  case "$MODE" in
    full | quick) ;;
    *) [[ "$label" == *"$MODE"* ]] || return 0 ;;
  esac
  echo "== $label: axrelay-load $*" >&2
  local status=0
  "$LOAD" --label "$label" "$@" >"$OUT.run" || status=$?
  cat "$OUT.run" >&2
  grep '^RESULT' "$OUT.run" >>"$OUT" || echo "RESULT label=$label failed=$status" >>"$OUT"
  [ "$status" = 0 ] || FAILED=$((FAILED + 1))
}

if [ "$MODE" = quick ]; then
  N=100000
  SOAK=200000
  COLD_USERS=20000
else
  N=1000000
  SOAK=1000000
  COLD_USERS=100000
fi

# As fast as it goes: the rig's ceiling, then each runtime (memory store,
# 100-byte bodies, 100 users).
for t in echo smol blocking; do
  run "max-$t" --target "$t" --messages "$N"
done
# Fixed 20,000 msg/s for 10 s: latency against the echo's.
for t in echo smol blocking; do
  run "rate20k-$t" --target "$t" --rate 20000 --messages 200000
done
# memcached, every lookup a miss: /whoami for all users, restart the relay
# (empty cache), then one message to each user from 100 senders.
for t in smol blocking; do
  run "memcached-cold-$t" --target "$t" --spawn-memcached --cold \
    --users "$COLD_USERS" --senders 100 --messages "$COLD_USERS"
done
# memcached behind a warm cache.
for t in smol blocking; do
  run "memcached-warm-$t" --target "$t" --spawn-memcached --messages "$((N / 2))"
done
# Body size and number of users (smol).
for b in 1000 10000; do
  run "body$b-smol" --target smol --body "$b" --messages "$((N / 5))"
done
for u in 10 10000; do
  run "users$u-smol" --target smol --users "$u" --messages "$((N / 2))"
done
# One million messages through the real binary; RSS of the relay process.
for t in smol blocking; do
  run "soak-$t" --target "$t" --exec "$RELAY" --messages "$SOAK" --rss-every 500
done

echo
echo "label | msg/s | p50 us | p99 us | max us | lost+dup+misrouted+corrupt+errors | relay CPU us/msg | RSS 10% -> 50% -> 100% (peak) KiB"
grep '^RESULT' "$OUT" | sed 's/^RESULT //' | awk '{
  delete f; for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  if ("failed" in f) { printf "%s | FAILED (exit %s)\n", f["label"], f["failed"]; next }
  printf "%s | %s | %s | %s | %s | %d | %s | %s -> %s -> %s (%s)\n", f["label"], f["msg_per_s"], f["p50_us"], f["p99_us"], f["max_us"],
    f["missing"] + f["dup"] + f["misrouted"] + f["corrupt"] + f["errors"], f["relay_cpu_us_per_msg"], f["rss10_kib"], f["rss50_kib"], f["rss100_kib"], f["hwm_kib"] }'
echo "results: $OUT"
[ "$FAILED" = 0 ] || { echo "$FAILED run(s) were not clean" >&2; exit 1; }
