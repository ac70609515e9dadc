package frontdoor

import "bytes"

// frameState is where a stream of SIP over TCP stands, as msgFramer sees it.
type frameState uint8

const (
	// frameBetween: between messages, where CRLF keepalives go.
	frameBetween frameState = iota
	// frameStartLine: in a message's first line.
	frameStartLine
	// frameName: in a header line's name (or at the start of a line).
	frameName
	// frameLength: in the value of a Content-Length header.
	frameLength
	// frameValue: in the value of any other header.
	frameValue
	// frameBody: in a message's body.
	frameBody
)

// contentLength is the header that says how long a body is, in lower case;
// "l" is its compact form (RFC 3261 §7.3.3).
const contentLength = "content-length"

// maxFrameBody caps a Content-Length as the framer counts it, so that a
// huge value cannot overflow: sipgo refuses such a message long before.
const maxFrameBody = 1 << 40

// msgFramer tells where SIP messages end in a TCP stream as the bytes pass
// through it, without keeping or copying any of them: it is fed each read
// and holds a few counters. A message ends after the empty line that ends
// its headers and the Content-Length bytes of body that follow (RFC 3261
// §7.5, §18.3: over a stream, Content-Length is what frames a message). A
// CRLF between messages is a keepalive (RFC 5626 §3.5.1, §4.4.1: the
// client's ping is a double CRLF; RFC 3261 §7.5 has CRLFs before a start
// line ignored): each one ends nothing, but counts as traffic like a
// message does.
//
// The framer follows sipgo's stream parser closely enough to find every
// end that parser finds: lines end at CRLF, a header's name is matched
// without regard to case or the spaces before its colon, the last
// Content-Length wins, a folded line continues the header above it, and a
// message without Content-Length is taken to have no body. Where the
// stream is not SIP (a bare CR, a name without a colon, a length that is
// not a number), sipgo closes the connection itself; the framer only has
// to keep counting without harm until it does.
type msgFramer struct {
	state frameState
	// cr: the last byte was a CR that may start a line's CRLF.
	cr bool
	// lineStart: nothing of the current line has been seen yet.
	lineStart bool
	// name is how much of "content-length" the header's name has matched
	// so far, -1 once it cannot be that name; nameLen is the name's length
	// so far, compact says its first byte is "l" (the compact form, when
	// alone), named that spaces have ended it before its colon.
	name    int
	nameLen int
	compact bool
	named   bool
	// lengthLine: the header line above was Content-Length, which a folded
	// line continues.
	lengthLine bool
	// length is the Content-Length read so far, body what is still to come.
	length int64
	body   int64
}

// inMessage reports whether part of a message has been seen and its end
// has not: the stream is then mid-message.
func (f *msgFramer) inMessage() bool { return f.state != frameBetween }

// pending reports whether any byte after the last end has been seen: a
// message in progress, or half of a keepalive's CRLF.
func (f *msgFramer) pending() bool { return f.state != frameBetween || f.cr }

// feed takes the next bytes of the stream and returns how many message
// ends and keepalives they held.
func (f *msgFramer) feed(p []byte) (ends int) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch f.state {
		case frameBetween:
			if f.cr {
				f.cr = false
				if b == '\n' {
					ends++
					continue
				}
				// A CR that is not a CRLF starts a message (one sipgo will
				// not parse): the byte after it is the message's too.
				f.startMessage()
				i--
				continue
			}
			if b == '\r' {
				f.cr = true
				continue
			}
			// The first byte of a message: read it again as the start
			// line's.
			f.startMessage()
			i--
		case frameBody:
			n := int64(len(p) - i)
			if n >= f.body {
				i += int(f.body) - 1
				f.body = 0
				f.state = frameBetween
				ends++
				continue
			}
			f.body -= n
			return ends
		default:
			if f.cr {
				f.cr = false
				if b == '\n' {
					if f.endLine() {
						ends++
					}
					continue
				}
				// The CR was part of the line (sipgo refuses such a line).
				f.line('\r')
			}
			if b == '\r' {
				f.cr = true
				continue
			}
			if f.state == frameValue || f.state == frameStartLine {
				// The rest of an ordinary line says nothing to framing:
				// jump to its CR.
				j := bytes.IndexByte(p[i:], '\r')
				if j < 0 {
					return ends
				}
				i += j
				f.cr = true
				continue
			}
			f.line(b)
		}
	}
	return ends
}

// startMessage begins a message at its first byte.
func (f *msgFramer) startMessage() {
	f.state = frameStartLine
	f.length = 0
	f.lengthLine = false
}

// line takes one byte of a line other than its CRLF.
func (f *msgFramer) line(b byte) {
	switch f.state {
	case frameStartLine, frameValue:
	case frameName:
		if f.lineStart {
			f.lineStart = false
			if b == ' ' || b == '\t' {
				// A folded line: the header above goes on.
				if f.lengthLine {
					f.state = frameLength
				} else {
					f.state = frameValue
				}
				return
			}
			f.name, f.nameLen, f.compact, f.named = 0, 0, false, false
		}
		f.nameByte(b)
	case frameLength:
		switch {
		case b >= '0' && b <= '9':
			if f.length < maxFrameBody {
				f.length = f.length*10 + int64(b-'0')
			}
		case b == ' ' || b == '\t':
		default:
			// Not a number: sipgo refuses the message and the connection.
			f.state = frameValue
		}
	}
}

// nameByte takes one byte of a header's name, or its colon.
func (f *msgFramer) nameByte(b byte) {
	switch {
	case b == ':':
		if f.name == len(contentLength) || (f.nameLen == 1 && f.compact) {
			// The last Content-Length is the one that counts.
			f.state, f.length = frameLength, 0
			return
		}
		f.state = frameValue
	case b == ' ' || b == '\t':
		// Spaces end the name: sipgo trims them before the colon.
		f.named = true
	case f.named:
		// More name after the spaces that ended it: no name sipgo knows.
		f.name, f.compact = -1, false
	default:
		f.nameLen++
		if f.nameLen == 1 {
			f.compact = b|0x20 == 'l'
		}
		if f.name >= 0 && f.name < len(contentLength) && b|0x20 == contentLength[f.name] {
			f.name++
		} else {
			f.name = -1
		}
	}
}

// endLine takes a line's CRLF and reports whether it ended the message.
func (f *msgFramer) endLine() bool {
	if f.state == frameName && f.lineStart {
		// The empty line: the headers are over.
		if f.length == 0 {
			f.state = frameBetween
			return true
		}
		f.state, f.body = frameBody, f.length
		return false
	}
	f.lengthLine = f.state == frameLength
	f.state, f.lineStart = frameName, true
	return false
}
