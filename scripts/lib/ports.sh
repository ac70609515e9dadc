# scripts/lib/ports.sh - free loopback ports for the demo and bench
# scripts; source it (bash), then:
#
#   PORT=$(free_ports 4); take "$PORT" 4
#
# The ports come from blocks of 128 below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range), where no socket bound to port 0 and no
# outgoing connection can be given one of them. Sourcing this file locks
# PORTS_BLOCKS consecutive blocks (1 unless the script sets it before) with
# flock on the lock files the Go tests use too (internal/testport: the
# folder vnum-testports under $TMPDIR, one file block-FIRSTPORT per
# block), so that the tests and the scripts running beside them never pick
# the same port. The lock is held by the script's shell (and the programs
# it starts, which inherit it) until they end.
#
# free_ports runs in the $(...) subshell, where what it marks would be
# lost: take marks the ports in the script itself, so that the next
# free_ports never hands them out again, even before anything listens on
# them. The caller defines die MESSAGE.

TAKEN=" "
PORTS_BLOCK_SIZE=128
PORTS_LOW=10240 # 80 blocks: above the ports of well-known services
PORTS_FIRST= # the first port of the blocks locked
PORTS_END=   # one past their last port

# _ports_ephemeral_low: the first port of the kernel's ephemeral range.
_ports_ephemeral_low() {
	local low
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
	case "$low" in '' | *[!0-9]*) low=32768 ;; esac
	[ "$low" -ge $((PORTS_LOW + 8 * PORTS_BLOCK_SIZE)) ] || low=32768
	echo "$low"
}

# ports_lock N: locks N consecutive blocks no other process holds, and
# sets PORTS_FIRST and PORTS_END. Without flock(1) nothing is locked, and
# the ports are only probed.
ports_lock() {
	local n=$1 dir="${TMPDIR:-/tmp}/vnum-testports" high firsts first i fd ok fds
	high=$(_ports_ephemeral_low)
	if ! command -v flock >/dev/null; then
		echo "ports.sh: no flock(1) (util-linux): ports are probed, not locked against the tests" >&2
		first=$((PORTS_LOW + PORTS_BLOCK_SIZE * (RANDOM % ((high - PORTS_LOW) / PORTS_BLOCK_SIZE - n + 1))))
		PORTS_FIRST=$first PORTS_END=$((first + n * PORTS_BLOCK_SIZE))
		return 0
	fi
	mkdir -p "$dir" && chmod 1777 "$dir" 2>/dev/null
	firsts=$(seq "$PORTS_LOW" "$PORTS_BLOCK_SIZE" $((high - n * PORTS_BLOCK_SIZE)) | shuf)
	for first in $firsts; do
		ok=1 fds=()
		for i in $(seq 0 $((n - 1))); do
			exec {fd}>>"$dir/block-$((first + i * PORTS_BLOCK_SIZE))" || { ok=0; break; }
			fds+=("$fd")
			flock -n "$fd" || { ok=0; break; }
		done
		if [ $ok = 1 ]; then
			PORTS_FIRST=$first PORTS_END=$((first + n * PORTS_BLOCK_SIZE))
			return 0
		fi
		for fd in "${fds[@]}"; do exec {fd}>&-; done
	done
	die "no $n free blocks of $PORTS_BLOCK_SIZE ports below $high (all locked in $dir)"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT (UDP or TCP), and the
# script has not taken it yet.
port_free() {
	case "$TAKEN" in *" $1 "*) return 1 ;; esac
	if command -v ss >/dev/null; then
		[ -z "$(ss -Hanut "sport = :$1" 2>/dev/null)" ]
	fi
}

# free_ports N: prints the first (even) of N consecutive free ports of the
# blocks locked.
free_ports() {
	local n=$1 base i ok
	for ((base = PORTS_FIRST; base + n <= PORTS_END; base += 2)); do
		ok=1
		for ((i = 0; i < n; i++)); do
			if ! port_free $((base + i)); then ok=0; break; fi
		done
		if [ $ok = 1 ]; then echo "$base"; return 0; fi
	done
	die "no $n free consecutive ports in $PORTS_FIRST-$((PORTS_END - 1)) (set PORTS_BLOCKS higher)"
}

# take FIRST N: marks FIRST..FIRST+N-1 as taken.
take() { local i; for i in $(seq 0 $(($2 - 1))); do TAKEN="$TAKEN$(($1 + i)) "; done; }

# listening PORT: something listens on 127.0.0.1:PORT (UDP).
listening() { [ -n "$(ss -Hlnu "sport = :$1" 2>/dev/null)" ]; }

# wait_listening PORT PID NAME LOG: waits up to 10 s until something
# listens on udp/PORT; dies, with LOG's tail, if PID exits first or
# nothing listens by then.
wait_listening() {
	for _ in $(seq 1 100); do
		kill -0 "$2" 2>/dev/null || { tail -20 "$4" >&2; die "$3 exited"; }
		listening "$1" && return 0
		sleep 0.1
	done
	die "$3 is not listening on udp/$1 (log: $4)"
}

ports_lock "${PORTS_BLOCKS:-1}"
