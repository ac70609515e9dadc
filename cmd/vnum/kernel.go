package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/media/kernel"
)

// openKernelRelay does what media.kernel asks for the calls on ports: off
// relays RTP in user space; auto loads the kernel relay where the host
// allows (root, Linux 5.10, an Ethernet or loopback interface carrying
// media.ip) and otherwise relays in user space, saying so once; on
// refuses to serve without it, in one line saying why. stop unloads it,
// once the calls are over. announce logs which path RTP takes: serve calls
// it once the node holds its lease, so that a serve refused after this
// (a port or a node.id in use) still says so in one line.
func openKernelRelay(m config.Media, ports *media.Ports, log *slog.Logger) (stop, announce func(), err error) {
	if m.Kernel == config.KernelOff {
		return func() {}, func() { log.Info("rtp relayed in user space", "media.kernel", m.Kernel) }, nil
	}
	r, stopPath, err := loadKernelRelay(m, ports, log)
	if err != nil {
		// A verifier's refusal runs over many lines; the log and the
		// refusal keep to one.
		why := strings.Join(strings.Fields(err.Error()), " ")
		if m.Kernel == config.KernelOn {
			return nil, nil, fmt.Errorf("media.kernel: on, but the kernel cannot relay RTP here: %s", why)
		}
		return func() {}, func() {
			log.Warn("rtp relayed in user space: the kernel cannot relay it here", "media.kernel", m.Kernel, "error", why)
		}, nil
	}
	stop = func() {
		stopPath()
		if err := r.Close(); err != nil {
			log.Error("unloading the kernel relay", "error", err)
		}
	}
	announce = func() {
		log.Info("rtp relayed in the kernel", "media.kernel", m.Kernel, "interface", r.Interface(),
			"attach", r.Attachment().String(), "program_id", r.ProgramID())
	}
	return stop, announce, nil
}

// loadKernelRelay loads the relay on media.ip with a flow table for every
// port pair of media.rtp_ports (one flow per leg: the packets it reads),
// and hands it to ports.
func loadKernelRelay(m config.Media, ports *media.Ports, log *slog.Logger) (*kernel.Relay, func(), error) {
	ip, err := m.Addr()
	if err != nil {
		return nil, nil, err
	}
	o := kernel.Options{}
	if lo, hi, err := m.PortRange(); err == nil {
		o.MaxFlows = max(kernel.DefaultMaxFlows, (hi-lo+1)/2)
	}
	r, err := kernel.Open(ip, o)
	if err != nil {
		return nil, nil, err
	}
	stop, err := ports.UseKernel(r, log)
	if err != nil {
		if cerr := r.Close(); cerr != nil {
			log.Error("unloading the kernel relay", "error", cerr)
		}
		return nil, nil, err
	}
	return r, stop, nil
}
