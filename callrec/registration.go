package callrec

import "time"

// Registration is where an account's softphone registered with vnum, its
// registrar (RFC 3261 §10): kept in the store, so that any node can send
// a call or a call back to a softphone that registered with another node.
type Registration struct {
	// User is the account's SIP user name.
	User string
	// Contact is the Contact URI of the REGISTER (RFC 3261 §10.2.1), as
	// text; signalling parses it back into a URI.
	Contact string
	// Source is the host:port the REGISTER came from. Requests go there
	// rather than to Contact, so that a softphone behind NAT is reached
	// (RFC 3261 §18.2.2 answers to the source the same way).
	Source string
	// Transport is the transport the REGISTER came over: "udp", "tcp" or
	// "tls".
	Transport string
	// Expires is when the registration lapses unless renewed (UTC).
	Expires time.Time
	// Node is the node.id of the node that took the REGISTER; the store
	// fills it in (WithNode) and a lookup returns it.
	Node string
}
