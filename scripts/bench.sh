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
#             is answered), refused (503 + Retry-After, SPEC §8) or failed
#             (anything else), with the p95 of the time to the 503 and
#             vnum_calls_refused_total by reason from the admin /metrics
# BENCH_STRICT=1 makes any failed call (direct: at any rate tried;
# overload: any attempt neither completed nor refused) exit 1 (make
# bench-smoke in CI).
#
# Knobs (environment):
#   BENCH_MODE          direct, ivr, overload, or several (direct)
#   BENCH_IVR_WAIT_MS   ivr: from the answer to the first key (1000)
#   BENCH_STRICT        exit 1 on a failed call          (0)
#   BENCH_OUT           write results.csv and results.svg (calls
#                       completed / refused / failed per run) here (unset)
#   BENCH_OVERLOAD_RATE offered calls/s of the burst     (3000)
#   BENCH_OVERLOAD_SECS seconds of offered load          (8)
#   BENCH_OVERLOAD_CALL_MS talk time of each call, ms    (1000)
#   BENCH_MAX_ACTIVE    vnum's calls.max_active          (unset: vnum's default)
#   BENCH_RATES         call rates to try, calls/s      (10 20 50 100 200)
#   BENCH_CALLS_FACTOR  calls per rate = rate x this    (10)
#   BENCH_CALL_MS       talk time of each call, ms      (3000)
#   BENCH_STOP_ON_FAIL  stop after the first failing rate (1)
#   BENCH_KEEP          keep the work folder and its logs (0)
#   BENCH_PROFILE       seconds of CPU profile to take from vnum (admin.pprof)
#                       during each ramp rate, kept as cpu-MODE-RATE.pprof in
#                       the work folder (implies BENCH_KEEP=1) (off)
#   BENCH_RTP_PORTS     vnum's media.rtp_ports           (40000-49999)
#   BENCH_MEDIA         1: callers send PCMA and the carrier echoes it;
#                       0: no RTP (signalling and store only) (1)
#   VNUM_BIN            use this vnum binary instead of building one
#   VNUM_SIPP_PCAPS     folder of sip-tester's pcaps     (/usr/share/sip-tester)
set -euo pipefail

RATES=${BENCH_RATES:-10 20 50 100 200}
FACTOR=${BENCH_CALLS_FACTOR:-10}
CALL_MS=${BENCH_CALL_MS:-3000}
STOP_ON_FAIL=${BENCH_STOP_ON_FAIL:-1}
KEEP=${BENCH_KEEP:-0}
PROFILE=${BENCH_PROFILE:-}
PPROF=false
if [ -n "$PROFILE" ]; then KEEP=1 PPROF=true; fi
PCAPS=${VNUM_SIPP_PCAPS:-/usr/share/sip-tester}
MEDIA=${BENCH_MEDIA:-1}
MODES=${BENCH_MODE:-direct}
OUT=${BENCH_OUT:-}
if [ -n "$OUT" ]; then
	mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
fi
IVR_WAIT_MS=${BENCH_IVR_WAIT_MS:-1000}
STRICT=${BENCH_STRICT:-0}
OVL_RATE=${BENCH_OVERLOAD_RATE:-3000}
OVL_SECS=${BENCH_OVERLOAD_SECS:-8}
OVL_CALL_MS=${BENCH_OVERLOAD_CALL_MS:-1000}
MAX_ACTIVE=${BENCH_MAX_ACTIVE:-}
for m in $MODES; do
	case "$m" in direct | ivr | overload) ;; *) echo "bench: unknown BENCH_MODE $m (direct, ivr, overload)" >&2; exit 2 ;; esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCEN="$ROOT/testdata/sipp"

die() { echo "bench: $*" >&2; exit 1; }

command -v sipp >/dev/null || die "sipp is not on PATH (apt-get install sip-tester)"
command -v timeout >/dev/null || die "timeout (coreutils) is not on PATH"
[ -r "$PCAPS/g711a.pcap" ] || die "no g711a.pcap in $PCAPS (set VNUM_SIPP_PCAPS)"
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
	if [ "$KEEP" = 1 ]; then
		echo "bench: logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_free PORT: nothing listens on 127.0.0.1:PORT (UDP or TCP), and this
# script has not handed it out yet.
TAKEN=" "
port_free() {
	case "$TAKEN" in *" $1 "*) return 1 ;; esac
	if command -v ss >/dev/null; then
		[ -z "$(ss -Hlnut "sport = :$1" 2>/dev/null)" ]
	fi
}

