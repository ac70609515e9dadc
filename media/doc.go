// Package media is vnum's media plane: it allocates RTP/RTCP port pairs,
// negotiates SDP (RFC 3264 offer/answer with pion/sdp), detects DTMF
// (RFC 4733 telephone-events and in-band tones), encodes G.711, plays the
// embedded IVR prompts and relays RTP and RTCP between the two legs of a call.
//
// Where the host allows, the RTP of bridged calls is handed to the kernel
// relay of package media/kernel (Ports.UseKernel), which forwards it
// without waking vnum; everything that needs vnum stays here.
//
// The package knows nothing of SIP or of the binding store: package sip
// drives it through Ports, the SDP helpers, Stream and Bridge.
package media
