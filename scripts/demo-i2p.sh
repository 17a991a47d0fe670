#!/usr/bin/env bash
# The darknet messenger on one machine: two Prosody servers whose domains are
# .b32.i2p names, federating over a private I2P network of five i2pd routers,
# and axrelay giving their users pseudonyms across that federation.
#
#   sudo scripts/demo-i2p.sh
#
# 1. installs i2pd, Prosody, prosody-modules (mod_onions) and slixmpp if
#    missing (Debian/Ubuntu, as root), and builds axrelay;
# 2. enters a network namespace of its own (unshare --net): the routers talk
#    over 198.18.0.1-5 on its loopback device, nothing leaves it, and
#    nothing on this machine sees it;
# 3. starts the routers (netid 77, two floodfills, one-hop tunnels), server
#    tunnels for server A, server B, the relay's domain R and A's component
#    port, and waits until their LeaseSets are published;
# 4. starts Prosody A (alice) and Prosody B (bob), each sending its s2s
#    traffic through its own router's SOCKS5 proxy (mod_onions), and axrelay
#    as A's component R, reaching A's component port through I2P;
# 5. alice and bob ask the relay for their pseudonyms and write to each other
#    across I2P; prints what each side saw, the timings, and what the i2pd
#    and Prosody logs show of the traffic.
#
# Configuration: scripts/i2p/ (the same files the end-to-end test uses);
# docs/I2P.md explains them. Set AXRELAY_DEMO_KEEP=1 to keep the temporary
# directory (configs and logs) for a look afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${AXRELAY_E2E_PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON=python3
I2PNET=("$PYTHON" "$ROOT/scripts/i2p/i2pnet.py")

say() { printf '%s\n' "$*"; }
die() { printf 'demo-i2p: %s\n' "$*" >&2; exit 1; }

if [ -z "${AXRELAY_I2P_NAMESPACE:-}" ]; then
	# --- 1. prerequisites, outside the namespace ------------------------------
	[ "$(id -u)" = 0 ] || die "run as root: it installs packages and creates a network namespace"
	PACKAGES=(i2pd prosody prosody-modules lua-bit32 python3-slixmpp)
	have_prereqs() {
		command -v i2pd >/dev/null && command -v prosody >/dev/null &&
			[ -f /usr/lib/prosody/modules/mod_onions/mod_onions.lua ] &&
			command -v unshare >/dev/null && command -v ip >/dev/null &&
			"$PYTHON" -c 'import slixmpp' 2>/dev/null
	}
	if ! have_prereqs; then
		command -v apt-get >/dev/null || die "needs: ${PACKAGES[*]} iproute2"
		say "Installing ${PACKAGES[*]} with apt-get…"
		export DEBIAN_FRONTEND=noninteractive
		active_before="$(systemctl is-active i2pd 2>/dev/null || true)"
		if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" iproute2 >/dev/null 2>&1; then
			apt-get update -qq
			apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" iproute2 >/dev/null
		fi
		# The package starts the system's i2pd, which joins the public
		# network; it was not running before, so stop it again.
		if [ "$active_before" != active ] && [ "$(systemctl is-active i2pd 2>/dev/null || true)" = active ]; then
			systemctl stop i2pd || true
			say "Stopped the system's i2pd service that the package started (systemctl start i2pd to run it)."
		fi
		have_prereqs || die "still missing something after apt-get: ${PACKAGES[*]} iproute2"
	fi
	command -v cargo >/dev/null || die "needs cargo (Rust) to build axrelay"
	say "Building axrelay…"
	(cd "$ROOT" && cargo build --quiet --bin axrelay)
	AXRELAY="${CARGO_TARGET_DIR:-$ROOT/target}/debug/axrelay"
	[ -x "$AXRELAY" ] || die "no $AXRELAY after cargo build"
	# --- 2. the network namespace -----------------------------------------------
	AXRELAY_I2P_NAMESPACE=1 AXRELAY="$AXRELAY" exec unshare --net -- "$BASH" "$0" "$@"
fi

