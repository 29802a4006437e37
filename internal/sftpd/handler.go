package sftpd

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
)

// handler serves one SFTP session of an account. Every path it is given is
// an absolute, cleaned SFTP path that must name "/", one of the account's
// folders, or a file directly inside one; everything is opened through the
// account's os.Root.
type handler struct {
	s *Server
	a *account
	c *conn
}

var (
	_ sftp.FileReader      = (*handler)(nil)
	_ sftp.FileWriter      = (*handler)(nil)
	_ sftp.FileCmder       = (*handler)(nil)
	_ sftp.FileLister      = (*handler)(nil)
	_ sftp.LstatFileLister = (*handler)(nil)
)

// statusError is an error sent to the client with a given SFTP status code
// and a message that names no internal path.
type statusError struct {
	code error // one of sftp.ErrSSHFx*
	msg  string
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.code }

var (
	errDenied       = &statusError{sftp.ErrSSHFxPermissionDenied, "permission denied"}
	errNoFile       = &statusError{sftp.ErrSSHFxNoSuchFile, "no such file"}
	errExists       = &statusError{sftp.ErrSSHFxFailure, "file exists"}
	errNotRegular   = &statusError{sftp.ErrSSHFxFailure, "not a regular file"}
	errNotDir       = &statusError{sftp.ErrSSHFxFailure, "not a directory"}
	errBusy         = &statusError{sftp.ErrSSHFxFailure, "file is still being written"}
	errTooLarge     = &statusError{sftp.ErrSSHFxFailure, "file exceeds the size limit"}
	errFileLimit    = &statusError{sftp.ErrSSHFxPermissionDenied, "limit of files for this session reached"}
	errClosing      = &statusError{sftp.ErrSSHFxFailure, "server is shutting down"}
	errFailed       = &statusError{sftp.ErrSSHFxFailure, "operation failed"}
	errUnsupported  = &statusError{sftp.ErrSSHFxOpUnsupported, "operation not supported"}
	errUploadFailed = &statusError{sftp.ErrSSHFxFailure, "upload failed"}
)

// location is a parsed SFTP path: the root ("", ""), a folder (f, ""), or a
// file in a folder (f, name).
type location struct {
	folder, name string
}

func (l location) rel() string {
	switch {
	case l.folder == "":
		return "."
	case l.name == "":
		return l.folder
	}
	return l.folder + "/" + l.name
}

// parseLocation maps an SFTP path onto the account folder. Anything deeper
// than a folder's files, or outside the three folders, is refused.
func parseLocation(p string) (location, bool) {
	p = path.Clean(p)
	if !strings.HasPrefix(p, "/") {
		return location{}, false
	}
	if p == "/" {
		return location{}, true
	}
	folder, name, _ := strings.Cut(p[1:], "/")
	ok := false
	for _, f := range folders {
		if folder == f {
			ok = true
		}
	}
	if !ok || strings.Contains(name, "/") {
		return location{}, false
	}
	if name != "" && !validName(name) {
		return location{}, false
	}
	return location{folder: folder, name: name}, true
}

// osError turns an error from the file system into one fit for the client.
func (h *handler) osError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return errNoFile
	case errors.Is(err, fs.ErrExist):
		return errExists
	case errors.Is(err, fs.ErrPermission):
		return errDenied
	}
	var se *statusError
	if errors.As(err, &se) {
		return se
	}
	if strings.Contains(err.Error(), "escapes") { // os.Root refused a symlink leading outside
		h.s.refuse(h.a, h.c, "path escapes the folder", "op", op)
		return errDenied
	}
	h.s.log.Warn("sftp file operation failed", "account", h.a.name, "op", op, "err", withoutPath(err))
	return errFailed
}

// deny refuses a request on paths outside what the account may do. The
// info line names the folders only; the paths, whose file names may hold
// a patient's name or MRN, are logged at debug level.
func (h *handler) deny(op string, paths ...string) error {
	dirs := make([]string, len(paths))
	for i, p := range paths {
		dirs[i] = path.Dir(path.Clean("/" + p))
	}
	h.s.refuse(h.a, h.c, "path", "op", op, "folder", strings.Join(dirs, " -> "))
	h.s.log.Debug("sftp request refused (the path at debug level)", "account", h.a.name, "peer", h.c.peer, "op", op,
		"path", strings.Join(paths, " -> "))
	return errDenied
}

// Fileread opens a file of any of the account's folders for reading.
func (h *handler) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	l, ok := parseLocation(r.Filepath)
	if !ok {
		return nil, h.deny("read", r.Filepath)
	}
	if l.name == "" {
		return nil, errNotRegular
	}
	f, err := h.a.root.Open(l.rel())
	if err != nil {
		return nil, h.osError("read", err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, errNotRegular
	}
	return f, nil
}

