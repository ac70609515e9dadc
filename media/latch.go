package media

import (
	"net/netip"
	"time"
)

// LearnWindow is how long one direction of a stream (its RTP, or its RTCP)
// learns where its peer's packets come from, counted from the first packet
// it reads after its remote was set by SDP. A peer behind NAT sends from
// another address than the one its SDP names; within the window the
// stream takes the first source it hears provisionally, a better one (the
// SDP's host, then the SDP's exact address and port) still replaces it,
// and a packet from the SDP's exact address ends the window at once. After
// it, packets from any source but the one learnt are dropped
// (DropForeignSource): a third party who finds a call's relay ports can
// neither inject audio into the call nor draw its audio to themselves
// (RTP bleed). Only a new address in SDP (Stream.SetRemote: an answer, a
// re-offer) opens a new window.
const LearnWindow = 2 * time.Second

// match is how well a packet's source matches what the SDP named, the
// order in which a learning window prefers sources.
type match uint8

const (
	// matchNone: no source learnt yet.
	matchNone match = iota
	// matchAny: a source the SDP does not name (a peer behind NAT).
	matchAny
	// matchHost: the SDP's host, the host the peer's signalling came from
	// (Stream.SetSignalHost) or, for RTCP, the host RTP learnt, on another
	// port: a phone behind NAT, an SBC sending from a port of its own.
	matchHost
	// matchExact: the SDP's address and port.
	matchExact
)

// sourceLatch is one direction of a stream, its RTP or its RTCP: the
// address the SDP named, where packets go, and the one source packets are
// taken from. The stream's mu guards it; take runs once per packet read,
// so it does not allocate.
type sourceLatch struct {
	signalled netip.AddrPort // what the SDP names (RTCP: the port above RTP's)
	remote    netip.AddrPort // where packets go: signalled until a source is learnt
	match     match          // how well remote, once learnt, matches signalled
	until     time.Time      // when the window closes; zero until its first packet
	closed    bool           // the window is over: only remote's packets are taken
}

// reset points the latch at what the SDP now names and opens a new
// learning window, which starts with the next packet read.
func (l *sourceLatch) reset(signalled netip.AddrPort) {
	*l = sourceLatch{signalled: signalled, remote: signalled}
}

// take reports whether a packet from src, read at now, is the peer's
// (ok; otherwise it is dropped), and whether it moved remote to src. hosts
// count as the SDP's host as well (the signalling's host; for RTCP the
// host RTP learnt), or are the zero Addr; a source that matches less than
// floor is not
// learnt and does not open the window (RTCP: once RTP knows its peer, an
// RTCP source on neither the SDP's host nor that peer's is no peer's).
//
// The SDP's exact address is taken at any time, even after the window:
// it is what the peer itself signalled, and a learnt source can only be a
// guess, so an attacker who spoke first cannot keep a peer that does not
// sit behind NAT out of its own call. Only someone able to send from
// that exact address and port could move the stream there, and the
// stream then sends where the peer asked.
func (l *sourceLatch) take(src netip.AddrPort, hosts [2]netip.Addr, floor match, now time.Time) (ok, moved bool) {
	if src == l.remote && l.match != matchNone {
		return true, false
	}
	if src == l.signalled {
		l.remote, l.match, l.closed = src, matchExact, true
		return true, true
	}
	if l.closed {
		return false, false
	}
	m := matchAny
	if a := src.Addr(); a == l.signalled.Addr() || a == hosts[0] || a == hosts[1] {
		m = matchHost
	}
	if m < floor {
		return false, false
	}
	if l.until.IsZero() {
		l.until = now.Add(LearnWindow)
	} else if !now.Before(l.until) {
		l.closed = true
		return false, false
	}
	if m <= l.match {
		// Within the window a source no better than the one learnt is
		// not taken: the first comer keeps it against equals.
		return false, false
	}
	l.remote, l.match = src, m
	return true, true
}

// learnt returns the source taken, if any.
func (l *sourceLatch) learnt() (netip.AddrPort, bool) {
	return l.remote, l.match != matchNone
}

// follow points a latch that has not learnt from the SDP's exact address
// at to, the port above the source RTP learnt, and forgets a source it
// learnt on another host than to's: RTCP comes from the host RTP comes
// from. Its window opens again with its next packet.
func (l *sourceLatch) follow(to netip.AddrPort) {
	if l.match == matchExact || (l.match != matchNone && l.remote.Addr() == to.Addr()) {
		return
	}
	l.reset(l.signalled)
	l.remote = to
}

func (m match) String() string {
	switch m {
	case matchAny:
		return "any"
	case matchHost:
		return "host"
	case matchExact:
		return "exact"
	}
	return "none"
}
