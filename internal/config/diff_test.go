package config

import (
	"slices"
	"testing"
	"time"
)

func TestDifferences(t *testing.T) {
	a := Default()
	b := Default()
	if d := Differences(a, b); len(d) != 0 {
		t.Fatalf("two defaults differ in %v", d)
	}
	b.MLLP.Addr = "0.0.0.0:2575"
	b.MLLP.TLS.Cert = "/etc/hiegw/mllp.pem"
	b.Store.RawRetention = Duration(720 * time.Hour)
	b.MLLP.Allow = []string{"10.0.0.0/8"}
	b.Kafka.SASL.Password = "secret"
	b.Version = "another build"     // not a setting
	a.MLLP.Senders = []MLLPSender{} // empty and none are the same
	want := []string{"mllp.addr", "mllp.tls.cert", "mllp.allow", "kafka.sasl.password", "store.raw_retention"}
	got := Differences(a, b)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("differences %v, want %v", got, want)
	}
}
