package mpi

// Synthetic people for the benchmarks of package mpi_test (the SQL store's
// benchmark lives there because sqlstore imports mpi).

// Generator makes the synthetic population of ScaleCheck.
type Generator struct{ g *generator }

// NewGenerator returns a deterministic generator.
func NewGenerator(seed uint64) *Generator { return &Generator{g: newGenerator(seed)} }

// Person returns a new synthetic person.
func (g *Generator) Person(authority string, i int) Record { return g.g.person(authority, i) }

// Variant returns p as another sender would record it.
func (g *Generator) Variant(p Record, authority string, i int) Record {
	return g.g.variant(p, authority, i)
}

// IntN returns a pseudo-random number in [0, n).
func (g *Generator) IntN(n int) int { return g.g.r.IntN(n) }