# Inside the namespace from here on.
T0="$(date +%s.%N)"
elapsed() { awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
step() { printf '[%6ss] %s\n' "$(elapsed)" "$*"; }

ip link set lo up
for n in 1 2 3 4 5; do ip addr add "198.18.0.$n/32" dev lo; done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/axrelay-demo-i2p.XXXXXX")"
chmod 755 "$WORK"
declare -A PIDS=() # what runs, by name
alive() {
	local state
	state="$(ps -o stat= -p "$1" 2>/dev/null || true)"
	[ -n "$state" ] && [ "${state#Z}" = "$state" ]
}
cleanup() {
	local pid i
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		local any=0
		for pid in "${PIDS[@]}"; do alive "$pid" && any=1; done
		[ "$any" = 0 ] && break
		sleep 0.1
	done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
	if [ -n "${AXRELAY_DEMO_KEEP:-}" ]; then
		say "Kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for_log() { # file, text, seconds
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# --- 3. the routers ---------------------------------------------------------------
NETID=77
HOPS=1
SOCKS_A=4447 SOCKS_B=4448 SOCKS_RELAY=4449
C2S_A=5222 S2S_A=5269 COMPONENT_PORT=5347
C2S_B=5223 S2S_B=5270
router_dir() { printf '%s/r%s' "$WORK" "$1"; }
write_router() { # n, floodfill, socks port or 0
	local d
	d="$(router_dir "$1")"
	mkdir -p "$d/tunnels.d"
	sed -e "s|@DIR@|$d|g" -e "s|@ADDRESS@|198.18.0.$1|g" -e "s|@PORT@|$((12000 + $1))|g" \
		-e "s|@HTTP_PORT@|$((7070 + $1))|g" -e "s|@FLOODFILL@|$2|g" \
		-e "s|@SOCKS@|$([ "$3" != 0 ] && echo true || echo false)|g" -e "s|@SOCKS_PORT@|$3|g" \
		-e "s|@NETID@|$NETID|g" -e "s|@HOPS@|$HOPS|g" -e "s|@LOG_LEVEL@|info|g" \
		"$ROOT/scripts/i2p/i2pd.conf.in" >"$d/i2pd.conf"
	grep -q '@[A-Z_]*@' "$d/i2pd.conf" && die "unfilled placeholder in scripts/i2p/i2pd.conf.in"
	: >"$d/tunnels.conf"
}
server_tunnel() { # name, keys, target port, i2p port, [allowed b32]
	cat <<TUNNEL
[$1]
type = server
host = 127.0.0.1
port = $3
inport = $4
keys = $2
inbound.length = $HOPS
outbound.length = $HOPS
inbound.quantity = 5
outbound.quantity = 2
TUNNEL
	[ -z "${5:-}" ] || printf 'accesslist = %s\n' "$5"
	printf '\n'
}
start_router() {
	local d
	d="$(router_dir "$1")"
	i2pd --datadir="$d" --conf="$d/i2pd.conf" >>"$d/stdout" 2>&1 &
	PIDS[r$1]=$!
}
stop_pid() { # name: SIGTERM, SIGKILL after 10 s
	local pid="${PIDS[$1]:-}" i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "PIDS[$1]"
}
wait_file() { # path, seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

step "Starting a private I2P network: 5 i2pd routers, netid $NETID, $HOPS-hop tunnels"
for n in 1 2; do write_router "$n" true 0; done
write_router 3 false "$SOCKS_A"
write_router 4 false "$SOCKS_B"
write_router 5 false "$SOCKS_RELAY"
# The floodfills first; the others learn them from their router.info.
start_router 1
wait_file "$(router_dir 1)/router.info" 20 || die "r1 wrote no router.info"
"${I2PNET[@]}" seed "$(router_dir 1)/router.info" "$(router_dir 2)" "$(router_dir 3)" "$(router_dir 4)" "$(router_dir 5)" >/dev/null
start_router 2
wait_file "$(router_dir 2)/router.info" 20 || die "r2 wrote no router.info"
"${I2PNET[@]}" seed "$(router_dir 2)/router.info" "$(router_dir 3)" "$(router_dir 4)" "$(router_dir 5)" >/dev/null
# r5 is the relay's router: its SOCKS destination is the only one allowed to
# reach A's component port.
start_router 5
wait_file "$(router_dir 5)/socks.dat" 20 || die "r5 wrote no socks.dat"
RELAY_CLIENT="$("${I2PNET[@]}" b32 "$(router_dir 5)/socks.dat")"
{
	server_tunnel server-a server-a.dat "$S2S_A" 5269
	server_tunnel relay-domain relay-domain.dat "$S2S_A" 5269
	server_tunnel component component.dat "$COMPONENT_PORT" "$COMPONENT_PORT" "$RELAY_CLIENT"
} >"$(router_dir 3)/tunnels.conf"
server_tunnel server-b server-b.dat "$S2S_B" 5269 >"$(router_dir 4)/tunnels.conf"
start_router 3
start_router 4
for keys in 3/server-a.dat 3/relay-domain.dat 3/component.dat 4/server-b.dat 3/socks.dat 4/socks.dat; do
	wait_file "$WORK/r$keys" 20 || die "no $keys"
done
A="$("${I2PNET[@]}" b32 "$WORK/r3/server-a.dat")"
R="$("${I2PNET[@]}" b32 "$WORK/r3/relay-domain.dat")"
COMPONENT_HOST="$("${I2PNET[@]}" b32 "$WORK/r3/component.dat")"
B="$("${I2PNET[@]}" b32 "$WORK/r4/server-b.dat")"
step "server A  $A"
step "server B  $B"
step "relay R   $R"
step "A's component port  $COMPONENT_HOST:$COMPONENT_PORT"
"${I2PNET[@]}" wait-tunnels --timeout 120 7071 7072 7073 7074 7075 ||
	die "the routers built no tunnels"
# i2pd 2.45 publishes a LeaseSet when an inbound tunnel is added and drops
# that publish if the destination has no outbound tunnel yet; if all inbound
# tunnels come first, the LeaseSet stays unpublished until the tunnels are
# replaced (10 min). Restarting the router is quicker.
SOCKS_A_NAME="$("${I2PNET[@]}" b32 "$WORK/r3/socks.dat")"
SOCKS_B_NAME="$("${I2PNET[@]}" b32 "$WORK/r4/socks.dat")"
for round in 1 2 3 4; do
	missing="$("${I2PNET[@]}" wait-published --timeout 90 --floodfill 7071 7072 \
		--local "7073=$A" "7073=$R" "7073=$COMPONENT_HOST" "7074=$B" \
		--client "7073=$SOCKS_A_NAME" "7074=$SOCKS_B_NAME" "7075=$RELAY_CLIENT" 2>&1)" && break
	[ "$round" != 4 ] || die "the destinations were not published: $missing"
	for n in 3 4 5; do
		case "$n:${missing#*missing:}" in
		3:*"$A"* | 3:*"$R"* | 3:*"$COMPONENT_HOST"* | 3:*"$SOCKS_A_NAME"* | \
			4:*"$B"* | 4:*"$SOCKS_B_NAME"* | 5:*"$RELAY_CLIENT"*)
			step "$missing; restarting router r$n"
			stop_pid "r$n"
			start_router "$n"
			;;
		esac
	done
done
printf '%s\n' "$missing"
NETWORK_UP="$(elapsed)"
step "Network up: every destination's LeaseSet is on both floodfills"

# --- 4. Prosody A and B, the relay ---------------------------------------------------
COMPONENT_SECRET="$(random_hex)"
write_prosody() { # name, domain, c2s, s2s, socks, component port or "", component section
	local d="$WORK/prosody-$1"
	mkdir -p "$d/data"
	sed -e "s|@DIR@|$d|g" -e "s|@DOMAIN@|$2|g" -e "s|@C2S_PORT@|$3|g" -e "s|@S2S_PORT@|$4|g" \
		-e "s|@COMPONENT_PORT@|$6|g" -e "s|@SOCKS_PORT@|$5|g" -e "s|@LOG_LEVEL@|info|g" \
		-e "/^@COMPONENT_SECTION@$/{r $7" -e 'd}' \
		"$ROOT/scripts/i2p/prosody.cfg.lua.in" >"$d/prosody.cfg.lua"
	sed -i -e "s|@COMPONENT@|$R|g" -e "s|@COMPONENT_SECRET@|$COMPONENT_SECRET|g" "$d/prosody.cfg.lua"
	grep -q '@[A-Z_]*@' "$d/prosody.cfg.lua" && die "unfilled placeholder in scripts/i2p/"
	chown -R prosody:prosody "$d"
}
write_prosody a "$A" "$C2S_A" "$S2S_A" "$SOCKS_A" "$COMPONENT_PORT" "$ROOT/scripts/i2p/component.cfg.lua.in"
write_prosody b "$B" "$C2S_B" "$S2S_B" "$SOCKS_B" "" /dev/null
prosodyctl --config "$WORK/prosody-a/prosody.cfg.lua" register alice "$A" pw-alice >/dev/null
prosodyctl --config "$WORK/prosody-b/prosody.cfg.lua" register bob "$B" pw-bob >/dev/null
for p in a b; do
	setpriv --reuid=prosody --regid=prosody --init-groups \
		prosody --config "$WORK/prosody-$p/prosody.cfg.lua" -F >"$WORK/prosody-$p/prosody.out" 2>&1 &
	PIDS[prosody-$p]=$!
done
wait_for_log "$WORK/prosody-a/prosody.log" "Activated service 'component' on [127.0.0.1]:$COMPONENT_PORT" 20 &&
	wait_for_log "$WORK/prosody-b/prosody.log" "Activated service 's2s' on [127.0.0.1]:$S2S_B" 20 || {
	cat "$WORK"/prosody-*/prosody.log >&2 2>/dev/null || true
	die "Prosody did not start"
}
step "Prosody A and B up (c2s 127.0.0.1:$C2S_A and :$C2S_B)"

mkdir -p "$WORK/relay"
cat >"$WORK/relay/axrelay.conf" <<CONF
[relay]
jid = $R
server = $COMPONENT_HOST
port = $COMPONENT_PORT
password = $COMPONENT_SECRET
proxy = socks5://127.0.0.1:$SOCKS_RELAY
connect_timeout = 120
handshake_timeout = 120
keepalive = 60

[hash]
secret = $("$AXRELAY" secret)
domain = $R
identity = bare
resource = a

[local_storage]
path = $WORK/relay/pseudonyms.db
encrypt = $("$AXRELAY" secret)
CONF
"$AXRELAY" run -c "$WORK/relay/axrelay.conf" >"$WORK/relay/axrelay.log" 2>&1 &
PIDS[relay]=$!
wait_for_log "$WORK/prosody-a/prosody.log" "External component successfully authenticated" 180 || {
	tail -n 30 "$WORK/relay/axrelay.log" >&2
	die "the relay did not reach A's component port through I2P"
}
step "axrelay connected as $R through r5's SOCKS proxy and I2P"
say ""

# --- 5. the conversation ------------------------------------------------------------------
status=0
timeout 300 "$PYTHON" "$ROOT/scripts/i2p/conversation.py" --relay "$R" \
	--alice "alice@$A:pw-alice:$C2S_A" --bob "bob@$B:pw-bob:$C2S_B" --timeout 120 --since "$T0" || status=$?
say ""
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }
say "What crossed I2P:"
for n in 3 4 5; do
	say "  router r$n: $(count 'SOCKS: v5 connection success' "$WORK/r$n/i2pd.log") streams opened through its SOCKS proxy"
done
say "  Prosody A: $(grep -c "Outgoing s2s connection $R->$B complete\|Outgoing s2s connection $A->$B complete" "$WORK/prosody-a/prosody.log" || true) outgoing s2s to $B, $(count "Incoming s2s connection" "$WORK/prosody-a/prosody.log") incoming"
say "  Prosody B: $(count "Outgoing s2s connection $B->$R complete" "$WORK/prosody-b/prosody.log") outgoing s2s to $R, $(count "Incoming s2s connection" "$WORK/prosody-b/prosody.log") incoming"
say "Timings: network up after ${NETWORK_UP} s; the conversation above shows when each message arrived (seconds since the start)"
if [ "$status" = 0 ]; then
	say "Done: alice and bob talked across I2P without learning each other's address."
else
	say "The demo failed (status $status). Relay log:" >&2
	tail -n 30 "$WORK/relay/axrelay.log" >&2 || true
	tail -n 30 "$WORK/prosody-a/prosody.log" >&2 || true
	tail -n 30 "$WORK/prosody-b/prosody.log" >&2 || true
fi
exit "$status"
