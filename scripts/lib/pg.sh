# scripts/lib/pg.sh - a throwaway PostgreSQL server for the demo and bench
# scripts; source it (bash):
#
#   . "$ROOT/scripts/lib/pg.sh"
#   pg_find || exit 1        # optional: is the server installed? (PG_BIN)
#   pg_start "$WORK/pg"      # sets PG_DSN, PG_PID, PG_PORT; returns 1 on failure
#   ...
#   pg_stop                  # fast shutdown, by PID
#
# The server's programs come from PATH or from /usr/lib/postgresql/*/bin,
# where Debian's package postgresql puts them without putting them in PATH.
# The server runs in DIR (data, log, unix socket), listens on 127.0.0.1
# only, on a port that was free (one of scripts/lib/ports.sh's when the
# script sourced it first), and trusts its superuser postgres (no
# password): it is for a demo on this machine, never for data that
# matters. initdb and postgres refuse to run as root, so as root they run
# as the OS user postgres (which the package creates), and DIR is given to
# that user. Nothing is installed: what is missing is said.

PG_BIN=${PG_BIN:-}
PG_DIR=
PG_PID=
PG_PORT=
PG_DSN=
PG_AS=()

_pg_say() { echo "pg.sh: $*" >&2; }

# pg_find: sets PG_BIN, the directory of initdb, pg_ctl and postgres: PATH's,
# else the newest /usr/lib/postgresql/<version>/bin. Returns 1, saying
# which package brings them, when there are none.
pg_find() {
	local p dir
	if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ]; then
		return 0
	fi
	if p=$(command -v initdb 2>/dev/null); then
		dir=$(dirname "$(readlink -f "$p")")
		if [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
			PG_BIN=$dir
			return 0
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4nr); do
		if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
			PG_BIN=$dir
			return 0
		fi
	done
	_pg_say "no initdb, pg_ctl and postgres in PATH or /usr/lib/postgresql/*/bin; on Debian: apt-get install postgresql"
	return 1
}

# _pg_run CMD...: runs CMD as the server's OS user.
_pg_run() {
	if [ ${#PG_AS[@]} -gt 0 ]; then
		"${PG_AS[@]}" "$@"
	else
		"$@"
	fi
}

# _pg_free_port: a TCP port on 127.0.0.1 that nothing listens on now.
_pg_free_port() {
	local port
	for _ in $(seq 1 200); do
		port=$((30000 + RANDOM % 20000))
		if command -v ss >/dev/null; then
			[ -z "$(ss -Hlnt "sport = :$port" 2>/dev/null)" ] && { echo "$port"; return 0; }
		elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	_pg_say "no free TCP port on 127.0.0.1"
	return 1
}

# pg_start DIR: initialises a cluster in DIR (created if missing; it should
# be empty) and starts its server; sets PG_DSN (a database vnum, as user
# postgres, over 127.0.0.1), PG_PID (the postmaster) and PG_PORT. The log
# is DIR/postgres.log. Returns 1, saying why, when it cannot.
pg_start() {
	local dir=$1 parent try
	[ -n "$dir" ] || { _pg_say "pg_start: no directory given"; return 1; }
	pg_find || return 1
	mkdir -p "$dir" || return 1
	dir=$(cd "$dir" && pwd)
	PG_DIR=$dir
	PG_AS=()
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || {
			_pg_say "running as root needs the OS user postgres, which Debian's package postgresql creates"
			return 1
		}
		if command -v runuser >/dev/null; then
			PG_AS=(runuser -u postgres --)
		else
			PG_AS=(su postgres -s /bin/sh -c '"$0" "$@"')
		fi
		chown postgres: "$dir" || return 1
		# postgres must be able to reach DIR: a private mktemp -d folder
		# above it is opened for passing through (not for listing).
		parent=$(dirname "$dir")
		if ! _pg_run test -x "$parent"; then
			chmod o+x "$parent" || return 1
		fi
		_pg_run test -w "$dir" || { _pg_say "the user postgres cannot write to $dir (a folder above it is closed)"; return 1; }
	fi
	if ! _pg_run "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
		>"$dir/initdb.log" 2>&1; then
		_pg_say "initdb failed:"
		tail -20 "$dir/initdb.log" >&2
		return 1
	fi
	# A port found free may be taken before the server binds it: try again.
	for try in 1 2 3; do
		if declare -F free_ports >/dev/null; then
			# scripts/lib/ports.sh is sourced: a port of its locked blocks.
			PG_PORT=$(free_ports 1) || return 1
			take "$PG_PORT" 1
		else
			PG_PORT=$(_pg_free_port) || return 1
		fi
		if _pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
			-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c fsync=off" \
			start >"$dir/pg_ctl.log" 2>&1; then
			break
		fi
		if [ "$try" = 3 ]; then
			_pg_say "postgres did not start:"
			tail -20 "$dir/postgres.log" >&2
			return 1
		fi
	done
	PG_PID=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null)
	case "$PG_PID" in '' | *[!0-9]*) _pg_say "no postmaster.pid in $dir/data"; PG_PID=; return 1 ;; esac
	if [ -x "$PG_BIN/createdb" ]; then
		_pg_run "$PG_BIN/createdb" -h "$dir" -p "$PG_PORT" -U postgres vnum >>"$dir/pg_ctl.log" 2>&1 || {
			_pg_say "createdb vnum failed:"
			tail -5 "$dir/pg_ctl.log" >&2
			pg_stop
			return 1
		}
		PG_DSN="postgres://postgres@127.0.0.1:$PG_PORT/vnum?sslmode=disable"
	else
		PG_DSN="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
	fi
	return 0
}

# pg_stop: stops the server pg_start started, by its PID: SIGINT (fast
# shutdown: sessions are ended, what was committed is kept), then SIGQUIT
# (immediate) if it is still there after 10 s. It does nothing when no
# server runs.
pg_stop() {
	local pid=$PG_PID
	[ -n "$pid" ] || return 0
	PG_PID=
	kill -INT "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -QUIT "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	_pg_say "postgres (pid $pid) did not stop"
	return 1
}
