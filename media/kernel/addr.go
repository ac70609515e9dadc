package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The program's maps hold addresses and ports in network byte order, in
// fields the generated Go types read as host-order integers: each value
// is the native reading of the wire bytes.

func addr4(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

func port(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func nativeUint16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }
func nativeUint32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

func addrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func portOf(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

// key converts k for the program, refusing what is not IPv4.
func key(k Key) (relayFlowKey, error) {
	if !k.Local.Addr().Unmap().Is4() || !k.Peer.Addr().Unmap().Is4() {
		return relayFlowKey{}, fmt.Errorf("%w: flow %s from %s", ErrNotIPv4, k.Local, k.Peer)
	}
	return relayFlowKey{
		LocalIp:   addr4(k.Local.Addr()),
		PeerIp:    addr4(k.Peer.Addr()),
		LocalPort: port(k.Local.Port()),
		PeerPort:  port(k.Peer.Port()),
	}, nil
}

func keyOf(k relayFlowKey) Key {
	return Key{
		Local: netip.AddrPortFrom(addrOf(k.LocalIp), portOf(k.LocalPort)),
		Peer:  netip.AddrPortFrom(addrOf(k.PeerIp), portOf(k.PeerPort)),
	}
}
