#!/usr/bin/env bash
# scripts/demo-cluster.sh - two vnum nodes behind Kamailio's dispatcher, on
# loopback, for a person to watch (make demo-cluster).
#
# Starts, in a temporary folder: one store both nodes share (a PostgreSQL
# server of its own, from scripts/lib/pg.sh, or a SQLite file), two
# `vnum serve` nodes (node-1, node-2: their own SIP, RTP and admin ports),
# Kamailio with testdata/kamailio/dispatcher.cfg in front of them (round
# robin, failover, OPTIONS probes every second) and a SIPp carrier that
# answers every call. Then a SIPp PSTN caller (testdata/sipp/uac_trunk_nomedia.xml)
# places calls through the proxy, dialling X-E as the carrier's trunk would:
#
#   1. DEMO_CALLS calls with both nodes up: they alternate between them;
#   2. a call is put straight to node-1 and left up; node-1 is killed
#      (SIGKILL) during it; DEMO_CALLS more calls: node-2 takes them all
#      (the first one to reach node-1 waits for the proxy's timeout and
#      fails over), and the proxy marks node-1 down;
#   3. node-1 is started again: it closes its own open CDR (the call cut by
#      the kill) as interrupted, and the proxy's probe puts it back.
#
# After each step it prints which node took each call (the CDRs' node
# column), and at the end the month's one bill covering both nodes. It
# exits 1 if any call failed. Everything runs on 127.0.0.1 and is stopped
# by PID; the folder is removed unless DEMO_KEEP=1.
#
# Knobs (environment):
#   DEMO_STORE   the shared store: postgres (a throwaway server in the
#                folder, on 127.0.0.1, as several machines would share
#                one) or sqlite (one SQLite file in WAL mode, which
#                several processes on one machine can share)  (postgres)
#   DEMO_CALLS   calls per step                            (4)
#   DEMO_HOLD_MS how long each call stays up, ms           (1000)
#   DEMO_KEEP    keep the folder and its logs              (0)
#   VNUMTEST_BIN use this vnum binary instead of building one
#
# Needs kamailio (Debian package kamailio), sipp (sip-tester) and, for
# DEMO_STORE=postgres, PostgreSQL's server programs (postgresql); it
# installs nothing and says what is missing.
set -euo pipefail

STORE=${DEMO_STORE:-postgres}
CALLS=${DEMO_CALLS:-4}
HOLD_MS=${DEMO_HOLD_MS:-1000}
KEEP=${DEMO_KEEP:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCEN="$ROOT/testdata/sipp"
# shellcheck source=lib/pg.sh
. "$ROOT/scripts/lib/pg.sh"
KAMCFG="$ROOT/testdata/kamailio/dispatcher.cfg"

die() { echo "demo-cluster: $*" >&2; exit 1; }

case "$CALLS" in '' | *[!0-9]* | 0) die "DEMO_CALLS must be a number above 0, got '$CALLS'" ;; esac
case "$HOLD_MS" in '' | *[!0-9]*) die "DEMO_HOLD_MS must be a number of ms, got '$HOLD_MS'" ;; esac

# What is missing, with the Debian packages that bring it.
MISSING=() PACKAGES=()
need() { command -v "$1" >/dev/null || { MISSING+=("$1"); PACKAGES+=("$2"); }; }
need kamailio kamailio
need sipp sip-tester
need ss iproute2
need timeout coreutils
[ -n "${VNUMTEST_BIN:-}" ] || need go golang-go
case "$STORE" in
postgres) pg_find 2>/dev/null || { MISSING+=(initdb/pg_ctl/postgres); PACKAGES+=(postgresql); } ;;
sqlite) ;;
*) die "unknown DEMO_STORE '$STORE' (postgres or sqlite)" ;;
esac
if [ ${#MISSING[@]} -gt 0 ]; then
	echo "demo-cluster: missing ${MISSING[*]}; on Debian: apt-get install ${PACKAGES[*]}" >&2
	exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vnum-demo-cluster.XXXXXX")
PIDS=()

# stop PID: SIGTERM, then SIGKILL after 5 s; only ever this script's own
# children, by PID.
stop() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do stop "$pid"; done
	# The store last, once no node uses it.
	pg_stop || true
	if [ "$KEEP" = 1 ]; then
		echo "demo-cluster: logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two nodes' 200 RTP ports each and a few more: four blocks of 128.
PORTS_BLOCKS=4
. "$ROOT/scripts/lib/ports.sh"
# store_setup: STORE_DRIVER and STORE_DSN, the store both nodes share.
store_setup() {
	case "$STORE" in
	postgres)
		echo "demo-cluster: starting PostgreSQL ($PG_BIN)"
		pg_start "$WORK/pg" || die "PostgreSQL did not start (its log: $WORK/pg/postgres.log)"
		STORE_DRIVER=postgres
		STORE_DSN=$PG_DSN
		;;
	sqlite)
		STORE_DRIVER=sqlite
		STORE_DSN="$WORK/cluster.db"
		;;
	esac
}
store_setup

