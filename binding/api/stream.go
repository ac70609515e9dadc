package api

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/vnum/vnum/binding"
)

// DefaultStreamIdle is how long a streamed response waits for the client
// to take the next part of it when Options.StreamIdle is not set.
const DefaultStreamIdle = 30 * time.Second

// streamBuffer is how much of a streamed response is gathered before it
// is written to the connection: few enough bytes that memory stays flat,
// enough that a write carries many rows.
const streamBuffer = 32 << 10

// A listing (CDRs, bindings) is written as it is read: row by row from
// the store's cursor (binding.Rows) through an encoder into the response,
// never gathered first, so that a million rows take the memory of one.
// That has two consequences this file deals with.
//
// Time: the response lasts as long as the client takes to read it, so
// the server's one deadline for a whole response (http.Server's
// WriteTimeout) does not fit. Each write gets a deadline of its own
// instead (StreamIdle), renewed while rows flow: a long export completes,
// a client that stops reading is still let go.
//
// Failure: the status line went out with the first rows, so an error
// after that (the client gone, the store failing mid-way) cannot become an
// error status. The response is cut instead: the connection is closed
// without the end of the chunked body, so the client sees a transfer that
// did not complete (and a JSON array without its "]"), and the request's
// log line says "cut", with the rows written and why.

// streamNote is what a streamed response tells the request's log line.
type streamNote struct {
	rows  int64
	cut   string     // why the response was cut; "" when it was complete
	level slog.Level // the log level of a cut
}

// outcome returns the message, level and extra attributes of the log
// line of the request w answered, given the level of a plain request.
func (w *statusWriter) outcome(level slog.Level) (string, slog.Level, []any) {
	if w.stream == nil {
		return "admin request", level, nil
	}
	if w.stream.cut == "" {
		return "admin request", level, []any{"rows", w.stream.rows}
	}
	return "admin request cut", max(level, w.stream.level), []any{"rows", w.stream.rows, "cut", w.stream.cut}
}

// stream is one streamed response. Its writes go through a buffer to
// send, which sends the status and headers with the first bytes.
type stream struct {
	w      http.ResponseWriter
	r      *http.Request
	rc     *http.ResponseController
	log    *slog.Logger
	idle   time.Duration
	header func(http.Header) // sets the headers of the response
	out    *bufio.Writer
	sent   bool // the status and headers went out
	rows   int64
}

// sendError is a failure to write to the client.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// newStream starts a streamed response to r; header sets its headers.
func (s *server) newStream(w http.ResponseWriter, r *http.Request, header func(http.Header)) *stream {
	st := &stream{w: w, r: r, rc: http.NewResponseController(w), log: s.log, idle: s.opts.StreamIdle, header: header}
	st.out = bufio.NewWriterSize(sendFunc(st.send), streamBuffer)
	return st
}

// sendFunc is an io.Writer made of a function.
type sendFunc func([]byte) (int, error)

func (f sendFunc) Write(p []byte) (int, error) { return f(p) }

// sendHeader sends the status and headers, once.
func (st *stream) sendHeader() {
	if st.sent {
		return
	}
	h := st.w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	st.header(h)
	st.w.WriteHeader(http.StatusOK)
	st.sent = true
}

// send writes p to the client within the idle deadline, after the status
// and headers when they have not gone out yet.
func (st *stream) send(p []byte) (int, error) {
	st.sendHeader()
	if err := st.rc.SetWriteDeadline(time.Now().Add(st.idle)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, &sendError{err}
	}
	n, err := st.w.Write(p)
	if err != nil {
		return n, &sendError{err}
	}
	return n, nil
}

