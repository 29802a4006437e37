package route

import (
	"context"
	"log/slog"
	"time"

	"github.com/hiegw/hiegw/internal/store"
	"github.com/hiegw/hiegw/internal/tick"
	"github.com/prometheus/client_golang/prometheus"
)

// LagSource is what the lag gauges read from the store.
type LagSource interface {
	OutboxCounts(ctx context.Context) ([]store.OutboxStats, error)
	OutboxOldestPending(ctx context.Context) (map[string]time.Time, error)
}

var _ LagSource = (*store.DB)(nil)

// Lag keeps per-subscriber gauges of the outbox: rows pending, and the age
// of the oldest pending row.
type Lag struct {
	src     LagSource
	pending *prometheus.GaugeVec
	age     *prometheus.GaugeVec
	dead    *prometheus.GaugeVec
	log     *slog.Logger
}

// NewLag makes the gauges and registers them with reg (when not nil).
func NewLag(src LagSource, reg prometheus.Registerer, log *slog.Logger) *Lag {
	if log == nil {
		log = slog.Default()
	}
	l := &Lag{src: src, log: log,
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_route_pending",
			Help: "Outbox rows not yet published, by subscriber."}, []string{"subscriber"}),
		age: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_route_lag_seconds",
			Help: "Age of the oldest outbox row not yet published, by subscriber (0 when none)."}, []string{"subscriber"}),
		dead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_route_dead_rows",
			Help: "Outbox rows dead-lettered, by subscriber."}, []string{"subscriber"}),
	}
	if reg != nil {
		reg.MustRegister(l.pending, l.age, l.dead)
	}
	return l
}

// Refresh reads the outbox once and sets the gauges.
func (l *Lag) Refresh(ctx context.Context) error {
	counts, err := l.src.OutboxCounts(ctx)
	if err != nil {
		return err
	}
	oldest, err := l.src.OutboxOldestPending(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, c := range counts {
		l.pending.WithLabelValues(c.Subscriber).Set(float64(c.Pending))
		l.dead.WithLabelValues(c.Subscriber).Set(float64(c.Dead))
		age := 0.0
		if at, ok := oldest[c.Subscriber]; ok {
			age = max(now.Sub(at).Seconds(), 0)
		}
		l.age.WithLabelValues(c.Subscriber).Set(age)
	}
	return nil
}

// Run refreshes the gauges every interval (default 15s) until ctx ends.
func (l *Lag) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	_ = tick.Every(ctx, interval, true, func() error {
		if err := l.Refresh(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("outbox lag", "err", err)
		}
		return nil
	})
}
