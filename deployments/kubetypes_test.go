package deployments

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// TestManifestsDecodeAsKubernetesTypes decodes every manifest strictly into
// the Kubernetes API type of its kind: a misspelt field, a field in the wrong
// place or a value of the wrong type fails, as the API server would refuse it.
func TestManifestsDecodeAsKubernetesTypes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	types := map[string]func() any{
		"apps/v1 Deployment":            func() any { return &appsv1.Deployment{} },
		"v1 Service":                    func() any { return &corev1.Service{} },
		"v1 ConfigMap":                  func() any { return &corev1.ConfigMap{} },
		"v1 Secret":                     func() any { return &corev1.Secret{} },
		"policy/v1 PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
	}
	seen := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			var head struct{ APIVersion, Kind string }
			if err := json.Unmarshal(js, &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if head.Kind == "Kustomization" {
				continue // kustomize's own file, not an API object
			}
			mk, ok := types[head.APIVersion+" "+head.Kind]
			if !ok {
				t.Fatalf("%s document %d: %s %s is not a kind this test knows; add it", f, i+1, head.APIVersion, head.Kind)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(mk()); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, head.Kind, err)
			}
			seen[head.Kind]++
		}
	}
	for _, kind := range []string{"Deployment", "Service", "ConfigMap", "Secret"} {
		if seen[kind] == 0 {
			t.Errorf("no %s among the manifests", kind)
		}
	}
}