// streamRows writes rows as the response: begin (when not nil) opens the
// encoding in st.out, write encodes one row, end closes the encoding. It
// returns an error only when nothing was sent yet, to be answered as any
// error is; once the response has begun, a failure cuts it.
func streamRows[T any](st *stream, rows *binding.Rows[T], begin func() error, write func(T) error, end func() error) error {
	defer func() {
		if err := rows.Close(); err != nil {
			st.log.Debug("admin api: closing rows", "error", err)
		}
	}()
	if st.r.Method == http.MethodHead {
		// The headers a GET would send (the Link among them), without
		// reading rows that would be thrown away.
		st.sendHeader()
		st.note("", 0)
		return nil
	}
	if begin != nil {
		if err := begin(); err != nil {
			return st.fail(err)
		}
	}
	for rows.Next() {
		if err := write(rows.Row()); err != nil {
			return st.fail(err)
		}
		st.rows++
	}
	if err := rows.Err(); err != nil {
		return st.fail(err)
	}
	if err := end(); err != nil {
		return st.fail(err)
	}
	if err := st.out.Flush(); err != nil {
		return st.fail(err)
	}
	st.note("", 0)
	return nil
}

// fail handles an error of a streamed response: before anything was
// sent it drops what was buffered and returns err for the handler to
// answer; afterwards it cuts the response.
func (st *stream) fail(err error) error {
	if !st.sent {
		st.out.Reset(sendFunc(st.send))
		return err
	}
	var why string
	level := slog.LevelWarn
	var se *sendError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		why = fmt.Sprintf("client stalled: took nothing for %s", st.idle)
	case errors.Is(err, net.ErrClosed):
		// The server closed the connection: it is stopping and the
		// export did not end within its grace time.
		why = "server stopping: " + err.Error()
	case errors.As(err, &se):
		why = "client gone: " + se.Error()
	case st.r.Context().Err() != nil:
		// The server cancels the request's context when the connection
		// closes, at the client's end or (stopping) at its own, and the
		// store's cursor ends with it.
		why = "client gone or server stopping: the connection closed"
	default:
		why, level = "store: "+err.Error(), slog.LevelError
	}
	st.note(why, level)
	st.abort()
	return nil
}

// note records the response's outcome for its log line.
func (st *stream) note(cut string, level slog.Level) {
	if sw, ok := st.w.(*statusWriter); ok {
		sw.stream = &streamNote{rows: st.rows, cut: cut, level: level}
	}
}

// abort closes the connection under the response, without the chunked
// body's last chunk: the client sees a transfer that did not complete
// (curl: "transfer closed with outstanding read data remaining"), never a
// short listing that looks whole. The admin server speaks HTTP/1.1, where
// the connection can be taken over; were it not, the response would end
// as sent, a JSON array still without its "]".
func (st *stream) abort() {
	conn, _, err := st.rc.Hijack()
	if err != nil {
		st.log.Debug("admin api: cannot close the connection of a cut response", "error", err)
		return
	}
	if err := conn.Close(); err != nil {
		st.log.Debug("admin api: closing the connection of a cut response", "error", err)
	}
}

// streamJSON streams rows as a JSON array, with the Link header of the
// next page when there is one.
func streamJSON[T any](s *server, w http.ResponseWriter, r *http.Request, rows *binding.Rows[T], kind cursorKind) error {
	st := s.newStream(w, r, func(h http.Header) {
		h.Set("Content-Type", "application/json")
		setLink(h, r, rows, kind)
	})
	arr := binding.NewJSONArrayWriter(st.out, "")
	return streamRows(st, rows, nil, func(row T) error { return arr.Write(row) }, arr.Close)
}

// streamCSV streams rows as a CSV file named filename: the header row,
// then cells(row) for each row, with the Link header of the next page
// when there is one.
func streamCSV[T any](s *server, w http.ResponseWriter, r *http.Request, rows *binding.Rows[T], kind cursorKind,
	filename string, header []string, cells func(T) []string,
) error {
	st := s.newStream(w, r, func(h http.Header) {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="`+filename+`"`)
		setLink(h, r, rows, kind)
	})
	cw := binding.NewCSVWriter(st.out)
	return streamRows(st, rows, func() error { return cw.Write(header) },
		func(row T) error { return cw.Write(cells(row)) }, cw.Flush)
}

// setLink sets the Link header to the next page, when there is one.
func setLink[T any](h http.Header, r *http.Request, rows *binding.Rows[T], kind cursorKind) {
	if next, ok := rows.NextPage(); ok {
		h.Set("Link", nextLink(r, kind, next))
	}
}
