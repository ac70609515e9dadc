#!/usr/bin/env bash
# scripts/bench.sh - SIPp load test of vnum on loopback (make bench).
#
# Builds vnum, starts it with a SQLite store in a temporary folder and a
# sipp carrier that answers every call and echoes its RTP
# (testdata/sipp/uas_answer.xml, -rtp_echo), seeds one merchant, account,
# host number and binding, then drives softphone calls dialled as X-E
# (testdata/sipp/uac_direct.xml: digest auth, PCMA from g711a.pcap for the
# call's length, BYE) at rising rates. For each rate it prints the calls
# attempted, what sipp saw (vnum answers leg A before it calls B, so a sipp
# success alone does not mean B was reached) and what the CDRs say: a call
# succeeded when sipp completed it AND its CDR ended as answered. At the
# end it prints the highest rate that had no failed call.
#
# Everything runs on 127.0.0.1, is bounded in calls and time, and what the
# script starts it stops by PID. sipp's play_pcap_audio needs root or
# CAP_NET_RAW.
#
# BENCH_MODE chooses what runs (one or more, in order, on one vnum):
#   direct    the ramp above (the default)
#   ivr       the same ramp, callers dialling X and keying E by RFC 4733
#             (testdata/sipp/uac_dtmf.xml.tmpl rendered by scripts/tmpl,
#             BENCH_IVR_WAIT_MS into the prompt, then the talk time)
#   overload  one burst far above what vnum holds (BENCH_OVERLOAD_RATE for
#             BENCH_OVERLOAD_SECS, testdata/sipp/uac_overload.xml): each
#             attempt is counted as completed (sipp finished it and its CDR
#             is answered), refused (503 + Retry-After, README "SIP behaviour in short") or failed
#             (anything else), with the p95 of the time to the 503 and
#             vnum_calls_refused_total by reason from the admin /metrics;
#             at the same time a second SIPp places BENCH_OVERLOAD_STREAM_RATE
#             calls/s for as long from 127.0.0.2 (the same softphone
#             account on another address: a light source beside the
#             flood, which a saturated vnum still takes, README "SIP behaviour in short"), counted
#             apart
#   compare   vnum side by side with Kamailio + rtpengine, the proxy and
#             media relay a telecom engineer would build instead
#             (testdata/kamailio/vn-proxy.cfg: X-E looked up in a table of
#             the same bindings, R-URI rewritten to B at the carrier,
#             topology hiding, media anchored in rtpengine). Calls come
#             from a trunk source, no digest (testdata/sipp/uac_trunk.xml),
#             over BENCH_BINDINGS bindings, 1 s long by default, PCMA from
#             the pcap echoed by the same carrier. At each rate the step
#             runs against both, in alternating order, and prints calls
#             offered, completed, failed and the CPU seconds each system
#             used (vnum; Kamailio's processes + rtpengine, from
#             /proc/PID/stat before and after the step), CPU per call and
#             its ratio vnum/Kamailio; at the end the highest rate each
#             held with 0 failed calls
#   media     concurrent long calls with media: at each of
#             BENCH_MEDIA_LEVELS, that many trunk calls up at once
#             (testdata/sipp/uac_trunk_long.xml: g711a.pcap played in a
#             loop), the carrier echoing; prints the share of the RTP
#             packets vnum read that it relayed to the other leg, both
#             directions (vnum_rtp_packets_received_total and
#             _relayed_total from the admin /metrics, after the level less
#             before, with the drops by reason), next to SIPp's count
#             (the callers' packets the carrier echoed), and vnum's RSS
#             above its idle RSS, per call
#   mediago   the media levels again with the project's own generator
#             (scripts/loadgen: one SIP and one RTP socket per side,
#             batched send and receive) as both the callers and the
#             carrier, so that levels SIPp cannot drive can be seen: at
#             each of BENCH_MEDIA_LEVELS it sets up that many calls, plays
#             G.711 both ways for BENCH_MEDIA_HOLD_S, and prints every
#             packet each side sent and got (relayed %, over the calls'
#             whole life), vnum's CPU, the machine's softirq and its CPU
#             per relayed packet (less the generator's own) during the hold
#   stores    the direct ramp on SQLite and on PostgreSQL in one run: for
#             each rate, one vnum on a SQLite file and one on a throwaway
#             PostgreSQL (scripts/lib/pg.sh: initdb in the work folder,
#             127.0.0.1 only), in alternating order; prints the calls
#             each completed and failed per rate, the highest rate each
#             held with 0 failed calls, and their ratio (needs Debian's
#             postgresql package)
#   events    the load test of call events: the direct ramp at one rate
#             (BENCH_EVENTS_RATE), BENCH_EVENTS_ROUNDS times with events
#             off (the merchant has no webhook: no event is written) and
#             on (its webhook is scripts/eventsink, which checks each
#             delivery's signature, order and id, and answers 204 after
#             BENCH_EVENTS_DELAY_MS), in alternating order, each on a vnum
#             of its own; prints per run the calls succeeded and failed,
#             and with events on vnum_events_pending each second (sampled
#             every 0.5 s), the most seen during the calls, how long after
#             the calls the outbox was empty, and what the receiver saw
#             (delivered, duplicates, out of order, bad signatures, most
#             requests at once); then calls succeeded off and on per round
#             (needs Go, to build the receiver)
# compare and media configure vnum with a trunk source (127.0.0.1/32 in
# trunk.inbound_cidrs), which the softphone's digest calls of direct, ivr
# and overload cannot share: asked for together, the script runs itself
# twice, on two vnums, the second run appending to the same results.
# BENCH_STRICT=1 makes any failed call (direct: at any rate tried;
# overload: any attempt neither completed nor refused, and any call of
# the second stream not completed, refusals included unless
# BENCH_MAX_ACTIVE is set, which refuses every source alike) exit 1 (make
# bench-smoke in CI; compare: a failed call on either system; media: a
# failed call at any level).
#
# Knobs (environment):
#   BENCH_MODE          direct, ivr, overload, compare, media, stores,
#                       events, or several (direct)
#   BENCH_EVENTS_RATE   events: calls/s of each run      (200)
#   BENCH_EVENTS_ROUNDS events: rounds of one run off and one on (2)
#   BENCH_EVENTS_DELAY_MS events: the receiver's time to answer (200)
#   BENCH_EVENTS_DRAIN_S events: how long to wait for the outbox to
#                       drain after the calls               (300)
#   BENCH_STORE         vnum's store: sqlite, or postgres (a throwaway
#                       server in the work folder, scripts/lib/pg.sh) (sqlite)
#   BENCH_IVR_WAIT_MS   ivr: from the answer to the first key (1000)
#   BENCH_STRICT        exit 1 on a failed call          (0)
#   BENCH_OUT           write results.csv and results.svg (calls
#                       completed / refused / failed per run) here (unset)
#   BENCH_OVERLOAD_RATE offered calls/s of the burst     (3000)
#   BENCH_OVERLOAD_SECS seconds of offered load          (8)
#   BENCH_OVERLOAD_CALL_MS talk time of each call, ms    (1000)
#   BENCH_OVERLOAD_STREAM_RATE overload: calls/s of the second stream,
#                       from 127.0.0.2 (20; 0: none)
#   BENCH_MAX_ACTIVE    vnum's calls.max_active          (unset: vnum's default;
#                       with compare or media asked for too, not theirs)
#   BENCH_RATES         call rates to try, calls/s      (10 20 50 100 200)
#   BENCH_CALLS_FACTOR  calls per rate = rate x this    (10)
#   BENCH_CALL_MS       talk time of each call, ms      (3000; compare 1000)
#   BENCH_STOP_ON_FAIL  stop after the first failing rate (1)
#   BENCH_KEEP          keep the work folder and its logs (0)
#   BENCH_PROFILE       seconds of CPU profile to take from vnum (admin.pprof)
#                       during each ramp rate and each compare step of vnum,
#                       kept as cpu-MODE-RATE.pprof in
#                       the work folder (implies BENCH_KEEP=1) (off)
#   BENCH_RTP_PORTS     vnum's media.rtp_ports           (33000-48999)
#   BENCH_MEDIA         1: callers send PCMA and the carrier echoes it;
#                       0: no RTP (signalling and store only) (1)
#   BENCH_BINDINGS      compare, media: bindings the calls spread over (10)
#   BENCH_RTPENGINE_PORTS compare: rtpengine's RTP ports, as many as vnum's (49000-64999)
#   BENCH_COMPARE_ONLY  compare: run the steps of one system only, vnum or
#                       kamailio (both), to time one build against another
#   BENCH_MEDIA_LEVELS  media: calls up at once, one level a step
#                       (50 100 200 400)
#   BENCH_MEDIA_RATE    media: new calls/s while a level fills (50)
#   BENCH_MEDIA_HOLD_S  media: seconds all calls of a level are up (10)
#   BENCH_APPEND        1: add to BENCH_OUT/results.csv, do not start it
#                       afresh (the second of two runs, above) (0)
#   VNUMTEST_BIN        use this vnum binary instead of building one
#   VNUMTEST_SIPP_PCAPS folder of sip-tester's pcaps     (/usr/share/sip-tester)
set -euo pipefail

RATES=${BENCH_RATES:-10 20 50 100 200}
FACTOR=${BENCH_CALLS_FACTOR:-10}
MODES=${BENCH_MODE:-direct}
# TRUNK: the run's calls come from a trunk source (compare, media).
TRUNK=0
case " $MODES " in *" compare "* | *" media "* | *" mediago "*) TRUNK=1 ;; esac
if [ "$TRUNK" = 1 ]; then
	CALL_MS=${BENCH_CALL_MS:-1000}
else
	CALL_MS=${BENCH_CALL_MS:-3000}
fi
BINDINGS=${BENCH_BINDINGS:-10}
RTPE_PORTS=${BENCH_RTPENGINE_PORTS:-49000-64999}
MEDIA_LEVELS=${BENCH_MEDIA_LEVELS:-50 100 200 400}
MEDIA_RATE=${BENCH_MEDIA_RATE:-50}
MEDIA_HOLD_S=${BENCH_MEDIA_HOLD_S:-10}
STOP_ON_FAIL=${BENCH_STOP_ON_FAIL:-1}
COMPARE_ONLY=${BENCH_COMPARE_ONLY:-}
case "$COMPARE_ONLY" in "" | vnum | kamailio) ;; *) echo "bench: BENCH_COMPARE_ONLY is vnum or kamailio" >&2; exit 2 ;; esac
KEEP=${BENCH_KEEP:-0}
PROFILE=${BENCH_PROFILE:-}
PPROF=false
if [ -n "$PROFILE" ]; then KEEP=1 PPROF=true; fi
PCAPS=${VNUMTEST_SIPP_PCAPS:-/usr/share/sip-tester}
MEDIA=${BENCH_MEDIA:-1}
OUT=${BENCH_OUT:-}
if [ -n "$OUT" ]; then
	mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