# free_ports N: prints the first of N consecutive free ports (even) and
# marks them taken.
free_ports() {
	local n=$1 base i ok
	for _ in $(seq 1 200); do
		base=$((20000 + 2 * (RANDOM % 9000)))
		ok=1
		for i in $(seq 0 $((n - 1))); do
			if ! port_free $((base + i)); then ok=0; break; fi
		done
		if [ $ok = 1 ]; then echo "$base"; return 0; fi
	done
	die "no $n free consecutive ports"
}
take() { local i; for i in $(seq 0 $(($2 - 1))); do TAKEN="$TAKEN$(($1 + i)) "; done; }

SIP_PORT=$(free_ports 1); take "$SIP_PORT" 1
CARRIER_PORT=$(free_ports 1); take "$CARRIER_PORT" 1
ADMIN_PORT=$(free_ports 1); take "$ADMIN_PORT" 1
CARRIER_MEDIA=$(free_ports 4); take "$CARRIER_MEDIA" 4
UAC_PORT=$(free_ports 1); take "$UAC_PORT" 1
UAC_MEDIA=$(free_ports 4); take "$UAC_MEDIA" 4
# vnum's relay: two ports (RTP, RTCP) per leg, two legs per call.
RTP_PORTS=${BENCH_RTP_PORTS:-40000-49999}

# novnumenv: run a command without VNUM_ variables, so that only the
# config file configures vnum.
novnumenv() {
	local unset=() v
	for v in $(compgen -e); do
		case "$v" in VNUM_*) unset+=(-u "$v") ;; esac
	done
	env "${unset[@]}" "$@"
}

if [ -n "${VNUM_BIN:-}" ]; then
	VNUM=$VNUM_BIN
else
	echo "bench: building vnum"
	(cd "$ROOT" && go build -o "$WORK/vnum" ./cmd/vnum) || die "go build ./cmd/vnum failed"
	VNUM="$WORK/vnum"
fi

CONFIG="$WORK/vnum.yaml"
cat >"$CONFIG" <<EOF
# written by scripts/bench.sh
sip:
  listen: [udp://127.0.0.1:$SIP_PORT, tcp://127.0.0.1:$SIP_PORT]
media:
  ip: 127.0.0.1
  rtp_ports: "$RTP_PORTS"
trunk:
  outbound: "sip:127.0.0.1:$CARRIER_PORT;transport=udp"
  inbound_cidrs: []
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
  driver: sqlite
  dsn: $WORK/vnum.db
admin:
  listen: 127.0.0.1:$ADMIN_PORT
  pprof: $PPROF
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

# sipp looks for play_pcap_audio files next to the scenario.
cd "$WORK"
ln -s "$PCAPS/g711a.pcap" g711a.pcap
cp "$SCEN/uas_answer.xml" "$SCEN/uac_direct.xml" "$SCEN/uac_direct_nomedia.xml" "$SCEN/uac_overload.xml" "$WORK/"
if [ "$MEDIA" = 0 ]; then
	# the overload softphone without RTP: drop its play_pcap_audio
	sed -i '/play_pcap_audio/d' "$WORK/uac_overload.xml"
fi
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
VNUM_PID=$!
for _ in $(seq 1 100); do
	kill -0 "$VNUM_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve exited"; }
	port_free "$SIP_PORT" || break
	sleep 0.1
done
port_free "$SIP_PORT" && die "vnum serve is not listening on udp/$SIP_PORT"
sleep 0.5

sipp -sf "$WORK/uas_answer.xml" -i 127.0.0.1 -p "$CARRIER_PORT" \
	-mi 127.0.0.1 -mp "$CARRIER_MEDIA" -rtp_echo -nostdin \
	-trace_err -error_file "$WORK/carrier_errors.log" >"$WORK/carrier_screen.log" 2>&1 &
PIDS+=($!)
sleep 0.5

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

# csv MODE OFFERED SENT CALLS COMPLETED REFUSED FAILED P95 EXIT SECS: one
# line of BENCH_OUT/results.csv (when BENCH_OUT is set).
csv() {
	[ -n "$OUT" ] || return 0
	local IFS=,
	echo "$*" >>"$OUT/results.csv"
}

