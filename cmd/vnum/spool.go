package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vnum/vnum/binding"
	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/config"
	"github.com/vnum/vnum/sip"
	"github.com/vnum/vnum/spool"
)

// openSpool opens the node's spool (store.spool), where the ends of calls
// the store would not take wait across a restart. A directory this
// process cannot write is refused at start, in one line naming the key,
// rather than found out in a store outage.
func openSpool(c *config.Config) (*spool.Spool, error) {
	dir := c.Store.SpoolDir(configFile)
	sp, err := spool.Open(dir, nodeID(c))
	if err != nil {
		return nil, fmt.Errorf("store.spool: %w (set store.spool to a directory of this node's own that vnum may write)", err)
	}
	return sp, nil
}

// replaySpool writes the ends an earlier process of the node spooled
// because the store would not take them, with their own times: their
// calls are billed for the talk they had, and the node's recovery does not
// close them as interrupted. Run it holding the node's lease, before
// RecoverInterrupted. An end the store already has (written before the
// process stopped) changes nothing; one whose record the store does not
// know is dropped with an error line. Any other failure fails the start:
// the ends stay in the spool for the next try.
func replaySpool(ctx context.Context, s *binding.Store, sp *spool.Spool, rates binding.Rates, log *slog.Logger) (int, error) {
	if n := sp.Skipped(); n > 0 {
		log.Warn("spool: lines that could not be read were skipped (a crash in mid-write)", "count", n, "spool", sp.Path())
	}
	written := 0
	for _, end := range sp.Left() {
		rec := end
		err := s.FinishCDR(ctx, &rec, rates)
		switch {
		case err == nil:
			written++
		case errors.Is(err, binding.ErrCDRFinished):
		case errors.Is(err, binding.ErrNotFound):
			log.Error("spool: a spooled CDR end has no record in the store; dropped", "call", end.ID, "spool", sp.Path())
		default:
			return written, fmt.Errorf("store.spool: writing the CDR ends of %s: %w", sp.Path(), err)
		}
		if err := sp.Done(end.ID); err != nil {
			return written, fmt.Errorf("store.spool: %w", err)
		}
	}
	if err := sp.Tidy(); err != nil {
		return written, fmt.Errorf("store.spool: %w", err)
	}
	return written, nil
}

// endLegsTimeout bounds the BYEs a start sends in the legs of the calls a
// crash cut: a non-INVITE transaction over UDP gives up after 64×T1, 32 s
// (RFC 3261 §17.1.2.2), and an unanswered BYE is not waited for longer.
const endLegsTimeout = 64*500*time.Millisecond + 3*time.Second

// endLegs hangs up, in the background, the legs the calls that a crash
// of the node cut left up, once the SIP server serves; stop cancels what
// is still in flight and waits for it.
func endLegs(srv *sip.Server, legs map[string]callrec.Legs) (stop func()) {
	if len(legs) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), endLegsTimeout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		srv.EndLegs(ctx, legs)
	}()
	return func() {
		cancel()
		<-done
	}
}