fi
IVR_WAIT_MS=${BENCH_IVR_WAIT_MS:-1000}
STRICT=${BENCH_STRICT:-0}
OVL_RATE=${BENCH_OVERLOAD_RATE:-3000}
OVL_SECS=${BENCH_OVERLOAD_SECS:-8}
OVL_CALL_MS=${BENCH_OVERLOAD_CALL_MS:-1000}
OVL_STREAM_RATE=${BENCH_OVERLOAD_STREAM_RATE:-20}
OVL_STREAM_IP=127.0.0.2
MAX_ACTIVE=${BENCH_MAX_ACTIVE:-}
SOFT_MODES="" TRUNK_MODES=""
for m in $MODES; do
	case "$m" in
	direct | ivr | overload) SOFT_MODES="$SOFT_MODES${SOFT_MODES:+ }$m" ;;
	compare | media | mediago) TRUNK_MODES="$TRUNK_MODES${TRUNK_MODES:+ }$m" ;;
	stores) STORES_MODE=1 ;;
	events) EVENTS_MODE=1 ;;
	*) echo "bench: unknown BENCH_MODE $m (direct, ivr, overload, compare, media, mediago, stores, events)" >&2; exit 2 ;;
	esac
done
STORE=${BENCH_STORE:-sqlite}
case "$STORE" in sqlite | postgres) ;; *) echo "bench: BENCH_STORE must be sqlite or postgres, got $STORE" >&2; exit 2 ;; esac

# stores: the direct ramp once per store and rate, the order alternating
# so that the machine's noise hits both, each on a vnum of its own; then
# the two side by side. The other modes asked for run after it.
if [ "${STORES_MODE:-0}" = 1 ]; then
	SELF="${BASH_SOURCE[0]}"
	rc=0 i=0 rows=""
	echo "== stores: the direct ramp on SQLite and on PostgreSQL, alternating per rate"
	if [ -n "${BENCH_OUT:-}" ] && [ "${BENCH_APPEND:-0}" != 1 ]; then
		rm -f "$BENCH_OUT/results.csv" # every run below appends to it
	fi
	for rate in $RATES; do
		order="sqlite postgres"
		[ $((i % 2)) = 1 ] && order="postgres sqlite"
		i=$((i + 1))
		for st in $order; do
			out=$(BENCH_MODE=direct BENCH_STORE=$st BENCH_RATES=$rate BENCH_STOP_ON_FAIL=0 BENCH_STRICT=0 \
				BENCH_APPEND=${BENCH_OUT:+1} "$SELF" 2>&1) || rc=$?
			# the ramp's row: "rate attempted ok ko | cdr... | succeeded failed exit secs"
			row=$(printf '%s\n' "$out" | awk -v r="$rate" '$1 == r && $5 == "|" { print $(NF - 3), $(NF - 2) }' | tail -1)
			[ -n "$row" ] || { printf '%s\n' "$out" | tail -5 >&2; row="0 $((rate * FACTOR))"; rc=1; }
			rows="$rows$st $rate $row
"
			echo "   $st at $rate calls/s: succeeded failed = $row"
		done
	done
	printf '%s' "$rows" | awk '
		{ ok[$1, $2] = $3; ko[$1, $2] = $4; if (!seen[$2]++) rates[++n] = $2 }
		END {
			printf "%8s | %10s %8s | %10s %8s\n", "calls/s", "sqlite ok", "failed", "postgres ok", "failed"
			for (k = 1; k <= n; k++) {
				r = rates[k]
				printf "%8s | %10d %8d | %10d %8d\n", r, ok["sqlite", r], ko["sqlite", r], ok["postgres", r], ko["postgres", r]
				if (ko["sqlite", r] == 0 && ok["sqlite", r] > 0) hs = r
				if (ko["postgres", r] == 0 && ok["postgres", r] > 0) hp = r
			}
			printf "highest rate with 0 failed calls: sqlite %d calls/s, postgres %d calls/s", hs, hp
			if (hs > 0) printf " (postgres/sqlite %.2f)", hp / hs
			printf "\n"
		}'
	rest=""
	for m in $MODES; do [ "$m" = stores ] || rest="$rest${rest:+ }$m"; done
	if [ -n "$rest" ]; then
		BENCH_MODE="$rest" BENCH_APPEND=${BENCH_OUT:+1} "$SELF" || { r=$?; [ "$rc" = 0 ] && rc=$r; }
	fi
	exit "$rc"
fi
# events: the direct ramp at one rate with events off and on (a webhook
# that answers slowly), alternating, each on a vnum of its own; then the
# runs side by side. The other modes asked for run after it.
if [ "${EVENTS_MODE:-0}" = 1 ]; then
	SELF="${BASH_SOURCE[0]}"
	rc=0 rows=""
	EV_RATE=${BENCH_EVENTS_RATE:-200}
	EV_ROUNDS=${BENCH_EVENTS_ROUNDS:-2}
	echo "== events: direct calls at $EV_RATE calls/s, events off and on (a receiver answering in" \
		"${BENCH_EVENTS_DELAY_MS:-200} ms), alternating"
	if [ -n "${BENCH_OUT:-}" ] && [ "${BENCH_APPEND:-0}" != 1 ]; then
		rm -f "$BENCH_OUT/results.csv" # every run below appends to it
	fi
	for i in $(seq 1 "$EV_ROUNDS"); do
		order="off on"
		[ $((i % 2)) = 0 ] && order="on off"
		for ev in $order; do
			out=$(BENCH_MODE=direct BENCH_RATES=$EV_RATE BENCH_EVENTS_HOOK=$ev BENCH_STOP_ON_FAIL=0 BENCH_STRICT=0 \
				BENCH_APPEND=${BENCH_OUT:+1} "$SELF" 2>&1) || rc=$?
			row=$(printf '%s\n' "$out" | awk -v r="$EV_RATE" '$1 == r && $5 == "|" { print $(NF - 3), $(NF - 2) }' | tail -1)
			[ -n "$row" ] || { printf '%s\n' "$out" | tail -5 >&2; row="0 $((EV_RATE * FACTOR))"; rc=1; }
			rows="$rows$i $ev $row
"
			echo "   round $i, events $ev: succeeded failed = $row"
			printf '%s\n' "$out" | grep '^events:' | sed 's/^/   /' || true
		done
	done
	printf '%s' "$rows" | awk '
		{ ok[$1, $2] = $3; ko[$1, $2] = $4; if ($1 > n) n = $1 }
		END {
			printf "%6s | %10s %8s | %10s %8s\n", "round", "off ok", "failed", "on ok", "failed"
			for (r = 1; r <= n; r++) {
				printf "%6d | %10d %8d | %10d %8d\n", r, ok[r, "off"], ko[r, "off"], ok[r, "on"], ko[r, "on"]
				so += ok[r, "off"]; son += ok[r, "on"]
			}
			if (so > 0) printf "calls succeeded with events on / off: %.3f\n", son / so
		}'
	rest=""
	for m in $MODES; do [ "$m" = events ] || rest="$rest${rest:+ }$m"; done
	if [ -n "$rest" ]; then
		BENCH_MODE="$rest" BENCH_APPEND=${BENCH_OUT:+1} "$SELF" || { r=$?; [ "$rc" = 0 ] && rc=$r; }
	fi
	exit "$rc"
fi
# The softphone's digest calls and a trunk source on the same address do
# not mix on one vnum: both kinds asked for, this script runs itself once
# for each, the second appending to the first's results.
if [ -n "$SOFT_MODES" ] && [ -n "$TRUNK_MODES" ]; then
	SELF="${BASH_SOURCE[0]}"
	rc=0
	BENCH_MODE="$SOFT_MODES" "$SELF" || rc=$?
	# calls.max_active is the overload burst's knob: the trunk calls get
	# vnum's default
	BENCH_MODE="$TRUNK_MODES" BENCH_APPEND=1 BENCH_MAX_ACTIVE="" "$SELF" || { r=$?; [ "$rc" = 0 ] && rc=$r; }
	exit "$rc"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCEN="$ROOT/testdata/sipp"

die() { echo "bench: $*" >&2; exit 1; }

command -v sipp >/dev/null || die "sipp is not on PATH (apt-get install sip-tester)"
command -v timeout >/dev/null || die "timeout (coreutils) is not on PATH"
[ -r "$PCAPS/g711a.pcap" ] || die "no g711a.pcap in $PCAPS (set VNUMTEST_SIPP_PCAPS)"
case " $MODES " in *" compare "*)
	if [ "$COMPARE_ONLY" != vnum ]; then
		command -v kamailio >/dev/null || die "compare: kamailio is not on PATH (apt-get install kamailio)"
		command -v rtpengine >/dev/null || die "compare: rtpengine is not on PATH (apt-get install rtpengine-daemon)"
	fi
	;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "bench: not root: sipp's play_pcap_audio needs CAP_NET_RAW, calls may fail" >&2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vnum-bench.XXXXXX")
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "${PG_PID:-}" ]; then
		pg_stop || true
	fi
	if [ "$KEEP" = 1 ]; then
		echo "bench: logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$ROOT/scripts/lib/ports.sh"

SIP_PORT=$(free_ports 1); take "$SIP_PORT" 1
CARRIER_PORT=$(free_ports 1); take "$CARRIER_PORT" 1
ADMIN_PORT=$(free_ports 1); take "$ADMIN_PORT" 1
CARRIER_MEDIA=$(free_ports 4); take "$CARRIER_MEDIA" 4
UAC_IP=127.0.0.1
UAC_PORT=$(free_ports 1); take "$UAC_PORT" 1
UAC_MEDIA=$(free_ports 4); take "$UAC_MEDIA" 4
# overload's second stream, on another loopback address (Linux routes all
# of 127.0.0.0/8 to lo, so vnum's answers reach it)
UAC2_PORT=$(free_ports 1); take "$UAC2_PORT" 1
UAC2_MEDIA=$(free_ports 4); take "$UAC2_MEDIA" 4
# vnum's relay: two ports (RTP, RTCP) per leg, two legs per call, each
# pair kept from new calls for a second after its call (media's drain): at
# 1,200 calls/s of 1 s some 5,000 pairs are open or draining at once, all
# that 10,000 ports hold, so the range is 16,000 ports (above the blocks
# scripts/lib/ports.sh hands out, below rtpengine's). Like rtpengine's, it
# lies in the kernel's ephemeral range: on a machine where other programs
# open UDP sockets during a bench, they share those ports with the relays.
RTP_PORTS=${BENCH_RTP_PORTS:-33000-48999}
# vnum's media.kernel: auto relays bridged calls' RTP in the kernel where
# the host allows (root here), off keeps it in user space.
KERNEL=${BENCH_KERNEL:-auto}

