package sftpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/hiegw/hiegw/internal/intake"
)

// BenchmarkUpload50KB measures complete uploads over one connection with the
// pkg/sftp client: create, write 50 KB, close; each close returns after the
// file is fsynced, moved into inbox/, handed to a no-op intake and moved to
// processed/. Variants write under the final name, or under NAME.part and
// rename.
func BenchmarkUpload50KB(b *testing.B) {
	for _, mode := range []string{"close", "part+rename"} {
		b.Run(mode, func(b *testing.B) {
			benchUpload(b, mode, 50*1024)
		})
	}
}

func benchUpload(b *testing.B, mode string, size int) {
	dir := b.TempDir()
	key := newSigner(b)
	in := &fakeIntake{acceptFn: func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{EnvelopeID: "x", Status: intake.StatusReceived}, nil
	}}
	srv, err := New(Config{
		HostKeyPath:        filepath.Join(dir, "hk"),
		Root:               filepath.Join(dir, "data"),
		Accounts:           []Account{{Name: "bench", AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}}},
		MaxFilesPerSession: 1 << 30,
		RescanInterval:     time.Hour,
		Logger:             slog.New(slog.DiscardHandler),
	}, in)
	if err != nil {
		b.Fatal(err)
	}
	addr := serveUntilEnd(b, srv)

	sc, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: "bench", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(srv.hostKey.PublicKey()),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	c, err := sftp.NewClient(sc, sftp.UseConcurrentWrites(true))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	data := bytes.Repeat([]byte("OBX|1|TX|||0123456789012345678901234567890123456789\r"), size/50+1)[:size]
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("f%08d.hl7", i)
		switch mode {
		case "close":
			err = put(c, name, data)
		default:
			err = put(c, name+".part", data)
			if err == nil {
				err = c.PosixRename(name+".part", name)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "uploads/s")
	b.StopTimer()
	if got := srv.Stats().Accepted; got != uint64(b.N) {
		b.Fatalf("accepted %d of %d", got, b.N)
	}
}

// serveUntilEnd serves srv on a loopback port until the benchmark ends and
// returns the address.
func serveUntilEnd(b *testing.B, srv *Server) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			b.Error(err)
		}
	})
	return ln.Addr().String()
}
