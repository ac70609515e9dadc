package media

import "sync/atomic"

// DropReason says why an RTP packet read on a stream's socket was not
// relayed to the other leg.
type DropReason int

// The reasons a received RTP packet is not relayed.
const (
	// DropNotRTP: the datagram is not an RTP version 2 packet (RFC 3550
	// §5.1): it does not parse, or its version is another.
	DropNotRTP DropReason = iota
	// DropNoBridge: the stream relays to no other leg (yet, or any more):
	// the packet is the stream's own, fed to its DTMF detectors while the
	// caller keys an extension, or dropped after the bridge ends.
	DropNoBridge
	// DropNoRemote: the other leg has no address to send to: not known yet,
	// or 0.0.0.0 for a call on hold (RFC 3264 §8.4).
	DropNoRemote
	// DropSendError: writing the packet to the other leg failed (its socket
	// closed, or the kernel refused the datagram).
	DropSendError
	// DropPanic: handling the packet panicked; the reader recovered and
	// went on.
	DropPanic
	// DropForeignSource: the packet came from another source than the
	// stream's peer, once the stream had learnt where its peer sends from
	// (see LearnWindow): someone outside the call, or a stray stream.
	DropForeignSource

	numDropReasons = iota
)

// dropReasonNames are the DropReasons' String values, also the reason
// label of vnum_rtp_packets_dropped_total.
var dropReasonNames = [numDropReasons]string{
	DropNotRTP:        "not_rtp",
	DropNoBridge:      "no_bridge",
	DropNoRemote:      "no_remote",
	DropSendError:     "send_error",
	DropPanic:         "panic",
	DropForeignSource: "foreign_source",
}

// String returns the reason as a metric label value: not_rtp, no_bridge,
// no_remote, send_error, panic or foreign_source.
func (r DropReason) String() string {
	if r < 0 || int(r) >= numDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// RelayCounts are the RTP packets that reached the streams of one Ports
// since it was made, and what became of them. Every packet is either
// relayed (in user space or by the kernel) or dropped for one reason, so
// Received is their sum.
type RelayCounts struct {
	// Received is the RTP datagrams read on every stream's socket, and
	// those the kernel relayed before they reached it.
	Received uint64
	// Relayed is the packets read and sent on to the other leg in user
	// space.
	Relayed uint64
	// RelayedKernel is the packets the kernel relayed to the other leg
	// (Ports.UseKernel), counted every KernelPoll.
	RelayedKernel uint64
	// Dropped is the packets not relayed, by reason (every reason listed,
	// zeros included).
	Dropped map[DropReason]uint64
	// ForeignRTCP is the RTCP datagrams dropped because they came from
	// another source than the stream's peer (DropForeignSource for RTCP;
	// RTCP is not part of Received).
	ForeignRTCP uint64
}

// outcome is what became of one packet read: relayed, or the reason it
// was dropped (outcome = reason + 1).
type outcome int

const (
	relayed    outcome = 0
	numOutcome         = numDropReasons + 1
)

func dropped(r DropReason) outcome { return outcome(r) + 1 }

// relayCounters count the outcomes of the packets read on a Ports'
// streams: one atomic add per packet, no lock. Received is not counted of
// its own but summed at a snapshot, so a snapshot always adds up.
type relayCounters struct {
	n           [numOutcome]atomic.Uint64
	foreignRTCP atomic.Uint64
	kernel      atomic.Uint64 // relayed by the kernel
}

func (c *relayCounters) add(o outcome) {
	c.n[o].Add(1)
}

func (c *relayCounters) snapshot() RelayCounts {
	rc := RelayCounts{Dropped: make(map[DropReason]uint64, numDropReasons)}
	rc.Relayed = c.n[relayed].Load()
	rc.RelayedKernel = c.kernel.Load()
	rc.Received = rc.Relayed + rc.RelayedKernel
	for r := range DropReason(numDropReasons) {
		v := c.n[dropped(r)].Load()
		rc.Dropped[r] = v
		rc.Received += v
	}
	rc.ForeignRTCP = c.foreignRTCP.Load()
	return rc
}

// RelayCounts returns the RTP packets read on the streams of p's sockets
// so far, relayed and dropped by reason (see RelayCounts). It is cheap
// enough for every metrics scrape.
func (p *Ports) RelayCounts() RelayCounts {
	return p.relay.snapshot()
}
