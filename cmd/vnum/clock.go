package main

import (
	"sync/atomic"
	"time"
)

// movedClock is the real clock moved by an offset that can be changed
// while calls read it: the demo shows quiet hours by moving it into the
// night, and tests set it to the hour they need.
type movedClock struct{ shift atomic.Int64 }

// now is the real time moved by the clock's offset.
func (c *movedClock) now() time.Time { return time.Now().Add(time.Duration(c.shift.Load())) }

// set moves the clock so that it reads at now.
func (c *movedClock) set(at time.Time) { c.shift.Store(int64(time.Until(at))) }

// nextAt returns the first instant after from that reads hh:mm on a
// clock in loc.
func nextAt(from time.Time, loc *time.Location, hh, mm int) time.Time {
	l := from.In(loc)
	at := time.Date(l.Year(), l.Month(), l.Day(), hh, mm, 0, 0, loc)
	if !at.After(from) {
		at = time.Date(l.Year(), l.Month(), l.Day()+1, hh, mm, 0, 0, loc)
	}
	return at
}
