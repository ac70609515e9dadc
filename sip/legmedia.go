package sip

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
)

// legMedia is one leg's media as its call owns it: the port pair, the
// stream on it, our side of the leg's SDP session and its media timeout.
type legMedia struct {
	pair   mediaPair
	stream legStream
	sdp    sdpSession
	idle   mediaWatch
}

// sdpSession is our side of one leg's SDP session: the current body and
// the o= id and version (RFC 3264 §8).
type sdpSession struct {
	body    []byte
	id, ver uint64
}

// newSDPSession starts a session with a random id (RFC 4566 §5.2), its
// version the id.
func newSDPSession() sdpSession {
	id := sessionID()
	return sdpSession{id: id, ver: id}
}

// sessionID is a random SDP session id (RFC 4566 §5.2).
func sessionID() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.BigEndian.Uint64(b[:]) >> 2
}

// mediaWatch is a leg's media timeout: quiet fires when the leg sent no
// RTP for media.timeout; nil while the leg is on hold (it may send none).
type mediaWatch struct {
	silent bool
	quiet  <-chan struct{}
	stop   func()
}

// watch (re)starts the media timeout of a leg that is not on hold.
func (m *legMedia) watch(timeout time.Duration) {
	m.unwatch()
	if timeout > 0 && m.stream != nil && !m.idle.silent {
		m.idle.quiet, m.idle.stop = m.stream.Quiet(timeout)
	}
}

// unwatch stops the media timeout.
func (m *legMedia) unwatch() {
	if m.idle.stop != nil {
		m.idle.stop()
	}
	m.idle.quiet, m.idle.stop = nil, nil
}

// reoffer answers an in-dialog re-INVITE or UPDATE of the leg (hold,
// resume, session refresh, RFC 3311 / RFC 4028) so the call stays up: it
// follows a changed remote address, answers the offered direction
// (sendonly → recvonly) and bumps the o= version only when the answer
// changes. A leg on hold may send no RTP, so media.timeout does not count
// it until it resumes: bridged says the timeout runs now. contact is
// vnum's Contact in the leg's dialog.
func (m *legMedia) reoffer(req *sip.Request, o callOptions, contact sip.ContactHeader, bridged bool, l leg, log *slog.Logger) *sip.Response {
	if len(req.Body()) > 0 && m.stream != nil {
		d, err := media.ParseSDP(req.Body())
		if err != nil {
			return sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, reasonPhrase(sip.StatusNotAcceptableHere), nil)
		}
		d.Prefer(m.stream.Audio()) // the relay converts to the codec in use
		held := d.Port == 0 || !d.Addr.IsValid() || d.Addr.IsUnspecified()
		if !held {
			m.stream.SetRemote(d.RemoteAddr())
		}
		body, err := m.reanswer(d, o)
		if err != nil {
			return sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, reasonPhrase(sip.StatusNotAcceptableHere), nil)
		}
		m.sdp.body = body
		// Any hold (sendonly, recvonly, inactive) may stop a phone's RTP.
		silent := held || d.Direction != media.SendRecv
		if silent != m.idle.silent {
			m.idle.silent = silent
			if bridged {
				// The timeout stops on hold and counts again from the resume.
				m.watch(o.mediaTimeout)
			}
		}
		log.Info("re-offer", "leg", int(l), "direction", d.Direction)
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, reasonPhrase(sip.StatusOK), nil)
	if req.IsInvite() || len(req.Body()) > 0 {
		res.SetBody(m.sdp.body)
		res.AppendHeader(contentTypeSDP())
	}
	res.AppendHeader(&contact)
	return res
}

// reanswer is our answer to offer d, its version bumped only when the
// answer changes (RFC 3264 §8).
func (m *legMedia) reanswer(d *media.Desc, o callOptions) ([]byte, error) {
	at := m.pair.addr()
	ip, port := o.sdpAddr(at.Addr()), int(at.Port())
	answer, _, _, err := media.AnswerVersion(d, ip, port, m.sdp.id, m.sdp.ver)
	if err != nil || bytes.Equal(answer, m.sdp.body) {
		return answer, err
	}
	m.sdp.ver++
	answer, _, _, err = media.AnswerVersion(d, ip, port, m.sdp.id, m.sdp.ver)
	return answer, err
}

// closeStream closes the leg's stream (it stops relaying and playing).
func (m *legMedia) closeStream(log *slog.Logger) {
	if m.stream != nil {
		if err := m.stream.Close(); err != nil {
			log.Debug("closing stream", "error", err)
		}
	}
}

// closePair closes the leg's port pair: its ports drain and go back to
// the pool.
func (m *legMedia) closePair(log *slog.Logger) {
	if m.pair != nil {
		if err := m.pair.Close(); err != nil {
			log.Debug("closing socket", "error", err)
		}
	}
}

// contentTypeSDP is the Content-Type of a message carrying SDP.
func contentTypeSDP() sip.Header { return sip.NewHeader("Content-Type", "application/sdp") }