if [ -n "${VNUMTEST_BIN:-}" ]; then
	VNUM=$VNUMTEST_BIN
else
	echo "demo-cluster: building vnum"
	(cd "$ROOT" && go build -o "$WORK/vnum" ./cmd/vnum) || die "go build ./cmd/vnum failed"
	VNUM="$WORK/vnum"
fi

# Only the config files configure vnum: no VNUM_ variables reach it.
NOVNUM=()
for v in $(compgen -e); do
	case "$v" in VNUM_*) NOVNUM+=(-u "$v") ;; esac
done

PROXY_PORT=$(free_ports 1); take "$PROXY_PORT" 1
CARRIER_PORT=$(free_ports 1); take "$CARRIER_PORT" 1
CARRIER_MEDIA=$(free_ports 4); take "$CARRIER_MEDIA" 4
CALLER_PORT=$(free_ports 1); take "$CALLER_PORT" 1
CALLER_MEDIA=$(free_ports 4); take "$CALLER_MEDIA" 4
CUT_PORT=$(free_ports 1); take "$CUT_PORT" 1
CUT_MEDIA=$(free_ports 4); take "$CUT_MEDIA" 4
declare -A SIP ADMIN CONFIG PID
for n in 1 2; do
	SIP[$n]=$(free_ports 1); take "${SIP[$n]}" 1
	ADMIN[$n]=$(free_ports 1); take "${ADMIN[$n]}" 1
	RTP=$(free_ports 200); take "$RTP" 200
	CONFIG[$n]="$WORK/node-$n.yaml"
	# Each node: its own node.id, SIP, RTP and admin ports; the same store;
	# the proxy's address (127.0.0.1) as the trunk's source.
	cat >"${CONFIG[$n]}" <<EOF
# written by scripts/demo-cluster.sh
node:
  id: node-$n