# uac SCENARIO USER CALL_MS RATE CALLS LIMIT BUDGET STATS LOG [SIPP ARGS...]:
# the SIPp softphone account dials USER with SCENARIO, CALLS calls at RATE
# per second (at most LIMIT at once), each CALL_MS long, within BUDGET
# seconds; its statistics go to STATS, its errors and screen to
# $WORK/LOG_errors.log and $WORK/LOG_screen.log. Returns SIPp's exit code.
uac() {
	local scen=$1 user=$2 call_ms=$3 rate=$4 calls=$5 limit=$6 budget=$7 stats=$8 log=$9
	shift 9
	timeout --kill-after=10 $((budget + 15)) \
		sipp -sf "$scen" "127.0.0.1:$SIP_PORT" \
		-i 127.0.0.1 -p "$UAC_PORT" -mi 127.0.0.1 -mp "$UAC_MEDIA" \
		-s "$user" -key account "$ACCOUNT" -au "$ACCOUNT" -ap "$PASSWORD" \
		-auth_uri "$user@127.0.0.1:$SIP_PORT" -cid_str "uacleg-%u-%p@%s" -aa \
		-d "$call_ms" -r "$rate" -m "$calls" -l "$limit" \
		-timeout "${budget}s" -timeout_error \
		-trace_stat -stf "$stats" -fd 1 "$@" \
		-trace_err -error_file "$WORK/${log}_errors.log" \
		-nostdin >"$WORK/${log}_screen.log" 2>&1
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
		kill -0 "$VNUM_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve died"; }
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

