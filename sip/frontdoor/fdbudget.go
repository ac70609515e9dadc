package frontdoor

// The descriptor budget: how many TCP and TLS connections signalling may
// hold, out of the descriptors the process may open, so that a flood of
// connections can never take the sockets calls need for their media.
const (
	// fdReserve is what the budget keeps for the descriptors that are
	// neither media nor accepted connections: the SIP and admin
	// listeners, the store's connections (SQLite's files, PostgreSQL's
	// pool), the admin API's clients, connections vnum opens itself (a
	// TCP trunk, a registered phone whose connection closed), DNS
	// lookups, the runtime's own and the log.
	fdReserve = 256
	// tcpFloor is the fewest connections the budget leaves TCP when the
	// limit is too low for media and the reserve: signalling must still
	// take some, and the budget's log line says the limit is short.
	tcpFloor = 64
	// tcpUnknownLimit caps the connections where the descriptor limit
	// cannot be read.
	tcpUnknownLimit = 4096
)

// fdBudget shares the process's descriptors between media and TCP
// connections.
type fdBudget struct {
	// limit is the soft RLIMIT_NOFILE (0: unknown).
	limit int
	// media is what the relay may take: two sockets (RTP, RTCP) for each
	// pair of media.rtp_ports, or four per call (two legs) when
	// calls.max_active bounds the calls to fewer.
	media int
	// tcp is the cap on accepted TCP and TLS connections.
	tcp int
	// short says the limit cannot hold media, the reserve and tcpFloor
	// connections.
	short bool
}

// newFDBudget is the budget of limit descriptors (0: unknown) for media
// ports of pairs pairs (0: no fixed range) and calls.max_active (0: no
// limit).
func newFDBudget(limit, pairs, maxActive int) fdBudget {
	b := fdBudget{limit: limit, media: 2 * pairs}
	if maxActive > 0 && (pairs == 0 || 4*maxActive < b.media) {
		b.media = 4 * maxActive
	}
	if limit <= 0 {
		b.tcp = tcpUnknownLimit
		return b
	}
	b.tcp = limit - b.media - fdReserve
	if b.tcp < tcpFloor {
		b.tcp, b.short = tcpFloor, true
	}
	return b
}

// Budget sets the cap on all connections from the descriptor budget: the
// process's descriptor limit less what media may take (pairs RTP port
// pairs, calls.max_active calls; 0: no fixed range, no limit) and a
// reserve, or maxConns when it is set. Call it when the listeners are
// bound; LogBudget logs it as serving starts, so that a serve that then
// fails to start (its node's lease held, the store missing) says so in
// one line and nothing else.
func (g *TCPGuard) Budget(pairs, maxActive, maxConns int) {
	limit, err := nofileLimit()
	if err != nil {
		g.log.Warn("cannot read the descriptor limit", "error", err)
	}
	b := newFDBudget(limit, pairs, maxActive)
	tcp := b.tcp
	if maxConns > 0 {
		tcp = maxConns
	}
	g.total.Store(int64(tcp))
	g.budget = budgetLine{short: b.short, attrs: []any{"nofile", limit, "media", b.media, "reserve", fdReserve, "tcp_max", tcp,
		"tcp_per_source", g.perSource, "tcp_idle", g.idle.String(), "tcp_message_timeout", g.message.String()}}
}

// budgetLine is the descriptor budget as its log line gives it.
type budgetLine struct {
	short bool
	attrs []any
}

// LogBudget logs the budget once, as serving starts: a warning when the
// limit is too low for what media.rtp_ports may take.
func (g *TCPGuard) LogBudget() {
	if g.budget.attrs == nil {
		return
	}
	if g.budget.short {
		g.log.Warn("descriptor limit too low for media.rtp_ports and signalling: raise the hard RLIMIT_NOFILE (systemd LimitNOFILE)", g.budget.attrs...)
		return
	}
	g.log.Info("descriptor budget", g.budget.attrs...)
}
