package sqlstore

// DecodedLen returns how many entries d remembers.
func DecodedLen(d *Decoded) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}