// Filewrite opens an upload into inbox/.
func (h *handler) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	l, ok := parseLocation(r.Filepath)
	if !ok || l.folder != folderInbox || l.name == "" {
		return nil, h.deny("write", r.Filepath)
	}
	if h.s.closing.Load() {
		return nil, errClosing
	}
	if h.c.files.Load() >= int64(h.s.cfg.MaxFilesPerSession) {
		h.s.refuse(h.a, h.c, "files per session")
		return nil, errFileLimit
	}
	u, err := h.s.openUpload(h, l.name, r.Pflags())
	if err != nil {
		return nil, err
	}
	h.c.files.Add(1)
	return u, nil
}

// Filecmd handles renames and removals inside inbox/; SETSTAT is accepted
// and ignored; directories and links cannot be made.
func (h *handler) Filecmd(r *sftp.Request) error {
	switch r.Method {
	case "Setstat":
		if _, ok := parseLocation(r.Filepath); !ok {
			return h.deny("setstat", r.Filepath)
		}
		return nil // permissions and times are the gateway's business
	case "Rename", "PosixRename":
		return h.rename(r)
	case "Remove":
		l, ok := parseLocation(r.Filepath)
		if !ok || l.folder != folderInbox || l.name == "" {
			return h.deny("remove", r.Filepath)
		}
		h.a.mu.Lock()
		defer h.a.mu.Unlock()
		return h.osError("remove", h.a.root.Remove(l.rel()))
	case "Symlink", "Link":
		h.s.refuse(h.a, h.c, "link", "op", strings.ToLower(r.Method))
		return errDenied
	default: // Mkdir, Rmdir and anything new
		h.s.refuse(h.a, h.c, "command", "op", strings.ToLower(r.Method))
		return errDenied
	}
}

func (h *handler) rename(r *sftp.Request) error {
	src, ok1 := parseLocation(r.Filepath)
	dst, ok2 := parseLocation(r.Target)
	if !ok1 || !ok2 || src.folder != folderInbox || dst.folder != folderInbox || src.name == "" || dst.name == "" {
		return h.deny("rename", r.Filepath, r.Target)
	}
	h.c.busy.Add(1)
	defer h.c.busy.Add(-1)
	return h.s.renameInInbox(h, src.name, dst.name)
}

// Filelist lists the root or a folder, and stats files following symlinks
// that stay inside the account folder.
func (h *handler) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		l, ok := parseLocation(r.Filepath)
		if !ok {
			return nil, h.deny("list", r.Filepath)
		}
		return h.list(l)
	case "Stat":
		return h.stat(r.Filepath, true)
	default: // Readlink: links are not part of the sender's view
		return nil, errUnsupported
	}
}

// Lstat stats without following a final symlink.
func (h *handler) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	return h.stat(r.Filepath, false)
}

func (h *handler) list(l location) (sftp.ListerAt, error) {
	if l.folder == "" {
		var out listerAt
		for _, f := range folders {
			fi, err := h.a.root.Stat(f)
			if err != nil {
				return nil, h.osError("list", err)
			}
			out = append(out, fi)
		}
		return out, nil
	}
	if l.name != "" {
		return nil, errNotDir
	}
	d, err := h.a.root.Open(l.folder)
	if err != nil {
		return nil, h.osError("list", err)
	}
	defer d.Close()
	infos, err := d.Readdir(-1)
	if err != nil {
		return nil, h.osError("list", err)
	}
	return listerAt(infos), nil
}

func (h *handler) stat(p string, follow bool) (sftp.ListerAt, error) {
	l, ok := parseLocation(p)
	if !ok {
		return nil, h.deny("stat", p)
	}
	st := h.a.root.Lstat
	if follow {
		st = h.a.root.Stat
	}
	fi, err := st(l.rel())
	if errors.Is(err, fs.ErrNotExist) && l.folder == folderInbox && l.name != "" {
		// an upload with a final name is still in staging
		if staged := h.a.stagedFor(l.name); staged != "" {
			if sfi, serr := h.a.root.Stat(stagingDir + "/" + staged); serr == nil {
				fi, err = renamedInfo{sfi, l.name}, nil
			}
		}
	}
	if err != nil {
		return nil, h.osError("stat", err)
	}
	return listerAt{fi}, nil
}

type renamedInfo struct {
	os.FileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }

type listerAt []os.FileInfo

func (l listerAt) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}

// withoutPath returns the text of a file system error without the path it
// names (whose file name may hold a patient's name or MRN): the operation
// and the cause.
func withoutPath(err error) string {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &le):
		return le.Op + ": " + le.Err.Error()
	case errors.As(err, &pe):
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
