package sftpd

import (
	"io"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/pkg/sftp"
)

// A panic in code serving a client (a defect of hiegw) must cost that
// client's request or connection, not the gateway: pkg/sftp calls the
// request handlers from goroutines of its own, where an unrecovered panic
// ends the process with every MLLP feed. The guards below turn such a panic
// into a failed request (or a closed connection), log its stack and count
// it, as the MLLP listener does.

// recovered logs and counts a recovered panic p of what; it reports whether
// there was one.
func (s *Server) recovered(p any, what, account, peer string) bool {
	if p == nil {
		return false
	}
	s.stats.panics.Add(1)
	defect.Log(s.log, "sftp "+what+" failed after a panic, a defect of hiegw", p, "account", account, "peer", peer)
	return true
}

// guarded serves a session's requests through handler, each under a
// recover: a panic fails the request with a generic failure status.
type guarded struct{ h *handler }

var (
	_ sftp.TransferError   = guardedUpload{}
	_ io.Closer            = guardedUpload{}
	_ sftp.FileReader      = guarded{}
	_ sftp.FileWriter      = guarded{}
	_ sftp.FileCmder       = guarded{}
	_ sftp.FileLister      = guarded{}
	_ sftp.LstatFileLister = guarded{}
)

func (g guarded) recover(err *error) {
	if g.h.s.recovered(recover(), "request", g.h.a.name, g.h.c.peer) {
		*err = errFailed
	}
}

func (g guarded) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer g.recover(&err)
	return g.h.Fileread(r)
}

func (g guarded) Filewrite(r *sftp.Request) (_ io.WriterAt, err error) {
	defer g.recover(&err)
	w, err := g.h.Filewrite(r)
	if u, ok := w.(*upload); ok && err == nil {
		return guardedUpload{g: g, u: u}, nil
	}
	return w, err
}

func (g guarded) Filecmd(r *sftp.Request) (err error) {
	defer g.recover(&err)
	return g.h.Filecmd(r)
}

func (g guarded) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer g.recover(&err)
	return g.h.Filelist(r)
}

func (g guarded) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer g.recover(&err)
	return g.h.Lstat(r)
}

// guardedUpload is an upload whose writes and close (which hands the file
// to intake) are guarded too: pkg/sftp calls them from its goroutines. It
// has every method pkg/sftp looks for on an upload.
type guardedUpload struct {
	g guarded
	u *upload
}

func (w guardedUpload) WriteAt(p []byte, off int64) (_ int, err error) {
	defer w.g.recover(&err)
	return w.u.WriteAt(p, off)
}

// TransferError tells the upload that its transfer was aborted (pkg/sftp's
// optional interface, which the wrapper must not hide).
func (w guardedUpload) TransferError(err error) {
	defer func() { w.g.h.s.recovered(recover(), "request", w.g.h.a.name, w.g.h.c.peer) }()
	w.u.TransferError(err)
}

func (w guardedUpload) Close() (err error) {
	defer w.g.recover(&err)
	return w.u.Close()
}