# overload: one burst of OVL_RATE calls/s for OVL_SECS. sipp ends a call
# vnum refused (503) as a success of its own, after measuring the time to
# the 503 (rtd "refused", one -trace_rtt line per refused call); so
# refused = those lines, completed = sipp's successes that are not refused
# and whose CDR is answered, failed = every other attempt.
overload() {
	local calls=$((OVL_RATE * OVL_SECS)) limit budget stats rtt code secs start
	local attempted ok failed refused completed failed_all p95 rows ans open metrics
	echo "== overload: $OVL_RATE calls/s offered for $OVL_SECS s ($calls calls, ${OVL_CALL_MS} ms each)"
	limit=$((OVL_RATE * (OVL_CALL_MS / 1000 + 4) + 10))
	budget=$((OVL_SECS + OVL_CALL_MS / 1000 + 60))
	stats="$WORK/overload.csv"
	read -r ROWS0 ANS0 _ < <(cdr_counts)
	scrape_refused >"$WORK/refused_before.txt"
	start=$(date +%s)
	rm -f "$WORK"/uac_overload_*_rtt.csv
	set +e
	uac "$WORK/uac_overload.xml" "$DIAL" "$OVL_CALL_MS" "$OVL_RATE" "$calls" "$limit" "$budget" "$stats" overload \
		-trace_rtt -rtt_freq 1
	code=$?
	set -e
	secs=$(( $(date +%s) - start ))
	# sent/s: what sipp really offered, its new calls over the seconds
	# (-fd 1 periods) in which it placed any: on two shared cores sipp may
	# not reach OVL_RATE.
	local sent
	read -r attempted ok failed sent < <(awk -F';' '
		NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
		{ last = $0; split($0, f, ";"); if (f[col["OutgoingCall(P)"]] + 0 > 0) busy++ }
		END {
			n = split(last, f, ";")
			print f[col["OutgoingCall(C)"]] + 0, f[col["SuccessfulCall(C)"]] + 0, f[col["FailedCall(C)"]] + 0,
				(busy ? int(f[col["OutgoingCall(C)"]] / busy + 0.5) : 0)
		}' "$stats" 2>/dev/null || echo "0 0 0 0")
	attempted=${attempted:-0}; ok=${ok:-0}
	# -trace_rtt: "date_ms;response_time_ms;rtd" per measure.
	rtt=$(ls "$WORK"/uac_overload_*_rtt.csv 2>/dev/null | head -1 || true)
	refused=0; p95=-
	if [ -n "$rtt" ]; then
		refused=$(awk -F';' '$3 ~ /refused/ { n++ } END { print n + 0 }' "$rtt")
		if [ "$refused" -gt 0 ]; then
			p95=$(awk -F';' '$3 ~ /refused/ { print $2 + 0 }' "$rtt" | sort -n |
				awk '{ v[NR] = $1 } END { i = int(NR * 0.95 + 0.999999); if (i < 1) i = 1; printf "%d", v[i] }')
		fi
	fi
	for _ in $(seq 1 60); do
		read -r rows ans open < <(cdr_counts)
		[ "$open" = 0 ] && break
		sleep 0.5
	done
	local cdr_ans=$((ans - ANS0))
	local sipp_done=$((ok - refused))
	completed=$(( cdr_ans < sipp_done ? cdr_ans : sipp_done ))
	[ "$completed" -lt 0 ] && completed=0
	failed_all=$((calls - completed - refused))
	# this burst's refusals: the counters after it less those before
	scrape_refused >"$WORK/refused_after.txt"
	metrics=$(awk 'NR == FNR { before[$1] = $2; next } { printf "%s %d\n", $1, $2 - before[$1] }' \
		"$WORK/refused_before.txt" "$WORK/refused_after.txt")
	local goodput
	goodput=$(awk -v c="$completed" -v a="$attempted" -v r="${sent:-0}" 'BEGIN { printf "%.0f", (a ? c * r / a : 0) }')
	printf '%8s %8s %8s %10s %10s %8s %12s %10s %5s %6s\n' "offered" "sent/s" "calls" "completed" "refused" "failed" \
		"p95 503 ms" "goodput/s" "exit" "secs"
	printf '%8s %8s %8s %10s %10s %8s %12s %10s %5s %6s\n' "$OVL_RATE" "${sent:-0}" "$calls" "$completed" "$refused" \
		"$failed_all" "$p95" "$goodput" "$code" "$secs"
	csv overload "$OVL_RATE" "${sent:-0}" "$calls" "$completed" "$refused" "$failed_all" "$p95" "$code" "$secs"
	echo "sipp: attempted $attempted, successful $ok (refusals included), failed ${failed:-0}; cdr answered $cdr_ans, open $open"
	echo "vnum_calls_refused_total during the burst (/metrics after less before):"
	printf '%s\n' "${metrics:-  (no /metrics)}" | sed 's/^/  /'
	if [ "$failed_all" -gt 0 ]; then
		OVERLOAD_FAILED=1
		# sipp's log of unexpected messages, without the 503s vnum
		# retransmitted after sipp's ACK-and-end (RFC 3261 17.2.1)
		awk '/^.?[0-9]{4}-[0-9][0-9]-[0-9][0-9]\t/ { keep = ($0 !~ /Dead call/) } keep' \
			"$WORK/overload_errors.log" 2>/dev/null | head -30 >&2 || true
	fi
	if [ "$STRICT" = 1 ] && [ "$refused" = 0 ]; then
		echo "bench: the burst was never refused: the 503 path went untested (raise BENCH_OVERLOAD_RATE or set BENCH_MAX_ACTIVE)" >&2
		OVERLOAD_FAILED=1
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

RAMP_FAILED=0
OVERLOAD_FAILED=0
if [ -n "$OUT" ]; then
	echo "mode,offered_per_s,sent_per_s,calls,completed,refused,failed,p95_refusal_ms,sipp_exit,secs" >"$OUT/results.csv"
fi
for m in $MODES; do
	case "$m" in
	direct) EXTRA_SECS=0 ramp direct "$UAC_SCENARIO" "$DIAL" ;;
	ivr) render_ivr; EXTRA_SECS=$(((IVR_WAIT_MS + 300 * ${#EXT} + 999) / 1000)) ramp ivr "$WORK/uac_dtmf.xml" "$HOST" ;;
	overload) overload ;;
	esac
	kill -0 "$VNUM_PID" 2>/dev/null || { tail -20 "$WORK/vnum-serve.log" >&2; die "vnum serve died"; }
done
# svg: results.svg from results.csv, one stacked bar per run (mode and
# offered rate): the share of its calls completed, refused with 503, failed.
svg() {
	awk -F, '
		NR == 1 { next }
		{ n++; label[n] = $1 " " $2 "/s" ($3 != $2 ? " (sent " $3 "/s)" : ""); calls[n] = $4
		  c[n] = $5; r[n] = $6; f[n] = $7 }
		END {
			w = 720; left = 220; bw = w - left - 20; h = 40 + 26 * n + 40
			printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", w, h
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
			print "</svg>"
		}' "$OUT/results.csv" >"$OUT/results.svg"
}
if [ -n "$OUT" ]; then
	svg
	echo "bench: results in $OUT/results.csv and $OUT/results.svg"
fi

if [ "$STRICT" = 1 ] && [ "$RAMP_FAILED$OVERLOAD_FAILED" != 00 ]; then
	echo "bench: failed (BENCH_STRICT=1): see above" >&2
	exit 1
fi

