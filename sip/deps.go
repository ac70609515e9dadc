package sip

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
)

// callDeps is all a call uses besides itself, and all it reaches: the
// server builds one for its calls once its listeners are bound
// (Server.callDeps); the unit tests of a call's script build theirs from
// fakes (script_test.go). Nothing in it leads back to the server.
type callDeps struct {
	opts callOptions
	// directory resolves the dialled extension and checks a number a
	// callback dials; recorder keeps the call's record.
	directory Directory
	recorder  Recorder
	// protector is consignee protection; nil lets every call ring B and
	// bridges as soon as B answers.
	protector Protector
	// media gives each leg its RTP ports and stream.
	media mediaPorts
	// legB sends leg B's INVITEs (the dialog agent of leg B).
	legB legBDialer
	// routes says where leg B goes: the carrier trunk, a softphone.
	routes legBRoutes
	// refusals is the front door's policy: what counts as overload, and
	// the Retry-After of a 503.
	refusals refusalPolicy
	// walks counts the wrong extensions each caller keys
	// (security.invalid_extensions).
	walks *walkLimit
	// backlog takes the CDR ends the store would not take.
	backlog *cdrBacklog
	// recordings says which calls are recorded and where (nil: none);
	// recordChoice what a merchant chose, for its calls back (nil: none
	// recorded in recording.mode merchant).
	recordings   *recordings
	recordChoice RecordingChoice
	// legBFailures and panics are the metrics the call feeds.
	legBFailures *legBFailureCounts
	protected    *protectedCounts
	panics       *panicCounter
	kpi          *kpis
	log          *slog.Logger
}

// callOptions is the part of the options a call reads.
type callOptions struct {
	// host is vnum's SIP host: the From and P-Asserted-Identity of leg
	// B's INVITE.
	host string
	// sdpIP is sip.public_host when it is an IP address: what vnum's SDP
	// advertises instead of the relay's own address (behind NAT).
	sdpIP netip.Addr

	answerMode        config.AnswerMode
	language          string
	extensionDigits   int
	attempts          int
	firstDigitTimeout time.Duration
	interDigitTimeout time.Duration
	ringTimeout       time.Duration
	mediaTimeout      time.Duration
	maxDuration       time.Duration
	cdrRefresh        time.Duration
	storeTimeout      storeTimeout
}

// sdpAddr is the address vnum's SDP advertises for a leg's media: the
// relay's own, or sdpIP when set.
func (o callOptions) sdpAddr(relay netip.Addr) netip.Addr {
	if o.sdpIP.IsValid() {
		return o.sdpIP
	}
	return relay
}

// callerDialog is leg A's dialog as the call uses it
// (*sipgo.DialogServerSession).
type callerDialog interface {
	Respond(statusCode int, reason string, body []byte, headers ...sip.Header) error
	RespondSDP(sdp []byte) error
	Bye(ctx context.Context) error
	Context() context.Context
	LoadState() sip.DialogState
}

// legBDialer sends leg B's INVITEs. It registers each fork it sends with
// the calls in progress, so that the callee's requests in the fork's
// dialog (BYE, ACK, re-INVITE) find h.
type legBDialer interface {
	invite(ctx context.Context, req *sip.Request, h *callHandle) (calleeDialog, error)
	// contact is vnum's Contact in leg B's dialogs.
	contact() sip.ContactHeader
}

// calleeDialog is one fork of leg B, its INVITE sent
// (*sipgo.DialogClientSession, as sipgoFork).
type calleeDialog interface {
	WaitAnswer(ctx context.Context, opts sipgo.AnswerOptions) error
	Ack(ctx context.Context) error
	Bye(ctx context.Context) error
	ReadBye(req *sip.Request, tx sip.ServerTransaction) error
	Context() context.Context
	LoadState() sip.DialogState
	// request is the fork's INVITE; answer its final response once one
	// came (nil before).
	request() *sip.Request
	answer() *sip.Response
}

// legBRoutes says where leg B goes.
type legBRoutes interface {
	// viaTrunk is number (E.164) on the carrier trunk, in
	// trunk.number_format; false when no outbound trunk is configured.
	viaTrunk(number string) (legBTarget, bool)
	// toSoftphone is an account's registered softphone; false when it has
	// no registration now.
	toSoftphone(ctx context.Context, user string) (legBTarget, bool)
}

// refusalPolicy is what a call asks of the front door: it counts a call
// refused for err (an overload), and says what Retry-After a final
// status carries.
type refusalPolicy interface {
	Count(err error)
	RetryAfter(code int, trunkFailed bool) []sip.Header
}

