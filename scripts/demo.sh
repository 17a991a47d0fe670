#!/usr/bin/env bash
# A complete axrelay conversation on this machine, then everything is removed.
#
#   scripts/demo.sh
#
# 1. installs Prosody and slixmpp if missing (Debian/Ubuntu, as root);
# 2. starts a throwaway Prosody on 127.0.0.1 (config from
#    scripts/prosody.cfg.lua.in) with the accounts alice and bob;
# 3. builds axrelay and starts `axrelay run` as the component axr.localhost,
#    with its pseudonym store in the same temporary directory;
# 4. alice and bob ask the relay for their pseudonyms and write to each other
#    through them; prints what each side saw.
#
# Nothing listens on anything but 127.0.0.1. Set AXRELAY_DEMO_KEEP=1 to keep
# the temporary directory (configs and logs) for a look afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPONENT=axr.localhost
PYTHON="${AXRELAY_E2E_PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON=python3

say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# --- 1. prerequisites ------------------------------------------------------
have_prereqs() {
	command -v prosody >/dev/null && command -v prosodyctl >/dev/null &&
		"$PYTHON" -c 'import slixmpp' 2>/dev/null
}
if ! have_prereqs; then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
		die "needs Prosody and slixmpp: run as root, or: sudo apt-get install prosody python3-slixmpp"
	say "Installing prosody and python3-slixmpp with apt-get…"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq prosody python3-slixmpp >/dev/null 2>&1; then
		apt-get update -qq
		apt-get install -y -qq prosody python3-slixmpp >/dev/null
	fi
	have_prereqs || die "prosody or slixmpp still missing after apt-get"
fi
command -v cargo >/dev/null || die "needs cargo (Rust) to build axrelay"

# --- temporary directory and clean-up -----------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/axrelay-demo.XXXXXX")"
PROSODY_PID=""
RELAY_PID=""
alive() { # pid: running (not gone, not a zombie waiting to be reaped)
	local state
	state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
	[ -n "$state" ] && [ "${state#Z}" = "$state" ]
}
STOP_STATUS=0
stop_pid() { # pid, seconds: SIGTERM, then SIGKILL after the grace period
	local pid="$1" i
	STOP_STATUS=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < $2 * 10; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || STOP_STATUS=$?
}
cleanup() {
	stop_pid "$RELAY_PID" 5
	stop_pid "$PROSODY_PID" 5
	if [ -n "${AXRELAY_DEMO_KEEP:-}" ]; then
		say "Kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

wait_for_log() { # file, text, seconds
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# --- 2. Prosody -----------------------------------------------------------------
PDIR="$WORK/prosody"
mkdir -p "$PDIR/data" "$WORK/relay"
chmod 755 "$WORK"
C2S_PORT="$(free_port)"
COMPONENT_PORT="$(free_port)"
while [ "$COMPONENT_PORT" = "$C2S_PORT" ]; do COMPONENT_PORT="$(free_port)"; done
COMPONENT_SECRET="$(random_hex)"
sed -e "s|@DIR@|$PDIR|g" \
	-e "s|@C2S_PORT@|$C2S_PORT|g" \
	-e "s|@COMPONENT_PORT@|$COMPONENT_PORT|g" \
	-e "s|@COMPONENT@|$COMPONENT|g" \
	-e "s|@COMPONENT_SECRET@|$COMPONENT_SECRET|g" \
	-e "s|@MODULES_DISABLED@||g" \
	-e "s|@LOG_LEVEL@|info|g" \
	"$ROOT/scripts/prosody.cfg.lua.in" >"$PDIR/prosody.cfg.lua"
if grep -q '@[A-Z_]*@' "$PDIR/prosody.cfg.lua"; then
	die "unfilled placeholder in scripts/prosody.cfg.lua.in"
fi

AS_PROSODY=()
if [ "$(id -u)" = 0 ]; then
	# Prosody refuses to run as root: it runs as the prosody user.
	chown -R prosody:prosody "$PDIR"
	AS_PROSODY=(setpriv --reuid=prosody --regid=prosody --init-groups)
fi
for user in alice bob; do
	out="$(prosodyctl --config "$PDIR/prosody.cfg.lua" register "$user" localhost "pw-$user" 2>&1)" ||
		die "prosodyctl register $user failed: $out"
done
"${AS_PROSODY[@]}" prosody --config "$PDIR/prosody.cfg.lua" -F >"$PDIR/prosody.out" 2>&1 &
PROSODY_PID=$!
wait_for_log "$PDIR/prosody.log" "Activated service 'component' on [127.0.0.1]:$COMPONENT_PORT" 20 &&
	wait_for_log "$PDIR/prosody.log" "Activated service 'c2s' on [127.0.0.1]:$C2S_PORT" 5 || {
	cat "$PDIR/prosody.out" "$PDIR/prosody.log" >&2 2>/dev/null || true
	die "Prosody did not start"
}
say "Prosody 0.12: users on 127.0.0.1:$C2S_PORT, component port 127.0.0.1:$COMPONENT_PORT"

# --- 3. axrelay -------------------------------------------------------------------
say "Building axrelay…"
(cd "$ROOT" && cargo build --quiet --bin axrelay)
AXRELAY="$ROOT/target/debug/axrelay"
[ -n "${CARGO_TARGET_DIR:-}" ] && AXRELAY="$CARGO_TARGET_DIR/debug/axrelay"
cat >"$WORK/relay/axrelay.conf" <<EOF
[relay]
jid = $COMPONENT
server = 127.0.0.1
port = $COMPONENT_PORT
password = $COMPONENT_SECRET
runtime = smol
keepalive = 60

[hash]
secret = $("$AXRELAY" secret)
domain = $COMPONENT
identity = bare
resource = a

[local_storage]
path = $WORK/relay/pseudonyms.db
encrypt = $("$AXRELAY" secret)
EOF
"$AXRELAY" run -c "$WORK/relay/axrelay.conf" >"$WORK/relay/axrelay.log" 2>&1 &
RELAY_PID=$!
wait_for_log "$PDIR/prosody.log" "External component successfully authenticated" 30 || {
	cat "$WORK/relay/axrelay.log" >&2
	die "the relay did not connect to Prosody"
}
say "axrelay: connected as $COMPONENT"
say ""

# --- 4. the conversation ------------------------------------------------------------
status=0
timeout 120 "$PYTHON" "$ROOT/tests/e2e/client.py" demo --port "$C2S_PORT" \
	--relay "$COMPONENT" --user alice:pw-alice --user bob:pw-bob --timeout 15 || status=$?

stop_pid "$RELAY_PID" 5
RELAY_PID=""
if [ "$STOP_STATUS" != 0 ]; then
	say "axrelay exited with status $STOP_STATUS after SIGTERM" >&2
	status=1
fi
if [ "$status" = 0 ]; then
	say "Done: alice and bob talked without learning each other's address."
else
	say "The demo failed (status $status). Relay log:" >&2
	tail -n 30 "$WORK/relay/axrelay.log" >&2 || true
fi
exit "$status"
