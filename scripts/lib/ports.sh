# scripts/lib/ports.sh - free loopback ports for the demo and bench
# scripts; source it (bash), then:
#
#   PORT=$(free_ports 4); take "$PORT" 4
#
# free_ports runs in the $(...) subshell, where what it marks would be
# lost: take marks the ports in the script itself, so that the next
# free_ports never hands them out again, even before anything listens on
# them. The caller defines die MESSAGE.

TAKEN=" "

# port_free PORT: nothing listens on 127.0.0.1:PORT (UDP or TCP), and the
# script has not taken it yet.
port_free() {
	case "$TAKEN" in *" $1 "*) return 1 ;; esac
	if command -v ss >/dev/null; then
		[ -z "$(ss -Hlnut "sport = :$1" 2>/dev/null)" ]
	fi
}

# free_ports N: prints the first (even) of N consecutive free ports.
free_ports() {
	local n=$1 base i ok
	for _ in $(seq 1 200); do
		base=$((20000 + 2 * (RANDOM % 6000))) # below the ephemeral ports (32768 on)
		ok=1
		for i in $(seq 0 $((n - 1))); do
			if ! port_free $((base + i)); then ok=0; break; fi
		done
		if [ $ok = 1 ]; then echo "$base"; return 0; fi
	done
	die "no $n free consecutive ports"
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
