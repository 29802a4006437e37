package mpi

import (
	"context"
	"fmt"
)

// Search ranks enterprise patients against demographics without changing
// the index: the best comparison per enterprise patient among the blocked
// candidates, best first, at most limit of them (0: all) scoring at least
// minScore. It returns the number of records scored too. r needs no key.
func (ix *Index) Search(ctx context.Context, r Record, minScore float64, limit int) ([]Comparison, int, error) {
	e := Entry{Record: r}
	s, err := ix.score(ctx, &e, false)
	if err != nil {
		return nil, 0, fmt.Errorf("search: %w", err)
	}
	var out []Comparison
	for _, c := range s.best {
		if c.Score < minScore || (limit > 0 && len(out) == limit) {
			break
		}
		out = append(out, c)
	}
	return out, s.compared, nil
}
