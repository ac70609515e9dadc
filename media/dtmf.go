package media

import (
	"fmt"

	"github.com/pion/rtp"
)

// Event is one RFC 4733 telephone-event payload (RFC 4733 §2.3).
type Event struct {
	// Digit is the DTMF key: 0-9, *, # or A-D.
	Digit rune
	// End is the E bit: this packet ends the event.
	End bool
	// Volume is the power level in -dBm0 (0 to 63).
	Volume uint8
	// Duration is the event's duration so far, in RTP timestamp units.
	Duration uint16
}

// eventDigits maps RFC 4733 §3.2 DTMF event codes 0-15 to their keys.
const eventDigits = "0123456789*#ABCD"

// DecodeEvent decodes the 4-byte payload of a telephone-event RTP packet.
// It returns ErrBadEvent for a payload shorter than 4 bytes and for events
// that are not DTMF digits (above 15, flash included).
func DecodeEvent(payload []byte) (Event, error) {
	if len(payload) < 4 {
		return Event{}, fmt.Errorf("%w: %d bytes", ErrBadEvent, len(payload))
	}
	if int(payload[0]) >= len(eventDigits) {
		return Event{}, fmt.Errorf("%w: event %d", ErrBadEvent, payload[0])
	}
	return Event{
		Digit:    rune(eventDigits[payload[0]]),
		End:      payload[1]&0x80 != 0,
		Volume:   payload[1] & 0x3F,
		Duration: uint16(payload[2])<<8 | uint16(payload[3]),
	}, nil
}

// recentEvents is how many past event timestamps a DigitDetector remembers,
// so that late or reordered packets of an old event do not repeat it.
const recentEvents = 8

// DigitDetector turns a stream of telephone-event RTP packets into digits,
// one per event. An event is identified by its RTP timestamp (RFC 4733
// §2.5.1.2), not by the marker bit, so a lost first packet does not lose
// the digit. A digit is emitted on the first end packet of its event; the
// end packet's retransmissions (RFC 4733 §2.5.1.4) are ignored. When the
// marker packet was lost, the digit is emitted on the first packet seen.
// When every end packet was lost, the digit is emitted when the next event
// begins. The zero value is ready to use; it is not safe for concurrent use.
type DigitDetector struct {
	have    bool   // an event has been seen
	ts      uint32 // timestamp of the current event
	digit   rune   // key of the current event
	done    bool   // the current event's digit was emitted
	eager   bool   // the current event's marker packet was not seen
	pending bool   // emit the current digit on its next packet
	recent  [recentEvents]uint32
	nrecent int
}

// Feed takes one RTP packet of the telephone-event payload type and returns
// a digit when one is complete. Packets with undecodable payloads are
// ignored.
func (d *DigitDetector) Feed(pkt *rtp.Packet) (digit rune, ok bool) {
	if pkt == nil {
		return 0, false
	}
	ev, err := DecodeEvent(pkt.Payload)
	if err != nil {
		return 0, false
	}
	if d.have && pkt.Timestamp == d.ts {
		if !d.done && (ev.End || d.eager || d.pending) {
			d.done = true
			return d.digit, true
		}
		return 0, false
	}
	if d.seen(pkt.Timestamp) {
		return 0, false // a late packet of an event already handled
	}

	prev, unfinished := d.digit, d.have && !d.done
	if d.have {
		d.remember(d.ts)
	}
	d.have, d.ts, d.digit = true, pkt.Timestamp, ev.Digit
	d.eager = !pkt.Marker
	d.done, d.pending = false, false
	if unfinished {
		// The previous event's end packets were all lost: emit it now and
		// this event's digit on its next packet.
		d.pending = ev.End || d.eager
		return prev, true
	}
	if ev.End || d.eager {
		d.done = true
		return d.digit, true
	}
	return 0, false
}

func (d *DigitDetector) seen(ts uint32) bool {
	for i := range min(d.nrecent, recentEvents) {
		if d.recent[i] == ts {
			return true
		}
	}
	return false
}

func (d *DigitDetector) remember(ts uint32) {
	d.recent[d.nrecent%recentEvents] = ts
	d.nrecent++
	if d.nrecent >= 2*recentEvents {
		d.nrecent -= recentEvents
	}
}

// EncodeEvent builds the 4-byte telephone-event payload for a DTMF key. It
// returns ErrBadEvent for a key outside 0-9, *, # and A-D.
func EncodeEvent(ev Event) ([]byte, error) {
	code := -1
	for i, k := range eventDigits {
		if k == ev.Digit {
			code = i
		}
	}
	if code < 0 {
		return nil, fmt.Errorf("%w: key %q", ErrBadEvent, ev.Digit)
	}
	b := []byte{byte(code), ev.Volume & 0x3F, byte(ev.Duration >> 8), byte(ev.Duration)}
	if ev.End {
		b[1] |= 0x80
	}
	return b, nil
}
