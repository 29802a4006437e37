package gateway

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/prometheus/client_golang/prometheus"
)

// mappingState remembers the last mapping reload, so that a refused set is
// visible on the HTTP API and in metrics, not only in the log.
type mappingState struct {
	mu      sync.Mutex
	at      time.Time
	outcome string
	err     string

	reloads  *prometheus.CounterVec
	refused  prometheus.Gauge
	unmapped *prometheus.CounterVec
}

func newMappingState(reg prometheus.Registerer) *mappingState {
	s := &mappingState{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_mapping_reloads_total",
			Help: "Mapping reloads, by outcome (ok, refused)."}, []string{"outcome"}),
		refused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hiegw_mapping_reload_refused",
			Help: "1 while the last mapping reload was refused (the previous set keeps serving)."}),
		unmapped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_mapping_unmapped_codes_total",
			Help: "Codes not found in a code table (kept with their original system), by table."}, []string{"table"}),
	}
	reg.MustRegister(s.reloads, s.refused, s.unmapped)
	s.at, s.outcome = time.Now().UTC(), "loaded at start"
	return s
}

// countUnmapped counts the codes a mapping result could not translate.
func (s *mappingState) countUnmapped(res *mapping.Result) {
	if s == nil || res == nil {
		return
	}
	for _, u := range res.Unmapped {
		s.unmapped.WithLabelValues(u.Table).Inc()
	}
}

// mappingsReloaded records, audits and logs one reload attempt, from SIGHUP,
// the API or the file watcher.
func (g *Gateway) mappingsReloaded(err error) {
	version := g.maps.Current().Version()
	g.auditReload("mappings.reload", g.cfg.Mappings.Dir, "version "+version, err)
	s := g.mapState
	s.mu.Lock()
	s.at, s.outcome, s.err = time.Now().UTC(), "ok", ""
	if err != nil {
		s.outcome, s.err = "refused", err.Error()
	}
	s.mu.Unlock()
	s.reloads.WithLabelValues(s.outcome).Inc()
	if err != nil {
		s.refused.Set(1)
		g.log.Error("mapping reload refused; the previous set keeps serving", refusalArgs(err, "version", version)...)
		return
	}
	s.refused.Set(0)
	g.log.Info("mappings reloaded", "version", version)
}

// mappingRoutes serve the mapping set's state and an on-demand reload.
func (g *Gateway) mappingRoutes() map[string]http.Handler {
	status := func(w http.ResponseWriter, code int) {
		s := g.mapState
		s.mu.Lock()
		last := map[string]any{"outcome": s.outcome}
		if !s.at.IsZero() {
			last["at"] = s.at
		}
		if s.err != "" {
			last["error"] = s.err // file:line:column and what is wrong; mapping files hold no PHI
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"version": g.maps.Current().Version(),
			"dir": g.cfg.Mappings.Dir, "senders": g.maps.Current().Senders(), "last_reload": last})
	}
	return map[string]http.Handler{
		"GET /api/v1/mappings": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { status(w, http.StatusOK) }),
		"POST /api/v1/mappings/reload": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			err := g.maps.Reload(g.cfg.Mappings.Dir)
			g.mappingsReloaded(err)
			if err != nil {
				status(w, http.StatusUnprocessableEntity)
				return
			}
			status(w, http.StatusOK)
		}),
	}
}
