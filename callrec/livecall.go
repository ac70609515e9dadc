package callrec

import "time"

// LiveCall is a call in progress as the admin API's /v1/calls shows it:
// signalling publishes it, the API lists it. It carries no consignee
// number and no caller address.
type LiveCall struct {
	// ID is vnum's call id (also leg B's Call-ID).
	ID string `json:"id"`
	// Merchant is the merchant whose binding the call reached, once known.
	Merchant string `json:"merchant,omitempty"`
	// Binding is the binding's id, once resolved.
	Binding string `json:"binding,omitempty"`
	// Host is the host number X dialled.
	Host string `json:"host"`
	// Extension is the extension E, once keyed or dialled.
	Extension string `json:"extension,omitempty"`
	// State is where the call is: new, ivr, ringing, bridged, ending.
	State string `json:"state"`
	// StartedAt is when the call's INVITE was taken (UTC).
	StartedAt time.Time `json:"started_at"`
}
