package deployments

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exportedMetrics are the metric names hiegw's code registers: every
// "hiegw_..." string literal outside tests under internal/.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	lit := regexp.MustCompile(`"(hiegw_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../internal", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range lit.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 40 {
		t.Fatalf("only %d metric names found under internal/", len(names))
	}
	return names
}

// TestAlertRules checks prometheus/alerts.yaml against hiegw: each rule has
// an alert name, an expression over metrics hiegw exports (a renamed metric
// would silence its alert), a severity an on-call rota routes on, and a
// summary and description; and each alert has a case in alerts_test.yaml,
// the promtool unit tests CI runs.
func TestAlertRules(t *testing.T) {
	exported := exportedMetrics(t)
	docs := readDocs(t, "prometheus/alerts.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	tests, err := os.ReadFile("prometheus/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\bhiegw_[a-z0-9_]+`)
	var alerts []string
	groups, _ := docs[0].v["groups"].([]any)
	for _, g := range groups {
		rules, _ := g.(map[string]any)["rules"].([]any)
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			name, _ := rule["alert"].(string)
			expr, _ := rule["expr"].(string)
			labels, _ := rule["labels"].(map[string]any)
			ann, _ := rule["annotations"].(map[string]any)
			if name == "" || expr == "" {
				t.Errorf("a rule without alert or expr: %v", rule)
				continue
			}
			alerts = append(alerts, name)
			if sev := labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("%s: severity %v, want critical or warning", name, sev)
			}
			if s, _ := ann["summary"].(string); s == "" {
				t.Errorf("%s: no summary", name)
			}
			if s, _ := ann["description"].(string); s == "" {
				t.Errorf("%s: no description", name)
			}
			for _, m := range used.FindAllString(expr, -1) {
				if !exported[m] {
					t.Errorf("%s: hiegw exports no metric %s", name, m)
				}
			}
			if !strings.Contains(string(tests), "alertname: "+name+"\n") {
				t.Errorf("%s: no case in prometheus/alerts_test.yaml", name)
			}
		}
	}
	if len(alerts) < 10 {
		t.Fatalf("%d alerts found", len(alerts))
	}
	slices.Sort(alerts)
	for i := 1; i < len(alerts); i++ {
		if alerts[i] == alerts[i-1] {
			t.Errorf("alert %s defined twice", alerts[i])
		}
	}
}