sip:
  listen: [udp://127.0.0.1:${SIP[$n]}]
media:
  ip: 127.0.0.1
  rtp_ports: "$RTP-$((RTP + 199))"
trunk:
  outbound: "sip:127.0.0.1:$CARRIER_PORT;transport=udp"
  keepalive: 0s   # the carrier is a SIPp scenario that takes INVITEs only
  inbound_cidrs: [127.0.0.1/32]
  number_format: national
calls:
  drain_timeout: 2s
billing:
  timezone: UTC
store:
  driver: $STORE_DRIVER
  dsn: "$STORE_DSN"
admin:
  listen: 127.0.0.1:${ADMIN[$n]}
EOF
done

vnum() { env "${NOVNUM[@]}" "$VNUM" --config "${CONFIG[1]}" "$@"; }

# start_node N [LOG]: vnum serve for node N (env execs vnum, so $! is vnum).
start_node() {
	local n=$1 log=${2:-$WORK/node-$1.log}
	env "${NOVNUM[@]}" "$VNUM" --config "${CONFIG[$n]}" serve >"$log" 2>&1 &
	PID[$n]=$!
	PIDS+=($!)
	wait_listening "${SIP[$n]}" "${PID[$n]}" "node-$n" "$log"
}

HOST=17000000001
vnum merchant add m1 --name "Demo Shop" >/dev/null
vnum number add "$HOST" >/dev/null
start_node 1
start_node 2
BINDING=$(vnum binding create --merchant m1 --order demo-1 --consignee 13800138000 \
	--order-status shipped --format json)
EXT=$(printf '%s' "$BINDING" | grep -o '"extension": *"[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
[ -n "$EXT" ] || die "no extension in: $BINDING"

printf '1 sip:127.0.0.1:%s\n1 sip:127.0.0.1:%s\n' "${SIP[1]}" "${SIP[2]}" >"$WORK/dispatcher.list"
kamailio -f "$KAMCFG" -DD -E -w "$WORK" -P "$WORK/kamailio.pid" \
	-A "LISTEN=udp:127.0.0.1:$PROXY_PORT" -A "DS_LIST=\"$WORK/dispatcher.list\"" \
	-A DS_PING=1 -A FR_TIMER=2000 >"$WORK/kamailio.log" 2>&1 &
KAM_PID=$!
PIDS+=($KAM_PID)
wait_listening "$PROXY_PORT" "$KAM_PID" kamailio "$WORK/kamailio.log"

cp "$SCEN/uas_answer.xml" "$SCEN/uac_trunk_nomedia.xml" "$WORK/"
sipp -sf "$WORK/uas_answer.xml" -i 127.0.0.1 -p "$CARRIER_PORT" \
	-mi 127.0.0.1 -mp "$CARRIER_MEDIA" -nostdin \
	-trace_err -error_file "$WORK/carrier_errors.log" >"$WORK/carrier_screen.log" 2>&1 &
CARRIER_PID=$!
PIDS+=($CARRIER_PID)
wait_listening "$CARRIER_PORT" "$CARRIER_PID" "the sipp carrier" "$WORK/carrier_screen.log"

echo "demo-cluster: store $STORE_DRIVER ($STORE_DSN), node-1 on udp/${SIP[1]}, node-2 on udp/${SIP[2]},"
echo "  Kamailio's dispatcher on udp/$PROXY_PORT, carrier on udp/$CARRIER_PORT; calls dial $HOST-$EXT"

FAILED=0
# calls TAG: CALLS PSTN calls through the proxy, one after another, with
# Call-IDs beginning with TAG.
calls() {
	local tag=$1 code
	set +e
	timeout --kill-after=10 $((CALLS * (HOLD_MS / 1000 + 5) + 30)) \
		sipp -sf "$WORK/uac_trunk_nomedia.xml" "127.0.0.1:$PROXY_PORT" \
		-i 127.0.0.1 -p "$CALLER_PORT" -mi 127.0.0.1 -mp "$CALLER_MEDIA" \
		-s "$HOST-$EXT" -key caller 13900139000 -cid_str "$tag-%u-%p@%s" \
		-d "$HOLD_MS" -m "$CALLS" -l 1 -r 10 -timeout 60s -timeout_error \
		-trace_err -error_file "$WORK/${tag}_errors.log" -nostdin >"$WORK/${tag}_screen.log" 2>&1
	code=$?
	set -e
	if [ "$code" != 0 ]; then
		echo "demo-cluster: sipp reported failed calls (exit $code); see $WORK/${tag}_errors.log" >&2
		FAILED=1
		KEEP=1
	fi
}
# show TAG: which node took each call of TAG (CSV columns by name).
show() {
	local tag=$1
	for _ in $(seq 1 50); do
		vnum cdr list --format csv >"$WORK/cdrs.csv"
		awk -F, -v tag="$tag-" -v want="$CALLS" '
			NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
			index($col["call_id"], tag) == 1 && $col["ended_at"] != "" { n++ }
			END { exit !(n >= want) }' "$WORK/cdrs.csv" && break
		sleep 0.2
	done
	show_rows "$tag"
}
# show_rows TAG: the rows of TAG in cdrs.csv.
show_rows() {
	awk -F, -v tag="$1-" '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		index($col["call_id"], tag) == 1 {
			d = $col["disposition"]; if (d == "") d = "(open)"
			printf "  %-28s %-7s %-11s talk %ss\n", $col["call_id"], $col["node"], d, $col["talk_seconds"]
		}' "$WORK/cdrs.csv"
}

echo
echo "== $CALLS calls through the proxy, both nodes up"
calls both
show both

echo
echo "== a call straight to node-1, left up; node-1 killed (SIGKILL, pid ${PID[1]}) during it; $CALLS more calls"
# This caller's BYE will go unanswered: it is stopped once node-1 is gone.
sipp -sf "$WORK/uac_trunk_nomedia.xml" "127.0.0.1:${SIP[1]}" \
	-i 127.0.0.1 -p "$CUT_PORT" -mi 127.0.0.1 -mp "$CUT_MEDIA" \
	-s "$HOST-$EXT" -key caller 13900139000 -cid_str "cut-%u-%p@%s" \
	-d 600000 -m 1 -timeout 120s -nostdin >"$WORK/cut_screen.log" 2>&1 &
CUT_PID=$!
PIDS+=($CUT_PID)
for _ in $(seq 1 100); do
	vnum cdr list --format csv >"$WORK/cdrs.csv"
	awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		index($col["call_id"], "cut-") == 1 && $col["answered_at"] != "" && $col["ended_at"] == "" { found = 1 }
		END { exit !found }' "$WORK/cdrs.csv" && break
	sleep 0.1
done
show_rows cut
kill -KILL "${PID[1]}"
wait "${PID[1]}" 2>/dev/null || true
stop "$CUT_PID"
calls failover
show failover
grep -h 'vnum-dispatcher: \(node down\|.*did not answer\|failover\)' "$WORK/kamailio.log" | sed 's/^.*vnum-dispatcher: /  kamailio: /' || true

echo
echo "== node-1 started again"
start_node 1 "$WORK/node-1-restarted.log"
for _ in $(seq 1 100); do
	grep -q "vnum-dispatcher: node up" "$WORK/kamailio.log" && break
	sleep 0.1
done
grep -h 'vnum-dispatcher: node up' "$WORK/kamailio.log" | sed 's/^.*vnum-dispatcher: /  kamailio: /' || echo "  kamailio has not probed node-1 back yet"
echo "  the call cut by the kill, closed by node-1 as it started:"
vnum cdr list --format csv >"$WORK/cdrs.csv"
show_rows cut
calls again
show again

MONTH=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } { print substr($col["started_at"], 1, 7); exit }' "$WORK/cdrs.csv")
echo
echo "== the bill of $MONTH (billing.timezone UTC): one bill, every node's calls"
vnum bill --merchant m1 --month "$MONTH"
echo
echo "calls by node:"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next } { n[$col["node"]]++ } END { for (k in n) printf "  %s %d\n", k, n[k] }' "$WORK/cdrs.csv" | sort

if [ "$FAILED" = 1 ]; then
	die "some calls failed"
fi
echo "demo-cluster: every call went through"
