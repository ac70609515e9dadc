//go:build linux

package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// attach attaches prog to the ingress of the interface ifindex as how
// says, and returns how it did and how to undo it.
func attach(prog *ebpf.Program, ifindex int, how Attach) (Attach, func() error, error) {
	if how != AttachTC {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXIngress})
		if err == nil {
			return AttachTCX, l.Close, nil
		}
		if how == AttachTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return 0, nil, fmt.Errorf("tcx: %w", err)
		}
	}
	f, err := attachTC(prog, ifindex)
	if err != nil {
		return 0, nil, fmt.Errorf("tc: %w", err)
	}
	return AttachTC, f.close, nil
}

// Traffic control constants (linux/pkt_sched.h, linux/pkt_cls.h); the
// filter is the one `tc filter add dev IF ingress prio P handle 1 bpf da
// fd FD name vnum_relay` would add.
const (
	tcHClsact       = 0xFFFFFFF1 // TC_H_CLSACT, the clsact qdisc's parent
	tcHClsactHandle = 0xFFFF0000 // TC_H_MAKE(TC_H_CLSACT, 0)
	tcHIngress      = 0xFFFFFFF2 // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
	tcaKind         = 1
	tcaOptions      = 2
	tcaBPFFD        = 6
	tcaBPFName      = 7
	tcaBPFFlags     = 8
	tcaBPFID        = 11
	tcaBPFActDirect = 1
	filterHandle    = 1
	filterName      = "vnum_relay"
)

// tcFilter is the cls_bpf filter attachTC added. Its netlink socket,
// opened in the interface's network namespace, stays open to remove it.
type tcFilter struct {
	fd      int
	ifindex int
	prio    uint16
	seq     uint32
}

// attachTC adds a clsact qdisc to the interface (unless it has one) and
// the relay as a direct-action cls_bpf filter on its ingress, at a
// priority no other filter there holds.
func attachTC(prog *ebpf.Program, ifindex int) (*tcFilter, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, errors.Join(fmt.Errorf("netlink: %w", err), unix.Close(fd))
	}
	f := &tcFilter{fd: fd, ifindex: ifindex}
	err = f.request(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL,
		tcmsg(ifindex, tcHClsactHandle, tcHClsact, 0), rtattr(tcaKind, cstring("clsact")))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, errors.Join(fmt.Errorf("add clsact qdisc: %w", err), unix.Close(fd))
	}
	opts := append(append(rtattr(tcaBPFFD, u32(uint32(prog.FD()))), rtattr(tcaBPFName, cstring(filterName))...),
		rtattr(tcaBPFFlags, u32(tcaBPFActDirect))...)
	for range 16 {
		f.prio = uint16(0x4000 + rand.IntN(0x8000))
		err = f.request(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL, f.msg(), rtattr(tcaKind, cstring("bpf")), rtattr(tcaOptions, opts))
		if err == nil {
			return f, nil
		}
	}
	return nil, errors.Join(fmt.Errorf("add bpf filter: %w", err), unix.Close(fd))
}

// msg is the filter's tcmsg.
func (f *tcFilter) msg() []byte {
	return tcmsg(f.ifindex, filterHandle, tcHIngress, uint32(f.prio)<<16|ethPAll())
}

// close deletes the filter; the clsact qdisc stays, as other programs may
// have filters on it.
func (f *tcFilter) close() error {
	err := f.request(unix.RTM_DELTFILTER, 0, f.msg(), rtattr(tcaKind, cstring("bpf")))
	if errors.Is(err, unix.ENOENT) {
		err = nil // the interface went away with its filters
	}
	if err != nil {
		err = fmt.Errorf("kernel relay: delete tc filter: %w", err)
	}
	return errors.Join(err, unix.Close(f.fd))
}

// attached returns the ids of the programs on the ingress of the
// interface ifindex: TCX's, and cls_bpf filters' on a clsact qdisc.
func attached(ifindex int) ([]uint32, error) {
	var ids []uint32
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress})
	switch {
	case err == nil:
		for _, p := range res.Programs {
			ids = append(ids, uint32(p.ID))
		}
	case !errors.Is(err, ebpf.ErrNotSupported):
		return nil, fmt.Errorf("tcx: %w", err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	f := &tcFilter{fd: fd, ifindex: ifindex}
	defer unix.Close(fd)
	err = f.dump(unix.RTM_GETTFILTER, tcmsg(ifindex, 0, tcHIngress, 0), func(attrs []syscall.NetlinkRouteAttr) {
		for _, a := range attrs {
			if a.Attr.Type != tcaOptions {
				continue
			}
			for _, o := range nested(a.Value) {
				if o.Attr.Type == tcaBPFID && len(o.Value) >= 4 {
					ids = append(ids, binary.NativeEndian.Uint32(o.Value))
				}
			}
		}
	})
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: no clsact qdisc
		return nil, fmt.Errorf("tc: %w", err)
	}
	return ids, nil
}

// dump sends a dump request and calls fn with the attributes of each
// tcmsg it returns.
func (f *tcFilter) dump(typ uint16, body []byte, fn func([]syscall.NetlinkRouteAttr)) error {
	f.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	msg = append(msg, body...)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(msg[8:], f.seq)
	if err := unix.Sendto(f.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(f.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != f.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
						return unix.Errno(-code)
					}
				}
				return nil
			}
			if len(m.Data) < 20 {
				continue
			}
			fn(nested(m.Data[20:]))
		}
	}
}

// nested parses a run of netlink attributes (those after a tcmsg, or
// those nested in one).
func nested(b []byte) []syscall.NetlinkRouteAttr {
	var out []syscall.NetlinkRouteAttr
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			break
		}
		out = append(out, syscall.NetlinkRouteAttr{
			Attr:  syscall.RtAttr{Len: uint16(l), Type: binary.NativeEndian.Uint16(b[2:]) &^ unix.NLA_F_NESTED},
			Value: b[4:l],
		})
		b = b[(l+3)&^3:]
	}
	return out
}

// request sends one netlink request and waits for its acknowledgement.
func (f *tcFilter) request(typ, flags uint16, parts ...[]byte) error {
	f.seq++
	msg := make([]byte, unix.NLMSG_HDRLEN)
	for _, p := range parts {
		msg = append(msg, p...)
	}
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], f.seq)
	if err := unix.Sendto(f.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(f.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != f.seq || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

// tcmsg is struct tcmsg: family, padding, ifindex, handle, parent, info.
func tcmsg(ifindex int, handle, parent, info uint32) []byte {
	b := make([]byte, 20)
	binary.NativeEndian.PutUint32(b[4:], uint32(ifindex))
	binary.NativeEndian.PutUint32(b[8:], handle)
	binary.NativeEndian.PutUint32(b[12:], parent)
	binary.NativeEndian.PutUint32(b[16:], info)
	return b
}

// rtattr is one netlink attribute, padded to 4 bytes.
func rtattr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cstring(s string) []byte { return append([]byte(s), 0) }

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// ethPAll is htons(ETH_P_ALL) as tcmsg's info carries it.
func ethPAll() uint32 {
	return uint32(port(unix.ETH_P_ALL))
}
