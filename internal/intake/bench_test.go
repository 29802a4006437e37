package intake

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
)

// BenchmarkAccept is the receive-and-ACK path without the network: header
// read, checks, durable group commit on the embedded store (fsync included)
// and the ACK, from 1 and 8 senders that each wait for their reply before
// sending again. Besides the time per message it reports the CPU time per
// message (on a shared machine the wall time is mostly the disk's fsync
// queue) and the reply latency percentiles.
func BenchmarkAccept(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprint("conns=", conns), func(b *testing.B) {
			db, err := store.Open(context.Background(), store.Options{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			in := New(db, Options{})
			defer in.Close()
			var next atomic.Int64
			lat := make([][]time.Duration, conns)
			var wg sync.WaitGroup
			b.ResetTimer()
			cpu0 := cpuTime()
			for c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						env := &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg(fmt.Sprint("B", i), "")}
						t0 := time.Now()
						if _, err := in.Accept(context.Background(), env); err != nil {
							b.Error(err)
							return
						}
						lat[c] = append(lat[c], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