# novnumenv: run a command without VNUM_ variables, so that only the
# config file configures vnum.
novnumenv() {
	local unset=() v
	for v in $(compgen -e); do
		case "$v" in VNUM_*) unset+=(-u "$v") ;; esac
	done
	env "${unset[@]}" "$@"
}

if [ -n "${VNUMTEST_BIN:-}" ]; then
	VNUM=$VNUMTEST_BIN
else
	echo "bench: building vnum"
	(cd "$ROOT" && go build -o "$WORK/vnum" ./cmd/vnum) || die "go build ./cmd/vnum failed"
	VNUM="$WORK/vnum"
fi

STORE_DRIVER=sqlite STORE_DSN="$WORK/vnum.db"
if [ "$STORE" = postgres ]; then
	. "$ROOT/scripts/lib/pg.sh"
	pg_find || die "BENCH_STORE=postgres: no PostgreSQL server programs (apt-get install postgresql)"
	pg_start "$WORK/pg" || die "BENCH_STORE=postgres: the PostgreSQL server did not start (see $WORK/pg)"
	STORE_DRIVER=postgres STORE_DSN=$PG_DSN
	echo "bench: store on PostgreSQL at 127.0.0.1:$PG_PORT"
fi

CONFIG="$WORK/vnum.yaml"
# compare and media: the SIPp trunk caller's address is a trunk source.
TRUNK_CIDRS=""
[ "$TRUNK" = 1 ] && TRUNK_CIDRS=127.0.0.1/32
cat >"$CONFIG" <<EOF
# written by scripts/bench.sh
sip:
  listen: [udp://127.0.0.1:$SIP_PORT, tcp://127.0.0.1:$SIP_PORT]
media:
  ip: 127.0.0.1
  rtp_ports: "$RTP_PORTS"
  kernel: $KERNEL
trunk:
  outbound: "sip:127.0.0.1:$CARRIER_PORT;transport=udp"
  keepalive: 0s   # the carrier is a SIPp scenario that takes INVITEs only
  inbound_cidrs: [$TRUNK_CIDRS]
  number_format: national
security:
  # One SIPp softphone on one address places every call, and each call is
  # two INVITEs (challenged, then signed): the per-source limit meant for
  # one merchant's phone would refuse the load itself.
  invite_rate: 100000
calls:
  drain_timeout: 5s
${MAX_ACTIVE:+  max_active: $MAX_ACTIVE}
store:
  driver: $STORE_DRIVER
  dsn: "$STORE_DSN"
admin:
  listen: 127.0.0.1:$ADMIN_PORT
  pprof: $PPROF
events:
  allow_private: true   # the receiver of BENCH_EVENTS_HOOK=on is on 127.0.0.1
EOF

vnum() { novnumenv "$VNUM" --config "$CONFIG" "$@"; }

HOST=17000000001
ACCOUNT=benchcaller
PASSWORD=benchsecret
vnum merchant add m1 --name Bench >/dev/null
vnum account add m1 "$ACCOUNT" --password "$PASSWORD" >/dev/null
vnum number add "$HOST" >/dev/null
BINDING=$(vnum binding create --merchant m1 --order bench1 --consignee 13800138000 \
	--order-status shipped --format json)
EXT=$(printf '%s' "$BINDING" | grep -o '"extension": *"[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
[ -n "$EXT" ] || die "no extension in: $BINDING"
DIAL="$HOST-$EXT"

# BENCH_EVENTS_HOOK=on (the events mode's runs with events): the merchant's
# webhook is scripts/eventsink, answering after BENCH_EVENTS_DELAY_MS.
EV_HOOK=${BENCH_EVENTS_HOOK:-off}
if [ "$EV_HOOK" = on ]; then
	(cd "$ROOT" && go build -o "$WORK/eventsink" ./scripts/eventsink) || die "go build ./scripts/eventsink failed"
	EV_SECRET=bench-events-secret-0123
	"$WORK/eventsink" -secret "$EV_SECRET" -delay "${BENCH_EVENTS_DELAY_MS:-200}ms" -addr-file "$WORK/sink.addr" \
		>"$WORK/eventsink.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 50); do [ -s "$WORK/sink.addr" ] && break; sleep 0.1; done
	[ -s "$WORK/sink.addr" ] || die "eventsink did not start: $(cat "$WORK/eventsink.log")"
	SINK="http://$(cat "$WORK/sink.addr")"
	printf '%s' "$EV_SECRET" | vnum merchant webhook m1 --url "$SINK/events" --secret-stdin >/dev/null
fi

# The trunk modes spread their calls over BINDINGS bindings: dial.csv is
# SIPp's injection file (one X-E a call, in turn), kamailio/vnbind the
# same bindings as the db_text table vn-proxy.cfg loads (X-E -> B).
if [ "$TRUNK" = 1 ]; then
	mkdir -p "$WORK/kamailio"
	printf 'SEQUENTIAL\n%s;\n' "$DIAL" >"$WORK/dial.csv"
	printf 'key_name(string) key_type(int) value_type(int) key_value(string) expires(int)\n%s:0:0:%s:0\n' \
		"$DIAL" 13800138000 >"$WORK/kamailio/vnbind"
	for i in $(seq 2 "$BINDINGS"); do
		b=$(printf '138001380%02d' $((i - 1)))
		json=$(vnum binding create --merchant m1 --order "bench$i" --consignee "$b" \
			--order-status shipped --format json)
		x=$(printf '%s' "$json" | grep -o '"host": *"[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
		e=$(printf '%s' "$json" | grep -o '"extension": *"[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
		[ -n "$x" ] && [ -n "$e" ] || die "no host or extension in: $json"
		echo "$x-$e;" >>"$WORK/dial.csv"
		echo "$x-$e:0:0:$b:0" >>"$WORK/kamailio/vnbind"
	done
fi

# sipp looks for play_pcap_audio files next to the scenario.
cd "$WORK"
ln -s "$PCAPS/g711a.pcap" g711a.pcap
cp "$SCEN/uas_answer.xml" "$SCEN/uac_direct.xml" "$SCEN/uac_direct_nomedia.xml" "$SCEN/uac_overload.xml" \
	"$SCEN/uac_trunk.xml" "$SCEN/uac_trunk_long.xml" "$WORK/"
if [ "$MEDIA" = 0 ]; then
	# the overload and trunk callers without RTP: drop their play_pcap_audio
	sed -i '/play_pcap_audio/d' "$WORK/uac_overload.xml" "$WORK/uac_trunk.xml"
fi
# overload's second stream: the same scenario under its own name, so that
# its -trace_rtt file (named after the scenario) is its own
cp "$WORK/uac_overload.xml" "$WORK/uac_overload2.xml"
if [ "$MEDIA" = 1 ]; then
	UAC_SCENARIO="$WORK/uac_direct.xml"
else
	UAC_SCENARIO="$WORK/uac_direct_nomedia.xml"
fi

# Not through novnumenv: a function run with & is a subshell, and $! would
# be its PID, not vnum's (cleanup's TERM then left vnum running). env
# execs vnum in place, so $! is vnum itself.
NOVNUM=()
for v in $(compgen -e); do
	case "$v" in VNUM_*) NOVNUM+=(-u "$v") ;; esac
done
env "${NOVNUM[@]}" "$VNUM" --config "$CONFIG" serve >"$WORK/vnum-serve.log" 2>&1 &
PIDS+=($!)
VNUMTEST_PID=$!
for _ in $(seq 1 100); do
	kill -0 "$VNUMTEST_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve exited"; }
	port_free "$SIP_PORT" || break
	sleep 0.1
done
port_free "$SIP_PORT" && die "vnum serve is not listening on udp/$SIP_PORT"
sleep 0.5
# vnum's resident set before any call, KiB (media's baseline)
IDLE_RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$VNUMTEST_PID/status")

# start_carrier NAME: the sipp carrier (CARRIER_PID), its screen in
# $WORK/carrier_NAME_screen.log (SIPp writes its last screen there on
# exit, the RTP it echoed included). stop_carrier ends it.
start_carrier() {
	sipp -sf "$WORK/uas_answer.xml" -i 127.0.0.1 -p "$CARRIER_PORT" \
		-mi 127.0.0.1 -mp "$CARRIER_MEDIA" -rtp_echo -nostdin \
		-trace_err -error_file "$WORK/carrier_$1_errors.log" >"$WORK/carrier_$1_screen.log" 2>&1 &
	CARRIER_PID=$!
	PIDS+=("$CARRIER_PID")
	# vnum's trunk.outbound names CARRIER_PORT: a carrier that finds it
	# taken (by a process outside scripts/lib/ports.sh's locks) ends the
	# bench here, saying so.
	wait_listening "$CARRIER_PORT" "$CARRIER_PID" "the sipp carrier" "$WORK/carrier_$1_screen.log"
}
stop_carrier() {
	local pid kept=()
	kill -TERM "$CARRIER_PID" 2>/dev/null || true
	wait "$CARRIER_PID" 2>/dev/null || true
	for pid in "${PIDS[@]}"; do
		[ "$pid" = "$CARRIER_PID" ] || kept+=("$pid")
	done
	PIDS=("${kept[@]}")
}
start_carrier main

echo "bench: vnum on udp/$SIP_PORT, carrier on udp/$CARRIER_PORT, dialling $DIAL, ${CALL_MS} ms per call, media $MEDIA"
# cdr_counts: prints "rows answered open" over all CDRs so far.
cdr_counts() {
	local json total answered open
	json=$(vnum cdr list --format json 2>/dev/null) || { echo "0 0 0"; return; }
	total=$(printf '%s' "$json" | grep -o '"call_id"' | wc -l || true)
	answered=$(printf '%s' "$json" | grep -o '"disposition": *"answered"' | wc -l || true)
	open=$(printf '%s' "$json" | grep -o '"ended_at": *null' | wc -l || true)
	echo "$total $answered $open"
}

# csv MODE OFFERED SENT CALLS COMPLETED REFUSED FAILED P95 EXIT SECS
# [CPU_S CONCURRENT RELAYED_PCT RSS_KIB_PER_CALL ECHOED_PCT]: one line of
# BENCH_OUT/results.csv (when BENCH_OUT is set), the columns a mode does
# not measure left empty.
csv() {
	[ -n "$OUT" ] || return 0
	local f=("$@")
	# a run on PostgreSQL names its rows so (direct-postgres)
	[ "$STORE" = sqlite ] || f[0]="${f[0]}-$STORE"
	while [ "${#f[@]}" -lt 15 ]; do f+=(""); done
	local IFS=,
	echo "${f[*]}" >>"$OUT/results.csv"
}

# uac SCENARIO USER CALL_MS RATE CALLS LIMIT BUDGET STATS LOG [SIPP ARGS...]:
# the SIPp softphone account dials USER with SCENARIO, CALLS calls at RATE
# per second (at most LIMIT at once), each CALL_MS long, within BUDGET
# seconds; its statistics go to STATS, its errors and screen to
# $WORK/LOG_errors.log and $WORK/LOG_screen.log. It binds UAC_IP:UAC_PORT
# (SIP) and UAC_IP:UAC_MEDIA (RTP). Returns SIPp's exit code.
uac() {
	local scen=$1 user=$2 call_ms=$3 rate=$4 calls=$5 limit=$6 budget=$7 stats=$8 log=$9 try rc
	shift 9
	for try in 1 2 3; do
		if timeout --kill-after=10 $((budget + 15)) \
			sipp -sf "$scen" "127.0.0.1:$SIP_PORT" \
			-i "$UAC_IP" -p "$UAC_PORT" -mi "$UAC_IP" -mp "$UAC_MEDIA" \
			-s "$user" -key account "$ACCOUNT" -au "$ACCOUNT" -ap "$PASSWORD" \
			-auth_uri "$user@127.0.0.1:$SIP_PORT" -cid_str "uacleg-%u-%p@%s" -aa \
			-d "$call_ms" -r "$rate" -m "$calls" -l "$limit" \
			-timeout "${budget}s" -timeout_error \
			-trace_stat -stf "$stats" -fd 1 "$@" \
			-trace_err -error_file "$WORK/${log}_errors.log" \
			-nostdin >"$WORK/${log}_screen.log" 2>&1; then
			rc=0
		else
			rc=$?
		fi
		uac_port_taken "$log" "$try" || return "$rc"
	done
	return "$rc"
}

# uac_port_taken LOG TRY: when the SIPp caller that wrote
# $WORK/LOG_screen.log gave up because a port of its was taken (by a
# process outside scripts/lib/ports.sh's locks, since it last ran),
# takes fresh UAC_PORT and UAC_MEDIA and returns 0 for another try (the
# third try is the last); else returns 1.
uac_port_taken() {
	grep -q "Unable to bind" "$WORK/$1_screen.log" 2>/dev/null || return 1
	[ "$2" -lt 3 ] || return 1
	echo "bench: sipp $1: udp/$UAC_PORT or media $UAC_MEDIA was taken; again on fresh ports" >&2
	UAC_PORT=$(free_ports 1); take "$UAC_PORT" 1
	UAC_MEDIA=$(free_ports 4); take "$UAC_MEDIA" 4
}

# ramp NAME SCENARIO USER: NAME's calls to USER at each of RATES.
ramp() {
	local name=$1 scen=$2 user=$3
	if [ "$name" = ivr ]; then
		echo "== ivr: calls to X keying E by RFC 4733 at rising rates"
	else
		echo "== direct: X-E calls at rising rates"
	fi
	printf '%8s %10s %10s %8s | %9s %9s %9s | %10s %8s %5s %6s\n' "calls/s" "attempted" "sipp ok" "sipp ko" \
		"cdr ans" "cdr other" "cdr open" "succeeded" "failed" "exit" "secs"
	
	BEST=0
	read -r ROWS0 ANS0 _ < <(cdr_counts)
	for RATE in $RATES; do
		CALLS=$((RATE * FACTOR))
		LIMIT=$((RATE * (CALL_MS / 1000 + EXTRA_SECS + 4) + 10))
		BUDGET=$((CALLS / RATE + CALL_MS / 1000 + EXTRA_SECS + 60))
		STATS="$WORK/${name}_${RATE}.csv"
		START=$(date +%s)
		PROF_PID=
		if [ -n "$PROFILE" ]; then
			curl -sf -o "$WORK/cpu-${name}-${RATE}.pprof" \
				"http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$PROFILE" &
			PROF_PID=$!
		fi
		set +e
		uac "$scen" "$user" "$CALL_MS" "$RATE" "$CALLS" "$LIMIT" "$BUDGET" "$STATS" "${name}_${RATE}"
		CODE=$?
		[ -n "$PROF_PID" ] && wait "$PROF_PID"
		set -e
		SECS=$(( $(date +%s) - START ))
		# The last line of sipp's -trace_stat CSV has the cumulative counters.
		read -r ATTEMPTED OK FAILED < <(awk -F';' '
			NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
			{ last = $0 }
			END {
				n = split(last, f, ";")
				print f[col["OutgoingCall(C)"]] + 0, f[col["SuccessfulCall(C)"]] + 0, f[col["FailedCall(C)"]] + 0
			}' "$STATS" 2>/dev/null || echo "0 0 0")
		ATTEMPTED=${ATTEMPTED:-0}; OK=${OK:-0}; FAILED=${FAILED:-0}
		# Calls sipp never finished (a timeout) count as failed too.
		LOST=$((ATTEMPTED - OK - FAILED))
		[ "$LOST" -gt 0 ] && FAILED=$((FAILED + LOST))
		# Wait (30 s at most) for vnum to close the CDRs of this rate's calls.
		for _ in $(seq 1 60); do
			read -r ROWS ANS OPEN < <(cdr_counts)
			[ "$((ROWS - ROWS0))" -ge "$ATTEMPTED" ] && [ "$OPEN" = 0 ] && break
			sleep 0.5
		done
		CDR_ANS=$((ANS - ANS0))
		CDR_ALL=$((ROWS - ROWS0))
		CDR_OPEN=$OPEN
		ROWS0=$ROWS; ANS0=$ANS
		SUCCEEDED=$(( CDR_ANS < OK ? CDR_ANS : OK ))
		FAILED_ALL=$((CALLS - SUCCEEDED))
		printf '%8s %10s %10s %8s | %9s %9s %9s | %10s %8s %5s %6s\n' "$RATE" "$ATTEMPTED" "$OK" "$FAILED" \
			"$CDR_ANS" "$((CDR_ALL - CDR_ANS))" "$CDR_OPEN" "$SUCCEEDED" "$FAILED_ALL" "$CODE" "$SECS"
		csv "$name" "$RATE" "$RATE" "$CALLS" "$SUCCEEDED" 0 "$FAILED_ALL" - "$CODE" "$SECS"
		if [ "$CODE" = 0 ] && [ "$FAILED_ALL" = 0 ] && [ "$CDR_OPEN" = 0 ]; then
			BEST=$RATE
		else
			RAMP_FAILED=1
			if [ "$STOP_ON_FAIL" = 1 ]; then
				echo "bench: failures at $RATE calls/s; sipp's first unexpected messages and vnum's errors:" >&2
				head -30 "$WORK/${name}_${RATE}_errors.log" >&2 2>/dev/null || true
				grep -v '"level":"INFO"' "$WORK/vnum-serve.log" | tail -5 >&2 || true
				break
			fi
		fi
		kill -0 "$VNUMTEST_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve died"; }
		sleep 2
	done
	
	echo "highest rate with 0 failed calls: $BEST calls/s"
}

# scrape_refused prints vnum_calls_refused_total's series from the admin
# /metrics, "series value" a line.
scrape_refused() {
	curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
		grep '^vnum_calls_refused_total' || true
}

# cdr_answered_from IP: the answered CDRs of calls whose leg A Call-ID
# SIPp made on IP (uac's -cid_str uacleg-%u-%p@%s: %s is its -i address).
# cdr list's JSON has each record's call_id before its disposition.
cdr_answered_from() {
	vnum cdr list --format json 2>/dev/null | awk -v ip="@$1\"" '
		/"call_id":/ { from = index($0, ip) > 0 }
		/"disposition": *"answered"/ && from { n++ }
		END { print n + 0 }' || echo 0
}

# cdr_dispositions_from IP: how the calls from IP (as cdr_answered_from)
# ended, "disposition count, ..." ("open" for those not ended).
cdr_dispositions_from() {
	vnum cdr list --format json 2>/dev/null | awk -v ip="@$1\"" '
		/"call_id":/ { from = index($0, ip) > 0 }
		/"ended_at": *null/ && from { n["open"]++ }
		/"disposition": *"[a-z_]+"/ && from { match($0, /"[a-z_]+",?$/); n[substr($0, RSTART + 1, RLENGTH - 2 - ($0 ~ /,$/))]++ }
		END { for (d in n) s = s (s ? ", " : "") d " " n[d]; print (s ? s : "none") }' || echo "none"
}

# ovl_sipp STATS RTT: "attempted ok failed sent refused p95" of one
# overload caller: SIPp's cumulative counters from its -trace_stat CSV
# STATS, sent/s (its new calls over the -fd 1 periods in which it placed
# any: on two shared cores sipp may not reach its rate), and from its
# -trace_rtt file RTT ("date_ms;response_time_ms;rtd" a measure) the
# refused calls and the p95 of their time to the 503 (- without any).
ovl_sipp() {
	local stats=$1 rtt=$2 att ok ko sent refused=0 p95=-
	read -r att ok ko sent < <(awk -F';' '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0; split($0, f, ";"); if (f[col["OutgoingCall(P)"]] + 0 > 0) busy++ }
		END {
			n = split(last, f, ";")
			print f[col["OutgoingCall(C)"]] + 0, f[col["SuccessfulCall(C)"]] + 0, f[col["FailedCall(C)"]] + 0,
				(busy ? int(f[col["OutgoingCall(C)"]] / busy + 0.5) : 0)
		}' "$stats" 2>/dev/null || echo "0 0 0 0")
	if [ -n "$rtt" ] && [ -r "$rtt" ]; then
		refused=$(awk -F';' '$3 ~ /refused/ { n++ } END { print n + 0 }' "$rtt")
		if [ "$refused" -gt 0 ]; then
			p95=$(awk -F';' '$3 ~ /refused/ { print $2 + 0 }' "$rtt" | sort -n |
				awk '{ v[NR] = $1 } END { i = int(NR * 0.95 + 0.999999); if (i < 1) i = 1; printf "%d", v[i] }')
		fi
	fi
	echo "${att:-0} ${ok:-0} ${ko:-0} ${sent:-0} $refused $p95"
}

# overload: one burst of OVL_RATE calls/s for OVL_SECS from the softphone
# on 127.0.0.1 and, at the same time and for as long, a second stream of
# OVL_STREAM_RATE calls/s (0: none) from the same account on another
# address, 127.0.0.2 (its own SIPp, uac_overload2.xml, a copy of the
# scenario so that its -trace_rtt file is its own): a light source beside
# a flood, which a saturated vnum still takes (README "SIP behaviour in short"). sipp ends a call
# vnum refused (503) as a success of its own, after measuring the time to
# the 503 (rtd "refused", one -trace_rtt line per refused call); so per
# stream refused = those lines, completed = sipp's successes that are not
# refused and whose CDR is answered (the CDR's Call-ID names the stream's
# address), failed = every other attempt.
overload() {
	local calls=$((OVL_RATE * OVL_SECS)) limit budget code secs start
	local attempted ok failed sent refused completed failed_all p95 open metrics rtt
	local calls2=$((OVL_STREAM_RATE * OVL_SECS)) limit2 pid1 pid2= code2=0 rtt2
	local attempted2=0 ok2=0 failed2=0 sent2=0 refused2=0 p95_2=- completed2=0 failed_all2=0
	local ans1_0 ans2_0 ans1 ans2
	echo "== overload: $OVL_RATE calls/s offered for $OVL_SECS s ($calls calls, ${OVL_CALL_MS} ms each)" \
		"$([ "$calls2" -gt 0 ] && echo "and $OVL_STREAM_RATE calls/s from $OVL_STREAM_IP ($calls2 calls)")"
	limit=$((OVL_RATE * (OVL_CALL_MS / 1000 + 4) + 10))
	limit2=$((OVL_STREAM_RATE * (OVL_CALL_MS / 1000 + 4) + 10))
	budget=$((OVL_SECS + OVL_CALL_MS / 1000 + 60))
	ans1_0=$(cdr_answered_from 127.0.0.1)
	ans2_0=$(cdr_answered_from "$OVL_STREAM_IP")
	scrape_refused >"$WORK/refused_before.txt"
	start=$(date +%s)
	rm -f "$WORK"/uac_overload_*_rtt.csv "$WORK"/uac_overload2_*_rtt.csv
	set +e
	uac "$WORK/uac_overload.xml" "$DIAL" "$OVL_CALL_MS" "$OVL_RATE" "$calls" "$limit" "$budget" \
		"$WORK/overload.csv" overload -trace_rtt -rtt_freq 1 &
	pid1=$!
	if [ "$calls2" -gt 0 ]; then
		UAC_IP=$OVL_STREAM_IP UAC_PORT=$UAC2_PORT UAC_MEDIA=$UAC2_MEDIA \
			uac "$WORK/uac_overload2.xml" "$DIAL" "$OVL_CALL_MS" "$OVL_STREAM_RATE" "$calls2" "$limit2" "$budget" \
			"$WORK/overload2.csv" overload2 -trace_rtt -rtt_freq 1 &
		pid2=$!
	fi
	wait "$pid1"
	code=$?
	if [ -n "$pid2" ]; then
		wait "$pid2"
		code2=$?
	fi
	set -e
	secs=$(( $(date +%s) - start ))
	rtt=$(ls "$WORK"/uac_overload_*_rtt.csv 2>/dev/null | head -1 || true)
	read -r attempted ok failed sent refused p95 < <(ovl_sipp "$WORK/overload.csv" "$rtt")
	if [ "$calls2" -gt 0 ]; then
		rtt2=$(ls "$WORK"/uac_overload2_*_rtt.csv 2>/dev/null | head -1 || true)
		read -r attempted2 ok2 failed2 sent2 refused2 p95_2 < <(ovl_sipp "$WORK/overload2.csv" "$rtt2")
	fi
	for _ in $(seq 1 60); do
		read -r _ _ open < <(cdr_counts)
		[ "$open" = 0 ] && break
		sleep 0.5
	done
	ans1=$(( $(cdr_answered_from 127.0.0.1) - ans1_0 ))
	ans2=$(( $(cdr_answered_from "$OVL_STREAM_IP") - ans2_0 ))
	completed=$(( ans1 < ok - refused ? ans1 : ok - refused ))
	[ "$completed" -lt 0 ] && completed=0
	failed_all=$((calls - completed - refused))
	if [ "$calls2" -gt 0 ]; then
		completed2=$(( ans2 < ok2 - refused2 ? ans2 : ok2 - refused2 ))
		[ "$completed2" -lt 0 ] && completed2=0
		failed_all2=$((calls2 - completed2 - refused2))
	fi
	# this burst's refusals: the counters after it less those before
	scrape_refused >"$WORK/refused_after.txt"
	metrics=$(awk 'NR == FNR { before[$1] = $2; next } { printf "%s %d\n", $1, $2 - before[$1] }' \
		"$WORK/refused_before.txt" "$WORK/refused_after.txt")
	local goodput
	goodput=$(awk -v c="$completed" -v a="$attempted" -v r="${sent:-0}" 'BEGIN { printf "%.0f", (a ? c * r / a : 0) }')
	printf '%-10s %8s %8s %8s %10s %10s %8s %12s %10s %5s %6s\n' "stream" "offered" "sent/s" "calls" "completed" "refused" \
		"failed" "p95 503 ms" "goodput/s" "exit" "secs"
	printf '%-10s %8s %8s %8s %10s %10s %8s %12s %10s %5s %6s\n' "127.0.0.1" "$OVL_RATE" "${sent:-0}" "$calls" "$completed" \
		"$refused" "$failed_all" "$p95" "$goodput" "$code" "$secs"
	csv overload "$OVL_RATE" "${sent:-0}" "$calls" "$completed" "$refused" "$failed_all" "$p95" "$code" "$secs"
	echo "sipp 127.0.0.1: attempted $attempted, successful $ok (refusals included), failed ${failed:-0}; cdr answered $ans1"
	if [ "$calls2" -gt 0 ]; then
		printf '%-10s %8s %8s %8s %10s %10s %8s %12s %10s %5s %6s\n' "$OVL_STREAM_IP" "$OVL_STREAM_RATE" "$sent2" "$calls2" \
			"$completed2" "$refused2" "$failed_all2" "$p95_2" "-" "$code2" "$secs"
		csv overload-stream2 "$OVL_STREAM_RATE" "$sent2" "$calls2" "$completed2" "$refused2" "$failed_all2" "$p95_2" "$code2" "$secs"
		echo "sipp $OVL_STREAM_IP: attempted $attempted2, successful $ok2 (refusals included), failed $failed2; cdr answered $ans2"
		echo "cdr of this vnum's calls from $OVL_STREAM_IP: $(cdr_dispositions_from "$OVL_STREAM_IP")"
	fi
	echo "cdr open after the burst: $open"
	echo "vnum_calls_refused_total during the burst (/metrics after less before, both streams):"
	printf '%s\n' "${metrics:-  (no /metrics)}" | sed 's/^/  /'
	local log
	for log in overload overload2; do
		if { [ "$log" = overload ] && [ "$failed_all" -gt 0 ]; } || { [ "$log" = overload2 ] && [ "$failed_all2" -gt 0 ]; }; then
			OVERLOAD_FAILED=1
			echo "bench: $log: failed calls; sipp's first unexpected messages:" >&2
			# sipp's log of unexpected messages, without the 503s vnum
			# retransmitted after sipp's ACK-and-end (RFC 3261 17.2.1)
			awk '/^.?[0-9]{4}-[0-9][0-9]-[0-9][0-9]\t/ { keep = ($0 !~ /Dead call/) } keep' \
				"$WORK/${log}_errors.log" 2>/dev/null | head -30 >&2 || true
		fi
	done
	if [ "$STRICT" = 1 ] && [ "$refused" = 0 ]; then
		echo "bench: the burst was never refused: the 503 path went untested (raise BENCH_OVERLOAD_RATE or set BENCH_MAX_ACTIVE)" >&2
		OVERLOAD_FAILED=1
	fi
	# The second stream is light: a saturated vnum must take every one of
	# its calls. calls.max_active refuses every source alike (README "SIP behaviour in short"):
	# with BENCH_MAX_ACTIVE set its refusals are reported, not failed.
	if [ "$STRICT" = 1 ] && [ "$calls2" -gt 0 ] && [ "$completed2" != "$calls2" ]; then
		if [ -n "$MAX_ACTIVE" ] && [ "$failed_all2" = 0 ]; then
			echo "bench: $OVL_STREAM_IP: $refused2 of $calls2 calls refused, as calls.max_active $MAX_ACTIVE refuses every source" >&2
		else
			echo "bench: $OVL_STREAM_IP: $((calls2 - completed2)) of its $calls2 calls not completed ($refused2 refused, $failed_all2 failed): the light source beside the burst must get through" >&2
			OVERLOAD_FAILED=1
		fi
	fi
}

# renumber_key SRC DST I: DST is sip-tester's RFC 4733 capture SRC as the
# I-th key of a call, the way the integration tests renumber them
# (integration/pcap_test.go): sequence numbers continue from key to key
# from 20000 (SEQ holds the next one) and each key has its own RTP
# timestamp, 160000 + I x 8000, so that two presses of one key are two
# events (RFC 4733 §2.5.1). sip-tester's captures are ten records of 58
# bytes each (Ethernet, IPv4, UDP, 12-byte RTP header, 4-byte event).
be_bytes() { # be_bytes VALUE N: VALUE as N big-endian bytes, printf escapes
	local v=$1 n=$2 out="" i
	for ((i = n - 1; i >= 0; i--)); do out="$out\\x$(printf '%02x' $(((v >> (8 * i)) & 255)))"; done
	printf '%s' "$out"
}
renumber_key() {
	local src=$1 dst=$2 idx=$3 rec=0 off first seq last ts
	cp "$src" "$dst"
	ts=$((160000 + idx * 8000))
	first=""
	while :; do
		off=$((24 + rec * (16 + 58) + 16 + 42))
		[ $((off + 8)) -le "$(stat -c %s "$dst")" ] || break
		seq=$(od -An -tu1 -j $((off + 2)) -N2 "$dst" | awk '{ print $1 * 256 + $2 }')
		[ -n "$first" ] || first=$seq
		last=$((SEQ + ((seq - first) & 65535)))
		# shellcheck disable=SC2059
		printf "$(be_bytes "$last" 2)$(be_bytes "$ts" 4)" | dd of="$dst" bs=1 seek=$((off + 2)) conv=notrunc status=none
		rec=$((rec + 1))
	done
	SEQ=$((last + 1))
}

# render_ivr writes uac_dtmf.xml into WORK from testdata/sipp/uac_dtmf.xml.tmpl
# (scripts/tmpl, the Go template the integration tests fill): key E by
# RFC 4733 IVR_WAIT_MS after the answer, 300 ms a key, talk CALL_MS, BYE.
render_ivr() {
	local i d keys="" cseq=3
	SEQ=20000
	for ((i = 0; i < ${#EXT}; i++)); do
		d=${EXT:i:1}
		renumber_key "$PCAPS/dtmf_2833_$d.pcap" "$WORK/key${i}_dtmf_2833_$d.pcap" "$i"
		keys="$keys${keys:+,}{\"Pcap\":\"key${i}_dtmf_2833_$d.pcap\",\"Key\":\"$d\",\"CSeq\":$cseq,\"PauseMs\":300}"
		cseq=$((cseq + 1))
	done
	printf '{"Attempts":[[%s]],"WaitMs":%d,"DigitGapMs":300,"AttemptGapMs":2500,"TalkMs":%d,"Hangup":false,"Info":false,"Inband":false,"Early":false,"ByeCSeq":%d}' \
		"$keys" "$IVR_WAIT_MS" "$CALL_MS" "$cseq" |
		(cd "$ROOT" && go run ./scripts/tmpl "$SCEN/uac_dtmf.xml.tmpl") >"$WORK/uac_dtmf.xml" ||
		die "rendering uac_dtmf.xml.tmpl failed"
	if [ "$MEDIA" = 0 ]; then
		# keys still play (they are RTP); only the talk is dropped
		sed -i '/play_pcap_audio="g711a.pcap"/d' "$WORK/uac_dtmf.xml"
	fi
}

# --- compare and media: trunk calls ---------------------------------------

CLK_TCK=$(getconf CLK_TCK)


# ticks PID: the CPU time (user + system, clock ticks) PID has used, its
# threads' and its reaped children's included; 0 once it is gone.
# /proc/PID/stat's second field (comm) may hold spaces: the fields are
# counted after its closing parenthesis (utime is field 14).
ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# cpu_ticks SYSTEM: the ticks vnum (vnum) or Kamailio's main process, its
# workers and rtpengine (kamailio) have used so far, "sip media" for
# kamailio (media 0 for vnum, which does both in one process).
cpu_ticks() {
	local pid sip=0
	if [ "$1" = vnum ]; then
		echo "$(ticks "$VNUMTEST_PID") 0"
		return
	fi
	sip=$(ticks "$KAM_PID")
	for pid in $(ps -o pid= --ppid "$KAM_PID" 2>/dev/null); do
		sip=$((sip + $(ticks "$pid")))
	done
	echo "$sip $(ticks "$RTPE_PID")"
}

# secs TICKS: TICKS as seconds, two decimals.
secs() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# start_kamailio: rtpengine (userspace, its own ports, ng on loopback),
# then Kamailio with testdata/kamailio/vn-proxy.cfg and the bindings of
# $WORK/kamailio/vnbind, both in the foreground of the script, stopped by
# PID at exit. Sets KAM_PORT, KAM_PID and RTPE_PID.
start_kamailio() {
	local ng
	KAM_PORT=$(free_ports 1); take "$KAM_PORT" 1
	ng=$(free_ports 1); take "$ng" 1
	rtpengine --config-file=none --interface=127.0.0.1 --listen-ng="127.0.0.1:$ng" \
		--port-min="${RTPE_PORTS%-*}" --port-max="${RTPE_PORTS#*-}" \
		--table=-1 --delete-delay=0 --foreground --log-stderr --log-level=4 \
		>"$WORK/rtpengine.log" 2>&1 &
	RTPE_PID=$!
	PIDS+=("$RTPE_PID")
	wait_listening "$ng" "$RTPE_PID" rtpengine "$WORK/rtpengine.log"
	# -DD: Kamailio's main process stays this script's child (no daemon),
	# its workers are its children. 512 MB of shared memory: with 64 its
	# transactions ran out of it from 600 calls/s on ("out of mem", 500
	# to the caller), a limit of the set-up, not of Kamailio.
	kamailio -f "$ROOT/testdata/kamailio/vn-proxy.cfg" -DD -E -m 512 -M 16 \
		-Y "$WORK/kamailio" -w "$WORK/kamailio" \
		-A "SIP_PORT=$KAM_PORT" -A "CARRIER_PORT=$CARRIER_PORT" \
		-A "RTPENGINE_NG=\"udp:127.0.0.1:$ng\"" -A "BIND_DIR=\"text://$WORK/kamailio\"" \
		>"$WORK/kamailio.log" 2>&1 &
	KAM_PID=$!
	PIDS+=("$KAM_PID")
	wait_listening "$KAM_PORT" "$KAM_PID" kamailio "$WORK/kamailio.log"
	sleep 0.5
}

# trunk_uac SCENARIO PORT CALLS RATE LIMIT BUDGET STATS LOG [SIPP ARGS...]:
# the SIPp trunk caller sends CALLS calls at RATE per second (at most
# LIMIT at once) to 127.0.0.1:PORT, dialling dial.csv's X-E in turn,
# within BUDGET seconds; as uac otherwise.
trunk_uac() {
	local scen=$1 port=$2 calls=$3 rate=$4 limit=$5 budget=$6 stats=$7 log=$8 try rc
	shift 8
	for try in 1 2 3; do
		if timeout --kill-after=10 $((budget + 15)) \
			sipp -sf "$scen" "127.0.0.1:$port" \
			-i 127.0.0.1 -p "$UAC_PORT" -mi 127.0.0.1 -mp "$UAC_MEDIA" \
			-inf "$WORK/dial.csv" -cid_str "trunk-%u-%p@%s" \
			-r "$rate" -m "$calls" -l "$limit" \
			-timeout "${budget}s" -timeout_error \
			-trace_stat -stf "$stats" -fd 1 "$@" \
			-trace_err -error_file "$WORK/${log}_errors.log" \
			-nostdin >"$WORK/${log}_screen.log" 2>&1; then
			rc=0
		else
			rc=$?
		fi
		uac_port_taken "$log" "$try" || return "$rc"
	done
	return "$rc"
}

# sipp_counts STATS: "attempted ok failed" from the last line of a SIPp
# -trace_stat CSV; calls it never finished count as failed.
sipp_counts() {
	local a o f
	read -r a o f < <(awk -F';' '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0 }
		END {
			split(last, v, ";")
			print v[col["OutgoingCall(C)"]] + 0, v[col["SuccessfulCall(C)"]] + 0, v[col["FailedCall(C)"]] + 0
		}' "$1" 2>/dev/null || echo "0 0 0")
	a=${a:-0}; o=${o:-0}; f=${f:-0}
	[ $((a - o - f)) -gt 0 ] && f=$((a - o))
	echo "$a $o $f"
}

# cdrs_closed: wait (30 s at most) until vnum has closed every CDR.
cdrs_closed() {
	local open
	for _ in $(seq 1 60); do
		read -r _ _ open < <(cdr_counts)
		[ "$open" = 0 ] && return 0
		sleep 0.5
	done
	return 1
}

# step SYSTEM RATE: one compare step, RATE x FACTOR trunk calls against
# SYSTEM (vnum or kamailio). Sets S_CALLS S_DONE S_FAILED S_CPU (ticks)
# S_MEDIA (ticks of rtpengine) S_CODE S_SECS. For vnum a call completed
# when SIPp completed it and the run's CDRs are answered, as in the ramps;
# Kamailio keeps no CDRs, SIPp's word is all there is.
step() {
	local sys=$1 rate=$2 port limit budget stats start sip0 media0 sip1 media1 att ok ko rows0 ans0 rows ans
	S_CALLS=$((rate * FACTOR))
	limit=$((rate * (CALL_MS / 1000 + 4) + 10))
	budget=$((S_CALLS / rate + CALL_MS / 1000 + 60))
	stats="$WORK/compare_${sys}_${rate}.csv"
	port=$SIP_PORT
	[ "$sys" = kamailio ] && port=$KAM_PORT
	[ "$sys" = vnum ] && read -r rows0 ans0 _ < <(cdr_counts)
	read -r sip0 media0 < <(cpu_ticks "$sys")
	start=$(date +%s)
	set +e
	trunk_uac "$WORK/uac_trunk.xml" "$port" "$S_CALLS" "$rate" "$limit" "$budget" "$stats" \
		"compare_${sys}_${rate}" -d "$CALL_MS"
	S_CODE=$?
	set -e
	S_SECS=$(($(date +%s) - start))
	read -r att ok ko < <(sipp_counts "$stats")
	S_DONE=$ok
	if [ "$sys" = vnum ]; then
		# the CDR writes of the step are vnum's work: counted in its CPU
		cdrs_closed || true
		read -r rows ans _ < <(cdr_counts)
		[ $((ans - ans0)) -lt "$S_DONE" ] && S_DONE=$((ans - ans0))
	fi
	# the same second of quiet in both windows, for timers and late BYEs
	sleep 1
	read -r sip1 media1 < <(cpu_ticks "$sys")
	S_CPU=$((sip1 - sip0 + media1 - media0))
	S_MEDIA=$((media1 - media0))
	S_FAILED=$((S_CALLS - S_DONE))
	if [ "$S_FAILED" -gt 0 ] || [ "$S_CODE" != 0 ]; then
		echo "bench: $sys failed calls at $rate calls/s (sipp: attempted $att, ok $ok, failed $ko); sipp's first unexpected messages:" >&2
		head -20 "$WORK/compare_${sys}_${rate}_errors.log" >&2 2>/dev/null || true
	fi
}

# compare: at each of RATES the same step against vnum and Kamailio +
# rtpengine, the one that goes first alternating, so that noise from the
# shared machine falls on both.
compare() {
	local rate order sys n=0 vbest=0 kbest=0 vdone=0 kdone=0 ratio
	# BENCH_COMPARE_ONLY: the other system's steps are skipped.
	[ "$COMPARE_ONLY" = vnum ] && kdone=1
	[ "$COMPARE_ONLY" = kamailio ] && vdone=1
	local vcpu_all=0 vcalls_all=0 kcpu_all=0 kcalls_all=0 vcpu vcalls kcpu kcalls vok kok
	local one_cpu=0 one_calls=0
	[ "$COMPARE_ONLY" = vnum ] || start_kamailio
	local who="vnum (udp/$SIP_PORT) vs Kamailio + rtpengine (udp/${KAM_PORT:-})"
	[ "$COMPARE_ONLY" = vnum ] && who="vnum (udp/$SIP_PORT) only"
	[ "$COMPARE_ONLY" = kamailio ] && who="Kamailio + rtpengine (udp/$KAM_PORT) only"
	echo "== compare: trunk X-E calls over $BINDINGS bindings, ${CALL_MS} ms each, media $MEDIA: $who"
	printf '%8s  %-9s %8s %10s %7s %8s %9s %12s %5s %5s\n' "calls/s" "system" "offered" "completed" "failed" \
		"cpu s" "media s" "cpu ms/call" "exit" "secs"
	for rate in $RATES; do
		n=$((n + 1))
		order="vnum kamailio"
		[ $((n % 2)) = 0 ] && order="kamailio vnum"
		vok=0 kok=0
		for sys in $order; do
			if [ "$sys" = vnum ] && [ "$vdone" = 1 ]; then continue; fi
			if [ "$sys" = kamailio ] && [ "$kdone" = 1 ]; then continue; fi
			PROF_PID=
			if [ -n "$PROFILE" ] && [ "$sys" = vnum ]; then
				curl -sf -o "$WORK/cpu-compare-${rate}.pprof" \
					"http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$PROFILE" &
				PROF_PID=$!
			fi
			step "$sys" "$rate"
			[ -n "$PROF_PID" ] && wait "$PROF_PID"
			printf '%8s  %-9s %8s %10s %7s %8s %9s %12s %5s %5s\n' "$rate" "$sys" "$S_CALLS" "$S_DONE" "$S_FAILED" \
				"$(secs "$S_CPU")" "$([ "$sys" = vnum ] && echo - || secs "$S_MEDIA")" \
				"$(awk -v t="$S_CPU" -v hz="$CLK_TCK" -v c="$S_DONE" 'BEGIN { printf "%.2f", c ? 1000 * t / hz / c : 0 }')" \
				"$S_CODE" "$S_SECS"
			csv "compare-$sys" "$rate" "$rate" "$S_CALLS" "$S_DONE" 0 "$S_FAILED" - "$S_CODE" "$S_SECS" "$(secs "$S_CPU")"
			if [ "$S_FAILED" = 0 ] && [ "$S_CODE" = 0 ]; then
				if [ "$sys" = vnum ]; then vbest=$rate vok=1 vcpu=$S_CPU vcalls=$S_DONE; else kbest=$rate kok=1 kcpu=$S_CPU kcalls=$S_DONE; fi
				one_cpu=$((one_cpu + S_CPU)) one_calls=$((one_calls + S_DONE))
			else
				COMPARE_FAILED=1
				if [ "$STOP_ON_FAIL" = 1 ]; then
					if [ "$sys" = vnum ]; then vdone=1; else kdone=1; fi
				fi
			fi
			kill -0 "$VNUMTEST_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve died"; }
			if [ "$COMPARE_ONLY" != vnum ]; then
				kill -0 "$KAM_PID" 2>/dev/null || { tail -20 "$WORK/kamailio.log" >&2; die "kamailio died"; }
				kill -0 "$RTPE_PID" 2>/dev/null || { tail -20 "$WORK/rtpengine.log" >&2; die "rtpengine died"; }
			fi
			sleep 1
		done
		if [ "$vok$kok" = 11 ]; then
			vcpu_all=$((vcpu_all + vcpu)) vcalls_all=$((vcalls_all + vcalls))
			kcpu_all=$((kcpu_all + kcpu)) kcalls_all=$((kcalls_all + kcalls))
			ratio=$(awk -v a="$vcpu" -v b="$vcalls" -v c="$kcpu" -v d="$kcalls" \
				'BEGIN { if (b && d && c) printf "%.2f", (a / b) / (c / d); else print "-" }')
			printf '%8s  %-9s CPU per call vnum/kamailio: %s\n' "$rate" "ratio" "$ratio"
		fi
		[ "$vdone$kdone" = 11 ] && break
	done
	if [ -n "$COMPARE_ONLY" ]; then
		# One system: its own figures, no ratio.
		echo "highest rate with 0 failed calls: $COMPARE_ONLY $([ "$COMPARE_ONLY" = vnum ] && echo "$vbest" || echo "$kbest") calls/s"
		echo "CPU per call over the rates held, $COMPARE_ONLY: $(awk -v a="$one_cpu" -v b="$one_calls" -v hz="$CLK_TCK" \
			'BEGIN { if (b) printf "%.2f ms", 1000 * a / b / hz; else print "-" }')"
		return
	fi
	echo "highest rate with 0 failed calls: vnum $vbest calls/s, kamailio+rtpengine $kbest calls/s" \
		"(vnum/kamailio $(awk -v a="$vbest" -v b="$kbest" 'BEGIN { if (b) printf "%.2f", a / b; else print "-" }'))"
	echo "CPU per call over the rates both held, vnum/kamailio: $(awk -v a="$vcpu_all" -v b="$vcalls_all" \
		-v c="$kcpu_all" -v d="$kcalls_all" -v hz="$CLK_TCK" 'BEGIN {
			if (b && d && c) printf "%.2f (vnum %.2f ms, kamailio+rtpengine %.2f ms)", (a / b) / (c / d), 1000 * a / b / hz, 1000 * c / d / hz
			else print "-"
		}')"
}

# pcap_packets FILE: the records in a pcap file (24-byte file header, then
# a 16-byte header a record with its captured length at offset 8, little
# endian as sip-tester's captures are).
pcap_packets() {
	local off=24 n=0 size len
	size=$(stat -L -c %s "$1")
	while [ $((off + 16)) -le "$size" ]; do
		len=$(od -An -tu4 -j $((off + 8)) -N4 "$1" | tr -d ' ')
		off=$((off + 16 + len))
		n=$((n + 1))
	done
	echo "$n"
}

# rss_kib: vnum's resident set (VmRSS), KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$VNUMTEST_PID/status" 2>/dev/null || echo 0; }

# scrape_rtp prints vnum's relay counters from the admin /metrics:
# "received relayed not_rtp no_bridge no_remote send_error panic" (the
# last five the drops by reason), zeros without /metrics.
scrape_rtp() {
	local out
	out=$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null | awk '
		/^vnum_rtp_packets_received_total / { r = $2 }
		/^vnum_rtp_packets_relayed_total[{ ]/ { l += $2 }
		/^vnum_rtp_packets_dropped_total\{/ {
			if (match($0, /reason="[a-z_]+"/)) d[substr($0, RSTART + 8, RLENGTH - 9)] = $2
		}
		END { printf "%d %d %d %d %d %d %d\n", r, l, d["not_rtp"], d["no_bridge"], d["no_remote"], d["send_error"], d["panic"] }')
	echo "${out:-0 0 0 0 0 0 0}"
}

# media: at each of MEDIA_LEVELS, that many long calls up at once (filled
# at MEDIA_RATE calls/s, then all up for MEDIA_HOLD_S), each playing
# g711a.pcap in a loop toward vnum, the carrier echoing. relayed % is
# vnum's own count, both directions: the RTP packets its relay sent on to
# the other leg / the packets it read, from /metrics after the level less
# before (the drops, by reason, are printed below the level when there are
# any: no_bridge and no_remote are the caller's packets before leg B's
# relay is up). echoed % is SIPp's view of one direction: the packets the
# carrier echoed / the packets the completed calls sent (caller -> vnum ->
# carrier); the carrier is restarted per level so that its echo count is
# the level's. RSS per call = (vnum's highest VmRSS during
# the level - its VmRSS idle, before the run's first call) / calls: Go
# keeps the heap of a level for the next, so the RSS before each level
# would be no baseline; for the same reason media before compare in one
# run gives the cleaner figures.
mediago() {
	local level n=0 order sys port pid idle header=true kam=0
	(cd "$ROOT" && go build -o "$WORK/loadgen" ./scripts/loadgen) || die "go build ./scripts/loadgen failed"
	if command -v kamailio >/dev/null && command -v rtpengine >/dev/null; then
		kam=1
		[ -n "${KAM_PID:-}" ] || start_kamailio
		RTPE_IDLE_RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$RTPE_PID/status")
	fi
	echo "== mediago: concurrent trunk calls, G.711 both ways, counted by the project's generator"
	echo "   (vnum: media.kernel $KERNEL; relay cpu%: vnum's, or rtpengine's; ns/pkt: the machine's CPU per relayed"
	echo "    packet during the hold, softirq included, the generator's own left out)"
	# The generator is the carrier: SIPp's stops for the while.
	stop_carrier
	for level in $MEDIA_LEVELS; do
		n=$((n + 1))
		order="vnum"
		if [ "$kam" = 1 ]; then
			order="vnum rtpengine"
			[ $((n % 2)) = 0 ] && order="rtpengine vnum"
		fi
		for sys in $order; do
			if [ "$sys" = vnum ]; then
				port=$SIP_PORT pid=$VNUMTEST_PID idle=$IDLE_RSS
			else
				port=$KAM_PORT pid=$RTPE_PID idle=$RTPE_IDLE_RSS
			fi
			"$WORK/loadgen" -vnum "127.0.0.1:$port" -carrier "127.0.0.1:$CARRIER_PORT" -caller 127.0.0.1 \
				-dial "$DIAL" -levels "$level" -rate "$MEDIA_RATE" -hold "${MEDIA_HOLD_S}s" -pid "$pid" -idle-kib "$idle" \
				-label "$sys" -header="$header" || MEDIA_FAILED=1
			header=false
		done
	done
	start_carrier main
}

media() {
	local level pkts loops fill limit budget stats code start secs_ att ok ko idle peak rss pid
	local sent echoed pct epct per cpu0 cpu1 done_ rtp0 rtp1 rcvd rel drops
	pkts=$(pcap_packets "$WORK/g711a.pcap")
	echo "== media: concurrent trunk calls, g711a.pcap ($pkts packets, 7.05 s) in a loop, echoed by the carrier"
	echo "   (vnum rcvd / relayed: RTP packets vnum's relay read / sent on, both directions, from /metrics;"
	echo "    rtp sent / echoed: the callers' packets and those the carrier echoed, SIPp's count, one direction)"
	printf '%10s %6s %10s %7s %10s %10s %9s %10s %10s %9s %9s %9s %11s %7s %5s %5s\n' "concurrent" "loops" "completed" "failed" \
		"vnum rcvd" "relayed" "relayed %" "rtp sent" "rtp echoed" "echoed %" "idle MiB" "peak MiB" "KiB/call" "cpu s" "exit" "secs"
	for level in $MEDIA_LEVELS; do
		fill=$(((level + MEDIA_RATE - 1) / MEDIA_RATE))
		# each call lasts loops x 7.1 s: long enough for all to be up
		# together for MEDIA_HOLD_S once the level has filled
		loops=$(((fill + MEDIA_HOLD_S) * 10 / 71 + 1))
		[ "$loops" -lt 2 ] && loops=2
		limit=$level
		budget=$((fill + loops * 8 + 60))
		stats="$WORK/media_${level}.csv"
		stop_carrier
		start_carrier "media_$level"
		cdrs_closed || true
		idle=$IDLE_RSS
		peak=$(rss_kib)
		read -r cpu0 _ < <(cpu_ticks vnum)
		read -r -a rtp0 < <(scrape_rtp)
		start=$(date +%s)
		trunk_uac "$WORK/uac_trunk_long.xml" "$SIP_PORT" "$level" "$MEDIA_RATE" "$limit" "$budget" "$stats" \
			"media_$level" -set loops "$loops" &
		pid=$!
		while kill -0 "$pid" 2>/dev/null; do
			rss=$(rss_kib)
			[ "$rss" -gt "$peak" ] && peak=$rss
			sleep 0.5
		done
		set +e
		wait "$pid"
		code=$?
		set -e
		secs_=$(($(date +%s) - start))
		cdrs_closed || true
		read -r cpu1 _ < <(cpu_ticks vnum)
		read -r -a rtp1 < <(scrape_rtp)
		read -r att ok ko < <(sipp_counts "$stats")
		done_=$ok
		stop_carrier
		echoed=$(awk '/Total echo RTP pckts 1st stream/ { n = $1 } END { print n + 0 }' \
			"$WORK/carrier_media_${level}_screen.log")
		sent=$((ok * loops * pkts))
		epct=$(awk -v e="$echoed" -v s="$sent" 'BEGIN { if (s) printf "%.1f", 100 * e / s; else print "-" }')
		rcvd=$((rtp1[0] - rtp0[0]))
		rel=$((rtp1[1] - rtp0[1]))
		pct=$(awk -v r="$rel" -v n="$rcvd" 'BEGIN { if (n) printf "%.1f", 100 * r / n; else print "-" }')
		per=$(awk -v p="$peak" -v i="$idle" -v n="$level" 'BEGIN { printf "%.0f", (p - i) / n }')
		printf '%10s %6s %10s %7s %10s %10s %9s %10s %10s %9s %9s %9s %11s %7s %5s %5s\n' "$level" "$loops" "$done_" "$((level - done_))" \
			"$rcvd" "$rel" "$pct" "$sent" "$echoed" "$epct" "$((idle / 1024))" "$((peak / 1024))" "$per" "$(secs $((cpu1 - cpu0)))" "$code" "$secs_"
		drops=$(awk -v a="${rtp0[*]}" -v b="${rtp1[*]}" 'BEGIN {
			split(a, x, " "); split(b, y, " "); split("not_rtp no_bridge no_remote send_error panic", name, " ")
			for (i = 1; i <= 5; i++) if (y[i + 2] - x[i + 2] > 0) s = s sprintf(" %s %d", name[i], y[i + 2] - x[i + 2])
			print s }')
		[ -n "$drops" ] && echo "           vnum dropped:$drops"
		csv media "$MEDIA_RATE" "$MEDIA_RATE" "$level" "$done_" 0 "$((level - done_))" - "$code" "$secs_" \
			"$(secs $((cpu1 - cpu0)))" "$level" "$pct" "$per" "$epct"
		if [ "$done_" != "$level" ] || [ "$code" != 0 ]; then
			MEDIA_FAILED=1
			echo "bench: failed media calls at $level concurrent; sipp's first unexpected messages:" >&2
			head -20 "$WORK/media_${level}_errors.log" >&2 2>/dev/null || true
			[ "$STOP_ON_FAIL" = 1 ] && break
		fi
		kill -0 "$VNUMTEST_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve died"; }
	done
	start_carrier main
}

# events_pending prints vnum_events_pending from the admin /metrics (-1
# when it cannot).
events_pending() {
	curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
		awk '$1 == "vnum_events_pending" { print $2 + 0; found = 1 } END { if (!found) print -1 }'
}

# events_watch samples vnum_events_pending every 0.5 s, "unix-time count"
# a line, into $WORK/pending.log until events_drain stops it.
events_watch() {
	(while :; do echo "$(date +%s.%N) $(events_pending)"; sleep 0.5; done) >"$WORK/pending.log" 2>/dev/null &
	EV_WATCH_PID=$!
	PIDS+=("$EV_WATCH_PID")
}

# events_drain: once the ramp is over, waits for the outbox to drain
# (BENCH_EVENTS_DRAIN_S at most) and prints two "events:" lines: the
# pending count each second of the calls, then the most seen during the
# calls, the seconds from the calls' end (SIPp's last statistics) to an
# empty outbox, and the receiver's counts.
events_drain() {
	local stats="$WORK/direct_${RATE}.csv" ended t0 left
	ended=$(stat -c %Y "$stats" 2>/dev/null || date +%s)
	t0=$(date +%s)
	while :; do
		left=$(tail -1 "$WORK/pending.log" | awk '{ print $2 }')
		[ "$left" = 0 ] && break
		[ $(($(date +%s) - t0)) -lt "${BENCH_EVENTS_DRAIN_S:-300}" ] || break
		sleep 0.5
	done
	kill "$EV_WATCH_PID" 2>/dev/null || true
	wait "$EV_WATCH_PID" 2>/dev/null || true
	awk -v end="$ended" '
		NR == 1 { t0 = $1 }
		{ s = int($1 - t0); if (!(s in seen)) { seen[s] = 1; series = series (series ? " " : "") $2 } }
		$1 <= end + 1 && $2 > max { max = $2 }
		$2 == 0 && $1 > end && drained == "" { drained = sprintf("%.1f", $1 - end) }
		END {
			print "events: pending each second from the start of the calls: " series
			printf "events: pending at most %d during the calls; the outbox empty %s s after the calls ended", max,
				(drained == "" ? "never (within BENCH_EVENTS_DRAIN_S)" : drained)
		}' "$WORK/pending.log"
	echo "; receiver: $(curl -fsS --max-time 5 "$SINK/stats" 2>/dev/null || echo unreachable)"
}

RAMP_FAILED=0
OVERLOAD_FAILED=0
COMPARE_FAILED=0
MEDIA_FAILED=0
CSV_HEADER="mode,offered_per_s,sent_per_s,calls,completed,refused,failed,p95_refusal_ms,sipp_exit,secs,cpu_s,concurrent,relayed_pct,rss_kib_per_call,sipp_echoed_pct"
if [ -n "$OUT" ]; then
	if [ "${BENCH_APPEND:-0}" != 1 ] || [ "$(head -1 "$OUT/results.csv" 2>/dev/null)" != "$CSV_HEADER" ]; then
		echo "$CSV_HEADER" >"$OUT/results.csv"
	fi
fi
for m in $MODES; do
	case "$m" in
	direct)
		[ "$EV_HOOK" = on ] && events_watch
		EXTRA_SECS=0 ramp direct "$UAC_SCENARIO" "$DIAL"
		[ "$EV_HOOK" = on ] && events_drain
		;;
	ivr) render_ivr; EXTRA_SECS=$(((IVR_WAIT_MS + 300 * ${#EXT} + 999) / 1000)) ramp ivr "$WORK/uac_dtmf.xml" "$HOST" ;;
	overload) overload ;;
	compare) compare ;;
	media) media ;;
	mediago) mediago ;;
	esac
	kill -0 "$VNUMTEST_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve died"; }
done
# svg: results.svg from results.csv: one stacked bar per run (mode and
# offered rate): the share of its calls completed, refused with 503,
# failed; below them, for media runs, the share of the RTP vnum read that
# it relayed and vnum's RSS per call against the calls up at once.
svg() {
	awk -F, '
		# chart Y0 TITLE N XS YS YMAX UNIT: a line chart of YS over XS, its
		# top at Y0, 200 high.
		function chart(y0, title, n, xs, ys, ymax, unit,    i, x0, w0, h0, xmax, px, py, pts) {
			x0 = 80; w0 = 580; h0 = 140; xmax = 0
			for (i = 1; i <= n; i++) if (xs[i] > xmax) xmax = xs[i]
			if (xmax == 0) xmax = 1
			if (ymax <= 0) ymax = 1
			printf "<text x=\"10\" y=\"%d\" font-size=\"14\">%s</text>\n", y0 + 16, title
			printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#000\"/>\n", x0, y0 + 30, x0, y0 + 30 + h0
			printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#000\"/>\n", x0, y0 + 30 + h0, x0 + w0, y0 + 30 + h0
			printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%g %s</text>\n", x0 - 6, y0 + 34, ymax, unit
			printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>\n", x0 - 6, y0 + 34 + h0
			printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">calls up at once</text>\n", x0 + w0 / 2, y0 + 30 + h0 + 30
			pts = ""
			for (i = 1; i <= n; i++) {
				px = x0 + w0 * xs[i] / xmax; py = y0 + 30 + h0 - h0 * ys[i] / ymax
				pts = pts sprintf("%.1f,%.1f ", px, py)
				printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#1565c0\"/>\n", px, py
				printf "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", px, py - 6, ys[i]
				printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", px, y0 + 30 + h0 + 14, xs[i]
			}
			printf "<polyline points=\"%s\" fill=\"none\" stroke=\"#1565c0\"/>\n", pts
		}
		NR == 1 { next }
		$1 == "media" { m++; conc[m] = $12 + 0; pct[m] = $13 + 0; rss[m] = $14 + 0; next }
		{ n++; label[n] = $1 " " $2 "/s" ($3 != $2 ? " (sent " $3 "/s)" : ""); calls[n] = $4
		  c[n] = $5; r[n] = $6; f[n] = $7 }
		END {
			w = 720; left = 220; bw = w - left - 20
			hb = n ? 40 + 26 * n + 40 : 0
			h = hb + (m ? 2 * 210 : 0) + 10
			printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", w, h
			if (n) {
				printf "<text x=\"10\" y=\"20\" font-size=\"14\">vnum make bench: share of calls completed / refused (503) / failed</text>\n"
				for (i = 1; i <= n; i++) {
					y = 36 + 26 * (i - 1); t = calls[i] ? calls[i] : 1; x = left
					printf "<text x=\"10\" y=\"%d\">%s</text>\n", y + 14, label[i]
					split("#2e7d32 #f9a825 #c62828", col, " ")
					v[1] = c[i]; v[2] = r[i]; v[3] = f[i]
					for (k = 1; k <= 3; k++) {
						bwid = bw * v[k] / t
						if (bwid > 0) printf "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"18\" fill=\"%s\"><title>%d</title></rect>\n", x, y, bwid, col[k], v[k]
						x += bwid
					}
				}
				y = 36 + 26 * n + 10
				printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#2e7d32\"/><text x=\"%d\" y=\"%d\">completed</text>\n", left, y, left + 16, y + 11
				printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#f9a825\"/><text x=\"%d\" y=\"%d\">refused (503)</text>\n", left + 100, y, left + 116, y + 11
				printf "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#c62828\"/><text x=\"%d\" y=\"%d\">failed</text>\n", left + 220, y, left + 236, y + 11
			}
			if (m) {
				ymax = 0
				for (i = 1; i <= m; i++) if (rss[i] > ymax) ymax = rss[i]
				chart(hb, "vnum make bench media: RTP packets read that vnum relayed (both directions, /metrics), %", m, conc, pct, 100, "%")
				chart(hb + 210, "vnum make bench media: vnum RSS above idle per call, KiB", m, conc, rss, ymax > 0 ? int(ymax * 1.2 + 1) : 1, "KiB")
			}
			print "</svg>"
		}' "$OUT/results.csv" >"$OUT/results.svg"
}
if [ -n "$OUT" ]; then
	svg
	echo "bench: results in $OUT/results.csv and $OUT/results.svg"
fi

if [ "$STRICT" = 1 ] && [ "$RAMP_FAILED$OVERLOAD_FAILED$COMPARE_FAILED$MEDIA_FAILED" != 0000 ]; then
	echo "bench: failed (BENCH_STRICT=1): see above" >&2
	exit 1
fi

