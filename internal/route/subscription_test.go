package route

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLoadSubscriptions(t *testing.T) {
	subs, err := LoadSubscriptions(filepath.Join("testdata", "subscriptions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 3 {
		t.Fatalf("got %d subscriptions", len(subs))
	}
	if subs[0].Attribution == nil || subs[0].Attribution.Practitioners[0] != "1234" {
		t.Errorf("attribution not read: %+v", subs[0])
	}
	if subs[1].Format != FormatHL7v2 || subs[1].Facilities[0] != "NORTHLAB" {
		t.Errorf("lab subscription: %+v", subs[1])
	}
}

// The example shipped for operators must stay valid.
func TestExampleSubscriptionsFile(t *testing.T) {
	path := filepath.Join("..", "..", "deployments", "subscriptions.example.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no example file at %s", path)
	}
	if _, err := LoadSubscriptions(path); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSubscriptionsErrorsNameFileAndLine(t *testing.T) {
	path := filepath.Join("testdata", "bad.yaml")
	_, err := LoadSubscriptions(path)
	if err == nil {
		t.Fatal("bad file accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		path + ":4: subscriptions[1] (a).name is used twice",
		path + ":4: subscriptions[1] (a).topic may hold only",
		path + `:4: subscriptions[1] (a).format "xml" is not supported`,
		path + `:4: subscriptions[1] (a).events: unknown event "birthday"`,
		path + ":9: subscriptions[2].name is required",
		path + ":9: subscriptions[2].topic is required",
		path + `:9: subscriptions[2].kind "robot" is not known`,
		path + ":9: subscriptions[2].attribution.practitioners is required",
		path + `:9: subscriptions[2].attribution.roles: unknown role "nurse"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n"); n != 9 {
		t.Errorf("want 9 problems, one per line, got %d lines:\n%s", n, msg)
	}
}

func TestLoadSubscriptionsUnknownKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.yaml")
	os.WriteFile(path, []byte("subscriptions:\n  - name: a\n    topic: t\n    filter: x\n"), 0o600)
	_, err := LoadSubscriptions(path)
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "filter") {
		t.Fatalf("want an error naming line 4 and the key, got %v", err)
	}
	if _, err := LoadSubscriptions(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

// The JSON Schema and the loader agree on the closed lists and the keys.
func TestSchemaMatchesLoader(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "schemas", "subscriptions.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs struct {
			Subscription struct {
				Properties map[string]struct {
					Enum  []string `json:"enum"`
					Items struct {
						Enum []string `json:"enum"`
					} `json:"items"`
					Properties map[string]struct {
						Items struct {
							Enum []string `json:"enum"`
						} `json:"items"`
					} `json:"properties"`
				} `json:"properties"`
			} `json:"subscription"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	props := schema.Defs.Subscription.Properties
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("schema %s %v, loader %v", what, got, want)
		}
	}
	check("events", props["events"].Items.Enum, knownEvents)
	check("kind", props["kind"].Enum, knownKinds)
	check("format", props["format"].Enum, []string{FormatFHIR, FormatHL7v2})
	check("attribution.roles", props["attribution"].Properties["roles"].Items.Enum, knownRoles)
	var keys []string
	for k := range props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var yamlKeys []string
	st := reflect.TypeOf(Subscription{})
	for i := range st.NumField() {
		yamlKeys = append(yamlKeys, strings.Split(st.Field(i).Tag.Get("yaml"), ",")[0])
	}
	slices.Sort(yamlKeys)
	check("keys", keys, yamlKeys)
}