// mediaPorts gives each leg its media (media.Ports): a pair of RTP and
// RTCP ports, whose stream starts once the leg's formats are known, and
// the relay between two legs' streams.
type mediaPorts interface {
	openPair() (mediaPair, error)
	relay(from, to legStream) error
}

// mediaPair is one leg's RTP/RTCP port pair (media.Socket).
type mediaPair interface {
	// addr is where the pair listens: the relay's address and RTP port.
	addr() netip.AddrPort
	// start starts the leg's stream on the pair.
	start(s streamSpec, log *slog.Logger) legStream
	Close() error
}

// streamSpec is what a leg's stream starts with: where the peer's SDP
// says its RTP goes (zero: not known yet), the formats, and the host the
// peer's signalling came from (a phone behind NAT sends RTP from there;
// zero: none).
type streamSpec struct {
	remote     netip.AddrPort
	audio      media.Codec
	dtmf       *media.Codec
	signalHost netip.Addr
	leg        string // "a" or "b", for the media metrics
}

// legStream is a leg's media as the call uses it (*media.Stream): it plays
// prompts and tones, hears digits, says when the peer went quiet, and
// follows re-offers.
type legStream interface {
	Play(ctx context.Context, pcm []int16) error
	Digits() <-chan rune
	Quiet(d time.Duration) (<-chan struct{}, func())
	Audio() media.Codec
	SetCodecs(audio media.Codec, dtmf *media.Codec)
	SetRemote(remote netip.AddrPort)
	StopRelay()
	// WatchKeys has the stream collect its peer's keys while bridged
	// too (the consignee's block key).
	WatchKeys(on bool)
	// SetTap hands what the stream relays to a recording as well.
	SetTap(t media.Tap)
	Close() error
}

// mediaPool is vnum's media for calls: media.Ports' pairs and
// media.Stream.
type mediaPool struct{ ports *media.Ports }

func (p mediaPool) openPair() (mediaPair, error) {
	sock, err := p.ports.Open()
	if err != nil {
		return nil, err
	}
	return socketPair{sock}, nil
}

// relay relays from's packets to to (media.Relay).
func (mediaPool) relay(from, to legStream) error {
	f, ok := from.(*media.Stream)
	t, ok2 := to.(*media.Stream)
	if !ok || !ok2 {
		return media.ErrBridgeStreams
	}
	return media.Relay(f, t)
}

// socketPair is a media.Socket as a leg's mediaPair.
type socketPair struct{ sock *media.Socket }

func (p socketPair) addr() netip.AddrPort {
	return netip.AddrPortFrom(p.sock.IP, uint16(p.sock.Port))
}

func (p socketPair) start(s streamSpec, log *slog.Logger) legStream {
	st := media.NewStream(p.sock, s.remote, s.audio, s.dtmf, log)
	st.SetLeg(s.leg)
	if s.signalHost.IsValid() {
		st.SetSignalHost(s.signalHost)
	}
	st.Start()
	return st
}

func (p socketPair) Close() error { return p.sock.Close() }

// legBAgent sends leg B's INVITEs through sipgo's dialog agent of leg B
// and registers each fork with the calls in progress.
type legBAgent struct {
	ua   *sipgo.DialogUA
	live *registry
}

func (a legBAgent) invite(ctx context.Context, req *sip.Request, h *callHandle) (calleeDialog, error) {
	d, err := a.ua.WriteInvite(ctx, req)
	if err != nil {
		return nil, err
	}
	f := sipgoFork{d}
	a.live.addFork(h, f)
	return f, nil
}

func (a legBAgent) contact() sip.ContactHeader { return a.ua.ContactHDR }

// sipgoFork is a sipgo client dialog as a fork of leg B.
type sipgoFork struct{ *sipgo.DialogClientSession }

func (f sipgoFork) request() *sip.Request { return f.InviteRequest }
func (f sipgoFork) answer() *sip.Response { return f.InviteResponse }

// routes is where vnum's leg B goes: the trunk, and the registrar's
// softphones.
type routes struct {
	trunk *trunk
	reg   *registrar
}

func (r routes) viaTrunk(number string) (legBTarget, bool) { return r.trunk.target(number) }

func (r routes) toSoftphone(ctx context.Context, user string) (legBTarget, bool) {
	reg, ok := r.reg.lookup(ctx, user)
	if !ok {
		return legBTarget{}, false
	}
	return contactTarget(user, reg), true
}
