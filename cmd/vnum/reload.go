package main

import (
	"log/slog"

	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/protection"
	"github.com/vnum/vnum/sip"
)

// reloadNode re-reads the configuration (the file serve was started with,
// and the environment) for a running node and returns the configuration
// now in force. Keys a running node takes (log.level, security.*,
// trunk.*, and the sections to come: protection.*, events.*) apply to new
// calls at once; the others changed are named in one line as needing a
// restart and keep their running values. A configuration that does not
// load or validate is refused, in one line, and the running one kept.
func reloadNode(file string, running *config.Config, n *node, log *slog.Logger) *config.Config {
	next, err := config.Load(file)
	if err == nil {
		err = next.Validate()
	}
	if err == nil && next.Trunk.Outbound == "" {
		err = errNoTrunk
	}
	if err != nil {
		log.Error("reload refused: the running configuration is kept", "error", err)
		return running
	}
	var now, restart []string
	for _, key := range running.Changed(next) {
		if config.AtRunTime(key) {
			now = append(now, key)
		} else {
			restart = append(restart, key)
		}
	}
	if len(restart) > 0 {
		log.Warn("reload: these keys take effect only after a restart; their running values are kept", "keys", restart)
		next.Keep(running, restart)
	}
	if len(now) == 0 {
		log.Info("reload: nothing to change")
		return next
	}
	r, err := sipReloadable(next)
	var platform protection.Platform
	if err == nil {
		platform, err = next.Protection.Platform()
	}
	if err == nil {
		err = n.sip.Reload(r)
	}
	if err != nil {
		log.Error("reload refused: the running configuration is kept", "error", err)
		return running
	}
	// protection.* is in force for new calls and the admin API from now.
	n.router.setPlatform(platform)
	if n.events != nil {
		n.events.Reload(next.Events)
	}
	if err := setLogLevel(next.Log.Level); err != nil {
		// Validate checked it: this is a bug, not the operator's.
		log.Error("reload: log.level", "error", err)
	}
	log.Info("configuration reloaded", "changed", now)
	return next
}

// sipReloadable is the part of c a running SIP server takes anew.
func sipReloadable(c *config.Config) (sip.Reloadable, error) {
	cidrs, err := c.Trunk.InboundPrefixes()
	if err != nil {
		return sip.Reloadable{}, err
	}
	return sip.Reloadable{
		AuthFailures:      c.Security.AuthFailures,
		BlockFor:          c.Security.BlockFor,
		InviteRate:        c.Security.InviteRate,
		InvalidExtensions: c.Security.InvalidExtensions,
		TrunkOutbound:     c.Trunk.Outbound,
		TrunkKeepalive:    c.Trunk.Keepalive,
		TrunkUsername:     c.Trunk.Username,
		TrunkPassword:     c.Trunk.Password,
		InboundCIDRs:      cidrs,
		NumberFormat:      c.Trunk.NumberFormat,
	}, nil
}
