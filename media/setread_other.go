//go:build !linux

package media

import (
	"errors"
	"syscall"
)

// setReader reads one socket of many streams on one goroutine on Linux
// (an epoll set); elsewhere each stream reads its sockets on goroutines
// of its own.
type setReader struct {
	rtcp bool
}

// setEntry is where one socket of a stream is read by a setReader: never,
// here.
type setEntry struct {
	r *setReader
}

var errNoSetReader = errors.New("media: no shared socket reader on this system")

func (r *setReader) add(*Stream, *setEntry, syscall.Conn) error { return errNoSetReader }

func (r *setReader) remove(*Stream, setEntry) {}
