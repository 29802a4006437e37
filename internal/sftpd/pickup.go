package sftpd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/intake"
)

// upload is one file open for writing. A final name is written to a staging
// file and moved into inbox/ only when closed cleanly; a temporary name is
// written in place in inbox/, where the rescan ignores it.
type upload struct {
	h      *handler
	name   string // name in inbox/
	staged string // name in stagingDir, or "" when written in place
	f      *os.File
	max    int64

	mu       sync.Mutex
	err      error // first write failure; the upload is discarded
	transfer error // the connection ended with the file open
	closed   bool
}

var (
	_ io.WriterAt        = (*upload)(nil)
	_ io.Closer          = (*upload)(nil)
	_ sftp.TransferError = (*upload)(nil)
)

func (u *upload) rel() string {
	if u.staged != "" {
		return stagingDir + "/" + u.staged
	}
	return folderInbox + "/" + u.name
}

// openUpload opens inbox/name for writing as the client's flags ask.
func (s *Server) openUpload(h *handler, name string, fl sftp.FileOpenFlags) (*upload, error) {
	a := h.a
	u := &upload{h: h, name: name, max: s.cfg.MaxFileSize}
	if isTemporary(name) {
		if err := s.openInPlace(u, fl); err != nil {
			return nil, err
		}
		return u, nil
	}
	// A final name already in inbox/ is waiting for intake: it cannot be
	// appended to or resumed; a new upload of the same name gets its own
	// name when complete.
	taken, err := a.exists(folderInbox + "/" + name)
	if err != nil {
		return nil, h.osError("open", err)
	}
	if taken && fl.Excl {
		return nil, errExists
	}
	if taken && !fl.Trunc {
		return nil, errBusy
	}
	if u.staged, err = randomName(); err != nil {
		return nil, errFailed
	}
	if u.f, err = a.root.OpenFile(u.rel(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640); err != nil {
		return nil, h.osError("open", err)
	}
	h.c.busy.Add(1)
	a.addWriter(u)
	return u, nil
}

// openInPlace opens a temporary name directly in inbox/, which allows
// resuming it. The check and the open happen under openMu, so that a rename
// cannot move the file in between.
func (s *Server) openInPlace(u *upload, fl sftp.FileOpenFlags) error {
	a, h := u.h.a, u.h
	flags := os.O_WRONLY | os.O_CREATE
	if fl.Trunc {
		flags |= os.O_TRUNC
	}
	if fl.Excl {
		flags |= os.O_EXCL
	}
	a.openMu.Lock()
	defer a.openMu.Unlock()
	if len(a.writing[u.name]) > 0 {
		return errBusy
	}
	f, err := a.root.OpenFile(u.rel(), flags, 0o640)
	if err != nil {
		return h.osError("open", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return errNotRegular
	}
	u.f = f
	h.c.busy.Add(1)
	a.addWriterLocked(u)
	return nil
}

// WriteAt writes a chunk. The size limit is checked before the data reaches
// the disk; after any failure every further write fails and the upload is
// discarded on close.
func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	u.mu.Lock()
	switch {
	case u.err != nil:
		u.mu.Unlock()
		return 0, u.err
	case off < 0:
		u.err = errUploadFailed
		u.mu.Unlock()
		return 0, u.err
	case end > u.max:
		u.err = errTooLarge
		u.mu.Unlock()
		return 0, errTooLarge
	}
	u.mu.Unlock()
	n, err := u.f.WriteAt(p, off)
	if err != nil {
		u.h.s.logFile(slog.LevelWarn, "sftp write failed", u.name, err, "account", u.h.a.name)
		u.mu.Lock()
		if u.err == nil {
			u.err = errUploadFailed
		}
		u.mu.Unlock()
		return n, errUploadFailed
	}
	return n, nil
}

// TransferError records that the connection ended while the file was open:
// the upload is not complete, whatever Close says afterwards.
func (u *upload) TransferError(err error) {
	u.mu.Lock()
	u.transfer = err
	u.mu.Unlock()
}

// Close ends the upload. A clean upload with a final name is moved into
// inbox/ and handed to intake before Close returns; the answer to the client
// is success once the file is safely in inbox/, even if intake failed (the
// rescan retries). A failed upload is discarded.
func (u *upload) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	werr, terr := u.err, u.transfer
	u.mu.Unlock()

	h, a, s := u.h, u.h.a, u.h.s
	defer h.c.busy.Add(-1)

	// Sync before the client hears success: a file in inbox/ must survive
	// a crash until intake has it.
	var serr error
	if werr == nil && terr == nil {
		serr = u.f.Sync()
	}
	cerr := u.f.Close()

	switch {
	case terr != nil:
		a.removeWriter(u)
		s.stats.uploadFailures.Add(1)
		if u.staged != "" {
			a.root.Remove(u.rel())
		} // a temporary name stays, so the client can resume it
		s.logFile(slog.LevelInfo, "sftp upload aborted; not picked up", u.name, terr, "account", a.name, "peer", h.c.peer)
		return terr
	case werr != nil || serr != nil || cerr != nil:
		a.removeWriter(u)
		s.stats.uploadFailures.Add(1)
		a.root.Remove(u.rel())
		s.logFile(slog.LevelInfo, "sftp upload failed; partial file discarded", u.name, errors.Join(werr, serr, cerr),
			"account", a.name, "peer", h.c.peer)
		if werr != nil {
			return werr
		}
		return errUploadFailed
	case u.staged == "":
		a.removeWriter(u)
		return nil // a temporary name: complete once renamed
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	a.removeWriter(u)
	final, err := a.freeName(folderInbox, u.name)
	if err == nil {
		err = a.root.Rename(u.rel(), folderInbox+"/"+final)
	}
	if err == nil {
		err = syncDir(a.root, folderInbox)
	}
	if err != nil {
		a.root.Remove(u.rel())
		s.stats.uploadFailures.Add(1)
		s.logFile(slog.LevelWarn, "sftp upload could not be moved into inbox", u.name, err, "account", a.name)
		return errUploadFailed
	}
	s.stats.uploads.Add(1)
	s.pickup(a, final, h.c.peer, time.Now())
	return nil
}

// renameInInbox renames src to dst inside inbox/. When dst is a final name
// the file is complete: it gets a free name and is handed to intake.
func (s *Server) renameInInbox(h *handler, src, dst string) error {
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	fi, err := a.root.Lstat(folderInbox + "/" + src)
	if err != nil {
		return h.osError("rename", err)
	}
	if !fi.Mode().IsRegular() {
		return errNotRegular
	}
	if src == dst {
		return nil
	}
	final := dst
	if !isTemporary(dst) {
		if final, err = a.freeName(folderInbox, dst); err != nil {
			return h.osError("rename", err)
		}
	}
	a.openMu.Lock()
	if len(a.writing[src]) > 0 || len(a.writing[final]) > 0 {
		a.openMu.Unlock()
		return errBusy
	}
	err = a.root.Rename(folderInbox+"/"+src, folderInbox+"/"+final)
	a.openMu.Unlock()
	if err != nil || isTemporary(final) {
		return h.osError("rename", err)
	}
	if err := syncDir(a.root, folderInbox); err != nil {
		s.log.Warn("sftp sync inbox failed", "account", a.name, "err", err)
	}
	if isTemporary(src) {
		s.stats.uploads.Add(1)
	}
	s.pickup(a, final, h.c.peer, time.Now())
	return nil
}

// pickup hands inbox/name to intake and files it according to the receipt.
// The caller holds a.mu. On an intake error the file stays where it is and
// the error is returned.
func (s *Server) pickup(a *account, name, peer string, receivedAt time.Time) error {
	rel := folderInbox + "/" + name
	fi, err := a.root.Lstat(rel)
	if err != nil {
		return fmt.Errorf("pickup: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil // not ours to deliver; left for an operator
	}
	if fi.Size() > s.cfg.MaxFileSize {
		// Only files placed by other means can be this large.
		s.stats.rejected.Add(1)
		reason := "file exceeds the size limit of " + strconv.FormatInt(s.cfg.MaxFileSize, 10) + " bytes"
		s.logFile(slog.LevelWarn, "sftp file too large; moved to failed", name, nil, "account", a.name, "bytes", fi.Size())
		return s.file(a, name, folderFailed, reason)
	}
	raw, err := a.root.ReadFile(rel)
	if err != nil {
		return fmt.Errorf("pickup: read: %w", err)
	}
	env := &intake.Envelope{
		Channel:    intake.ChannelSFTP,
		Sender:     a.name,
		Peer:       peer,
		ReceivedAt: receivedAt,
		Filename:   name,
		Raw:        raw,
	}
	rc, err := s.accept(env)
	if err != nil {
		s.stats.acceptErrors.Add(1)
		s.logFile(slog.LevelWarn, "sftp intake failed; file left in inbox for retry", name, err, "account", a.name)
		return fmt.Errorf("pickup: accept: %w", err)
	}
	if rc.Status == intake.StatusRejected {
		s.stats.rejected.Add(1)
		s.logFile(slog.LevelInfo, "sftp file rejected by intake", name, nil, "account", a.name, "envelope", rc.EnvelopeID,
			"duplicate", rc.Duplicate)
		return s.file(a, name, folderFailed, rc.Reason)
	}
	s.stats.accepted.Add(1)
	s.logFile(slog.LevelInfo, "sftp file accepted", name, nil, "account", a.name, "envelope", rc.EnvelopeID,
		"duplicate", rc.Duplicate, "bytes", len(raw))
	return s.file(a, name, folderProcessed, "")
}

// accept hands env to intake. A panic there (a defect of hiegw) is an
// error like intake's own, with the stack logged: the file stays in inbox/
// for the rescan, and the gateway goes on serving.
func (s *Server) accept(env *intake.Envelope) (rc intake.Receipt, err error) {
	ctx, cancel := context.WithTimeout(s.baseCtx, acceptTimeout)
	defer cancel()
	defer defect.Recover(s.log, "sftp intake panicked, a defect of hiegw", &err, "account", env.Sender, "bytes", len(env.Raw))
	return s.in.Accept(ctx, env)
}

// file moves inbox/name into folder under a free name; for failed/ it first
// writes NAME.error.txt with reason. If the move fails the file stays in
// inbox/, and the rescan offers it to intake again, which then answers as
// for a duplicate.
func (s *Server) file(a *account, name, folder, reason string) error {
	dest, err := a.freeName(folder, name)
	if err == nil && folder == folderFailed {
		if reason == "" {
			reason = "rejected"
		}
		err = a.root.WriteFile(folder+"/"+dest+errorSuffix, []byte(reason+"\n"), 0o640)
	}
	if err == nil {
		err = a.root.Rename(folderInbox+"/"+name, folder+"/"+dest)
	}
	if errors.Is(err, fs.ErrNotExist) {
		// another gateway process sharing Root filed it first
		s.logFile(slog.LevelInfo, "sftp file already moved out of inbox", name, nil, "account", a.name)
		return nil
	}
	if err != nil {
		s.logFile(slog.LevelError, "sftp could not move file out of inbox", name, err, "account", a.name, "to", folder)
		return fmt.Errorf("pickup: move to %s: %w", folder, err)
	}
	return nil
}

// rescanLoop offers files left in inbox/ to intake again: at start (files
// left by a crash or a store outage) and every RescanInterval.
func (s *Server) rescanLoop() {
	defer s.rescanWG.Done()
	t := time.NewTicker(s.cfg.RescanInterval)
	defer t.Stop()
	for {
		for _, a := range s.accountList() {
			if s.stopping() {
				return
			}
			s.rescan(a)
			s.sweepStaging(a)
		}
		select {
		case <-s.stopRescan:
			return
		case <-t.C:
		}
	}
}

func (s *Server) stopping() bool {
	select {
	case <-s.stopRescan:
		return true
	default:
		return false
	}
}

// rescan offers every complete file in a's inbox/ to intake, oldest first
// as the directory lists them, and stops at the first intake error.
func (s *Server) rescan(a *account) {
	d, err := a.root.Open(folderInbox)
	if err != nil {
		s.log.Warn("sftp rescan: open inbox", "account", a.name, "err", err)
		return
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		s.log.Warn("sftp rescan: list inbox", "account", a.name, "err", err)
		return
	}
	for _, e := range entries {
		if s.stopping() {
			return
		}
		name := e.Name()
		if !e.Type().IsRegular() || isTemporary(name) || a.isWriting(name) {
			continue
		}
		// A file changed a moment ago may still be being copied in by
		// something other than this server; leave it for the next round.
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < rescanSettle {
			continue
		}
		if err := s.retry(a, name); err != nil {
			return
		}
	}
}

func (s *Server) retry(a *account, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	fi, err := a.root.Lstat(folderInbox + "/" + name)
	if err != nil || !fi.Mode().IsRegular() {
		return nil // moved or removed meanwhile
	}
	return s.pickup(a, name, "", fi.ModTime())
}

// sweepStaging removes staging files of uploads that are no longer open
// and have not been written for a long time: left by a crash, or by another
// gateway process sharing Root that died.
func (s *Server) sweepStaging(a *account) {
	d, err := a.root.Open(stagingDir)
	if err != nil {
		return
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return
	}
	stale := time.Now().Add(-max(time.Hour, 2*s.cfg.IdleTimeout))
	for _, e := range entries {
		if a.isStagingOpen(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.ModTime().After(stale) {
			continue
		}
		if err := a.root.Remove(stagingDir + "/" + e.Name()); err == nil {
			s.log.Info("sftp removed stale partial upload", "account", a.name)
		}
	}
}

func randomName() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// syncDir makes a rename inside dir durable.
func syncDir(r *os.Root, dir string) error {
	d, err := r.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, fs.ErrInvalid) { // some file systems cannot sync directories
		err = nil
	}
	return err
}

// logFile logs msg about the file name at level without the name, and, when
// the logger writes debug lines, the same with the name at debug level: an
// EMR's file names may hold a patient's name or MRN, and the log carries
// such data only at debug level. err (may be nil) is logged with the name
// cut out of its text, where a path holds it.
func (s *Server) logFile(level slog.Level, msg, name string, err error, args ...any) {
	ctx := context.Background()
	if err != nil {
		args = append(args, "err", withoutName(err, name))
	}
	s.log.Log(ctx, level, msg, args...)
	if level > slog.LevelDebug && s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug(msg+" (file name at debug level)", append(args, "file", name)...)
	}
}

// withoutName returns err's text with every path element that is name,
// or holds it (a staging file), replaced by "<file>".
func withoutName(err error, name string) string {
	text := err.Error()
	if name == "" {
		return text
	}
	var b strings.Builder
	for {
		i := strings.Index(text, name)
		if i < 0 {
			break
		}
		// Widen the hit to the whole path element around it.
		start, end := i, i+len(name)
		for start > 0 && !isPathEnd(text[start-1]) {
			start--
		}
		for end < len(text) && !isPathEnd(text[end]) {
			end++
		}
		b.WriteString(text[:start])
		b.WriteString("<file>")
		text = text[end:]
	}
	b.WriteString(text)
	return b.String()
}

// isPathEnd tells whether c ends a path element in an error's text.
func isPathEnd(c byte) bool { return c == '/' || c == ' ' || c == ':' || c == '"' || c == '\'' }
