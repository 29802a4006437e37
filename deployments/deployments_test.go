package deployments

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/mapping"
	"go.yaml.in/yaml/v3"
)

// doc is one YAML document of a file.
type doc struct {
	file string
	n    int // 1-based document number in the file
	v    map[string]any
}

func (d doc) String() string { return fmt.Sprintf("%s (document %d)", d.file, d.n) }

// readDocs decodes every document of a YAML file.
func readDocs(t *testing.T, path string) []doc {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []doc
	for i := 1; ; i++ {
		var v map[string]any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		if v == nil {
			continue
		}
		out = append(out, doc{file: path, n: i, v: v})
	}
	return out
}

// get walks a decoded YAML value: keys for maps, indexes for lists.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string {
	s, _ := get(v, path...).(string)
	return s
}

func list(v any, path ...any) []any {
	l, _ := get(v, path...).([]any)
	return l
}

func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case string:
		i, _ := strconv.Atoi(n)
		return i
	}
	return -1
}

// defaultPorts are hiegw's default ports, from its configuration defaults.
func defaultPorts(t *testing.T) map[string]int {
	t.Helper()
	c := config.Default()
	out := map[string]int{}
	for name, addr := range map[string]string{"mllp": c.MLLP.Addr, "sftp": c.SFTP.Addr, "http": c.HTTP.Addr} {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("default %s address %q: %v", name, addr, err)
		}
		out[name], _ = strconv.Atoi(p)
	}
	return out
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestYAMLWellFormed decodes every YAML file under deployments/.
func TestYAMLWellFormed(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) {
			return nil
		}
		n++
		if docs := readDocs(t, p); len(docs) == 0 {
			t.Errorf("%s holds no YAML document", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("only %d YAML files found", n)
	}
}

// loadConfig runs hiegw's own configuration loader on a file, with env as
// the environment.
func loadConfig(t *testing.T, path string, env map[string]string) *config.Config {
	t.Helper()
	var stderr bytes.Buffer
	c, err := config.Load([]string{"--config", path}, func(k string) string { return env[k] }, &stderr)
	if err != nil {
		t.Fatalf("config.Load %s: %v\n%s", path, err, stderr.String())
	}
	return c
}

func TestExampleConfigLoads(t *testing.T) {
	c := loadConfig(t, "hiegw.example.yaml", nil)
	ports := defaultPorts(t)
	if portOf(t, c.MLLP.Addr) != ports["mllp"] || portOf(t, c.HTTP.Addr) != ports["http"] || portOf(t, c.SFTP.Addr) != ports["sftp"] {
		t.Errorf("example ports differ from the defaults %v: mllp %s http %s sftp %s", ports, c.MLLP.Addr, c.HTTP.Addr, c.SFTP.Addr)
	}
	if len(c.HTTP.Tokens) == 0 || c.Log.LogMessageBodies || c.Store.PostgresDSN != "" {
		t.Errorf("example: tokens %d, log bodies %v, DSN in file %q", len(c.HTTP.Tokens), c.Log.LogMessageBodies, c.Store.PostgresDSN)
	}
	for _, tok := range c.HTTP.Tokens {
		if strings.Trim(strings.TrimPrefix(tok.Hash, "sha256:"), "0") != "" {
			t.Errorf("example token %s carries a real hash; ship only the all-zero placeholder", tok.Name)
		}
	}
	// Every key of the configuration is documented in the example, commented
	// out or not: a key added to config.Config without a line here fails.
	data, err := os.ReadFile("hiegw.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keys := yamlKeys(reflect.TypeOf(config.Config{}), nil)
	if len(keys) < 30 {
		t.Fatalf("only %d configuration keys found", len(keys))
	}
	for _, key := range keys {
		if !regexp.MustCompile(`(?m)^\s*#?\s*-?\s*` + regexp.QuoteMeta(key) + `:`).Match(data) {
			t.Errorf("hiegw.example.yaml does not document %s", key)
		}
	}
}

// yamlKeys lists the YAML keys of a configuration struct type, nested
// structs and slices of structs included.
func yamlKeys(typ reflect.Type, seen map[string]bool) []string {
	if seen == nil {
		seen = map[string]bool{}
	}
	for typ.Kind() == reflect.Slice || typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
		out = append(out, yamlKeys(f.Type, seen)...)
	}
	return out
}

// secretLike finds values that must never sit in a ConfigMap or a
// configuration file under version control.
var secretLike = []*regexp.Regexp{
	regexp.MustCompile(`(?i)password\s*:\s*["']?[^"'\s#]`),
	regexp.MustCompile(`://[^/\s:@]+:[^@\s/]+@`), // credentials in a URL
	regexp.MustCompile(`(?i)\bpassword=[^&\s]+`),
	regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`),
	regexp.MustCompile(`(?i)\b(secret|api_?key|sasl_password)\s*:\s*["']?[^"'\s#]`),
}

func findSecret(s string) string {
	for _, re := range secretLike {
		if m := re.FindString(s); m != "" {
			return m
		}
	}
	return ""
}

type k8s struct {
	docs []doc
}

func (k k8s) kinds(kind string) []doc {
	var out []doc
	for _, d := range k.docs {
		if str(d.v, "kind") == kind {
			out = append(out, d)
		}
	}
	return out
}

func (k k8s) named(kind, name string) (doc, bool) {
	for _, d := range k.kinds(kind) {
		if str(d.v, "metadata", "name") == name {
			return d, true
		}
	}
	return doc{}, false
}

func readK8s(t *testing.T) k8s {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var k k8s
	for _, f := range files {
		for _, d := range readDocs(t, f) {
			if str(d.v, "apiVersion") == "" || str(d.v, "kind") == "" {
				t.Errorf("%s: no apiVersion or kind", d)
			}
			if str(d.v, "kind") != "Kustomization" && str(d.v, "metadata", "name") == "" {
				t.Errorf("%s: no metadata.name", d)
			}
			k.docs = append(k.docs, d)
		}
	}
	return k
}

func TestKubernetesManifests(t *testing.T) {
	k := readK8s(t)
	ports := defaultPorts(t)

	kust := k.kinds("Kustomization")
	if len(kust) != 1 {
		t.Fatalf("want one kustomization.yaml, got %d", len(kust))
	}
	var listed []string
	for _, r := range list(kust[0].v, "resources") {
		listed = append(listed, r.(string))
	}
	files, _ := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	sort.Strings(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("kustomization resources %v, files %v", listed, want)
	}

	deps := k.kinds("Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, got %d", len(deps))
	}
	dep := deps[0].v
	if r := toInt(get(dep, "spec", "replicas")); r < 2 {
		t.Errorf("Deployment replicas = %d, want several", r)
	}
	podLabels, _ := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	selector, _ := get(dep, "spec", "selector", "matchLabels").(map[string]any)
	if len(selector) == 0 || !subset(selector, podLabels) {
		t.Errorf("Deployment selector %v does not match pod labels %v", selector, podLabels)
	}
	if get(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("pods must run as non-root")
	}
	containers := list(dep, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("want one container, got %d", len(containers))
	}
	// The configuration file lies in a ConfigMap mounted as a directory: a
	// subPath mount never sees the ConfigMap change, and hiegw takes an
	// edited file without a restart.
	var configFile string
	for i, a := range list(containers[0], "args") {
		if a == "--config" {
			configFile = str(containers[0], "args", i+1)
		}
	}
	mounted := false
	for _, m := range list(containers[0], "volumeMounts") {
		if str(m, "mountPath") == filepath.Dir(configFile) {
			mounted = str(m, "subPath") == ""
		}
	}
	if configFile == "" || !mounted {
		t.Errorf("--config %q is not in a directory mounted whole (no subPath)", configFile)
	}
	c := containers[0]
	if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("container must have a read-only root filesystem and no privilege escalation")
	}
	named := map[string]int{}
	for _, p := range list(c, "ports") {
		named[str(p, "name")] = toInt(get(p, "containerPort"))
	}
	for name, port := range ports {
		if named[name] != port {
			t.Errorf("container port %s = %d, hiegw's default is %d", name, named[name], port)
		}
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if p := get(c, probe, "httpGet", "port"); p != "http" && toInt(p) != ports["http"] {
			t.Errorf("%s port %v is not the HTTP port", probe, p)
		}
	}

	// Volumes: every mount has a volume; every ConfigMap and Secret a
	// volume or envFrom names is defined in the manifests.
	vols := map[string]any{}
	for _, v := range list(dep, "spec", "template", "spec", "volumes") {
		vols[str(v, "name")] = v
		if cm := str(v, "configMap", "name"); cm != "" {
			if _, ok := k.named("ConfigMap", cm); !ok {
				t.Errorf("volume %s names ConfigMap %s, not defined", str(v, "name"), cm)
			}
		}
		if s := str(v, "secret", "secretName"); s != "" {
			if _, ok := k.named("Secret", s); !ok {
				t.Errorf("volume %s names Secret %s, not defined", str(v, "name"), s)
			}
		}
	}
	all := append(list(dep, "spec", "template", "spec", "initContainers"), containers...)
	for _, ct := range all {
		for _, m := range list(ct, "volumeMounts") {
			if _, ok := vols[str(m, "name")]; !ok {
				t.Errorf("container %s mounts %s, no such volume", str(ct, "name"), str(m, "name"))
			}
		}
	}
	// GOMEMLIMIT keeps the garbage collector's soft limit under the pod's
	// memory limit, with room for what the Go runtime does not count.
	memLimit := bytesOf(t, str(c, "resources", "limits", "memory"))
	var goLimit int64
	for _, e := range list(c, "env") {
		if str(e, "name") == "GOMEMLIMIT" {
			goLimit = bytesOf(t, str(e, "value"))
		}
	}
	if goLimit == 0 || goLimit >= memLimit || goLimit < memLimit*8/10 {
		t.Errorf("GOMEMLIMIT %d bytes, limits.memory %d: want it set between 80 %% and 100 %% of the limit", goLimit, memLimit)
	}
	for _, e := range list(c, "envFrom") {
		if s := str(e, "secretRef", "name"); s != "" {
			if _, ok := k.named("Secret", s); !ok {
				t.Errorf("envFrom names Secret %s, not defined", s)
			}
		}
		if get(e, "configMapRef") != nil {
			t.Error("environment from a ConfigMap: secrets must come from Secrets, settings from the configuration file")
		}
	}

	// Services select the pods and expose MLLP, SFTP and HTTP by port name.
	exposed := map[string]bool{}
	for _, s := range k.kinds("Service") {
		sel, _ := get(s.v, "spec", "selector").(map[string]any)
		if len(sel) == 0 || !subset(sel, podLabels) {
			t.Errorf("%s: selector %v does not select the gateway pods", s, sel)
		}
		for _, p := range list(s.v, "spec", "ports") {
			tp := get(p, "targetPort")
			name, isName := tp.(string)
			if !isName {
				for n, port := range named {
					if port == toInt(tp) {
						name = n
					}
				}
			}
			if _, ok := named[name]; !ok {
				t.Errorf("%s: targetPort %v is not a container port", s, tp)
			}
			if str(p, "protocol") != "" && str(p, "protocol") != "TCP" {
				t.Errorf("%s: port %v is not TCP", s, tp)
			}
			exposed[name] = true
		}
	}
	for name := range ports {
		if !exposed[name] {
			t.Errorf("no Service exposes %s", name)
		}
	}

	// ConfigMaps hold no secret; Secrets hold only placeholders.
	for _, cm := range k.kinds("ConfigMap") {
		data, _ := get(cm.v, "data").(map[string]any)
		for key, v := range data {
			if m := findSecret(key + ": " + fmt.Sprint(v)); m != "" {
				t.Errorf("%s key %s looks like a secret: %q", cm, key, m)
			}
		}
	}
	for _, s := range k.kinds("Secret") {
		for _, field := range []string{"data", "stringData"} {
			m, _ := get(s.v, field).(map[string]any)
			for key, v := range m {
				if !strings.Contains(fmt.Sprint(v), "REPLACE_ME") {
					t.Errorf("%s %s.%s is not a placeholder: never commit secret values", s, field, key)
				}
			}
		}
	}
	if len(k.kinds("PodDisruptionBudget")) == 0 {
		t.Error("no PodDisruptionBudget: a node drain could stop every replica at once")
	}
}

func subset(a, b map[string]any) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesConfig loads the ConfigMap's hiegw.yaml with hiegw's own
// loader, as the pod would (the DSN from the Secret, the files the Secrets
// provide present), and checks its addresses against the container ports.
func TestKubernetesConfig(t *testing.T) {
	k := readK8s(t)
	cm, ok := k.named("ConfigMap", "hiegw-config")
	if !ok {
		t.Fatal("no ConfigMap hiegw-config")
	}
	text := str(cm.v, "data", "hiegw.yaml")
	if text == "" {
		t.Fatal("hiegw-config has no hiegw.yaml")
	}
	// The Secrets' files, mounted under /etc/hiegw/tls in the pod.
	dir := t.TempDir()
	re := regexp.MustCompile(`/etc/hiegw/tls/[A-Za-z0-9_./-]+`)
	for _, p := range re.FindAllString(text, -1) {
		local := filepath.Join(dir, strings.TrimPrefix(p, "/etc/hiegw/tls/"))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte("placeholder"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text = strings.ReplaceAll(text, "/etc/hiegw/tls/", dir+"/")
	path := filepath.Join(dir, "hiegw.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sec, ok := k.named("Secret", "hiegw-secrets")
	if !ok {
		t.Fatal("no Secret hiegw-secrets")
	}
	env := map[string]string{}
	for key, v := range get(sec.v, "stringData").(map[string]any) {
		env[key] = fmt.Sprint(v)
	}
	c := loadConfig(t, path, env)
	if c.Store.PostgresDSN == "" || len(c.Kafka.Brokers) == 0 {
		t.Errorf("the cluster configuration must use PostgreSQL and Kafka: dsn set %v, brokers %v", c.Store.PostgresDSN != "", c.Kafka.Brokers)
	}
	ports := defaultPorts(t)
	for name, addr := range map[string]string{"mllp": c.MLLP.Addr, "http": c.HTTP.Addr, "sftp": c.SFTP.Addr} {
		if portOf(t, addr) != ports[name] {
			t.Errorf("configured %s port %s differs from the container port %d", name, addr, ports[name])
		}
		if host, _, _ := net.SplitHostPort(addr); host != "0.0.0.0" && host != "" {
			t.Errorf("%s listens on %s: in a pod it must listen on every interface", name, addr)
		}
	}
	if !c.MLLP.TLS.Enabled() {
		t.Error("MLLP in the cluster must use TLS")
	}
	if c.Mappings.Dir != "/etc/hiegw/mappings" || c.DataDir != "/var/lib/hiegw" {
		t.Errorf("mappings dir %s, data dir %s: not where the manifests mount them", c.Mappings.Dir, c.DataDir)
	}
}

// TestKubernetesMappings puts the sender mappings of the ConfigMap beside the
// shipped defaults and code tables, as the pod sees them, and compiles the
// set with hiegw's mapping loader.
func TestKubernetesMappings(t *testing.T) {
	k := readK8s(t)
	cm, ok := k.named("ConfigMap", "hiegw-mappings-senders")
	if !ok {
		t.Fatal("no ConfigMap hiegw-mappings-senders")
	}
	dir := t.TempDir()
	for _, sub := range []string{"default", "codes"} {
		copyDir(t, filepath.Join("..", "mappings", sub), filepath.Join(dir, sub))
	}
	if err := os.MkdirAll(filepath.Join(dir, "senders"), 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := get(cm.v, "data").(map[string]any)
	if len(data) == 0 {
		t.Fatal("hiegw-mappings-senders has no data")
	}
	for name, v := range data {
		if err := os.WriteFile(filepath.Join(dir, "senders", name), []byte(fmt.Sprint(v)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	set, err := mapping.Load(dir)
	if err != nil {
		t.Fatalf("the mounted mapping set does not compile:\n%v", err)
	}
	if len(set.Senders()) == 0 {
		t.Error("the sender mappings name no sender")
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCompose(t *testing.T) {
	docs := readDocs(t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	cf := docs[0].v
	services, _ := get(cf, "services").(map[string]any)
	for _, s := range []string{"hiegw", "postgres", "kafka"} {
		if services[s] == nil {
			t.Fatalf("compose.yaml has no %s service", s)
		}
	}
	kenv, _ := get(services["kafka"], "environment").(map[string]any)
	if roles := fmt.Sprint(kenv["KAFKA_PROCESS_ROLES"]); !strings.Contains(roles, "controller") || !strings.Contains(roles, "broker") {
		t.Errorf("Kafka is not in KRaft mode: process roles %q", roles)
	}
	for key := range kenv {
		if strings.Contains(key, "ZOOKEEPER") {
			t.Errorf("Kafka configured with ZooKeeper (%s): use KRaft", key)
		}
	}
	h := services["hiegw"]
	published := map[int]string{}
	for _, p := range list(h, "ports") {
		parts := strings.Split(fmt.Sprint(p), ":")
		if len(parts) != 3 {
			t.Errorf("port %v: publish as HOST_IP:PORT:PORT", p)
			continue
		}
		published[toInt(parts[2])] = parts[0]
	}
	for name, port := range defaultPorts(t) {
		if ip, ok := published[port]; !ok {
			t.Errorf("compose does not publish %s (%d)", name, port)
		} else if ip != "127.0.0.1" {
			t.Errorf("compose publishes %s on %s; keep it on 127.0.0.1", name, ip)
		}
	}
	deps, _ := get(h, "depends_on").(map[string]any)
	for _, s := range []string{"postgres", "kafka-topics"} {
		if deps[s] == nil {
			t.Errorf("hiegw does not wait for %s", s)
		}
	}
	// The image has no shell or curl: the health check is hiegw's own, on
	// the HTTP port.
	if test := fmt.Sprint(list(get(h, "healthcheck"), "test")); !strings.Contains(test, "/usr/local/bin/hiegw health") ||
		!strings.Contains(test, fmt.Sprintf("127.0.0.1:%d/readyz", defaultPorts(t)["http"])) {
		t.Errorf("hiegw's compose health check %s: want hiegw health on the HTTP port's /readyz", test)
	}

	// The environment file and configuration the service mounts load with
	// hiegw's loader and point at the other services.
	env := map[string]string{}
	for _, f := range list(h, "env_file") {
		fh, err := os.Open(fmt.Sprint(f))
		if err != nil {
			t.Fatalf("env_file: %v", err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, _ := strings.Cut(line, "=")
			env[k] = v
		}
		fh.Close()
	}
	var cfgFile string
	for _, v := range list(h, "volumes") {
		parts := strings.Split(fmt.Sprint(v), ":")
		if strings.HasPrefix(parts[0], ".") {
			if _, err := os.Stat(parts[0]); err != nil {
				t.Errorf("compose mounts %s: %v", parts[0], err)
			}
		}
		// The configuration's directory is mounted whole, so that edits
		// reach the container (a file mount keeps the file it started with
		// once an editor writes a new one).
		if len(parts) > 1 && parts[1] == "/etc/hiegw/config" {
			cfgFile = filepath.Join(parts[0], "hiegw.yaml")
		}
	}
	if cfgFile == "" {
		t.Fatal("compose does not mount a configuration directory at /etc/hiegw/config")
	}
	if cmd := fmt.Sprint(list(h, "command")); !strings.Contains(cmd, "--config /etc/hiegw/config/hiegw.yaml") {
		t.Errorf("hiegw's compose command %s does not read the mounted configuration", cmd)
	}
	if data, err := os.ReadFile(cfgFile); err != nil {
		t.Fatal(err)
	} else if m := findSecret(string(data)); m != "" {
		t.Errorf("%s holds a secret (%q): put it in the environment file", cfgFile, m)
	}
	c := loadConfig(t, cfgFile, env)
	if c.Store.PostgresDSN == "" || !strings.Contains(c.Store.PostgresDSN, "@postgres:") {
		t.Error("hiegw in compose does not use the postgres service")
	}
	for _, b := range c.Kafka.Brokers {
		host, _, _ := net.SplitHostPort(b)
		if services[host] == nil {
			t.Errorf("kafka broker %s is not a compose service", b)
		}
	}
	if len(c.Kafka.Brokers) == 0 {
		t.Error("hiegw in compose does not use the kafka service")
	}
	for name, addr := range map[string]string{"mllp": c.MLLP.Addr, "http": c.HTTP.Addr, "sftp": c.SFTP.Addr} {
		if portOf(t, addr) != defaultPorts(t)[name] {
			t.Errorf("compose config %s port %s differs from the published port", name, addr)
		}
	}
	for name, s := range get(cf, "secrets").(map[string]any) {
		if f := str(s, "file"); f != "" {
			if _, err := os.Stat(f); err != nil {
				t.Errorf("secret %s: %v", name, err)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, user, expose []string
	var health string
	cgoOff := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, f[1])
		case "USER":
			user = append(user, f[1])
		case "EXPOSE":
			expose = append(expose, f[1:]...)
		case "HEALTHCHECK":
			health = line
		case "RUN":
			if strings.Contains(line, "CGO_ENABLED=0") && strings.Contains(line, "go build") {
				cgoOff = true
			}
		}
	}
	if len(from) < 2 {
		t.Errorf("want a multi-stage build, found FROM %v", from)
	}
	if !cgoOff {
		t.Error("the binary is not built static (CGO_ENABLED=0 go build)")
	}
	if len(user) == 0 {
		t.Error("no USER: the image would run as root")
	} else if u := user[len(user)-1]; u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("the image runs as %s", u)
	}
	for name, port := range defaultPorts(t) {
		if !slices.Contains(expose, strconv.Itoa(port)) {
			t.Errorf("EXPOSE lacks %s (%d)", name, port)
		}
	}
	// The instruction continues on the next line; the whole text is checked.
	if i := strings.Index(string(data), "HEALTHCHECK"); health == "" || i < 0 ||
		!strings.Contains(string(data)[i:], `CMD ["/usr/local/bin/hiegw", "health", "--url", "http://127.0.0.1:`+strconv.Itoa(defaultPorts(t)["http"])+`/healthz"]`) {
		t.Error("no HEALTHCHECK running hiegw health against /healthz on the HTTP port")
	}
}

func TestSystemdUnit(t *testing.T) {
	path := filepath.Join("systemd", "hiegw.service")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: not key=value: %q", path, line)
			continue
		}
		keys[k] = append(keys[k], v)
	}
	one := func(k string) string {
		if len(keys[k]) == 0 {
			return ""
		}
		return keys[k][len(keys[k])-1]
	}
	if !strings.Contains(one("ExecStart"), "hiegw serve") {
		t.Errorf("ExecStart %q does not run hiegw serve", one("ExecStart"))
	}
	for k, want := range map[string]string{"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "User": "hiegw", "RestrictSUIDSGID": "yes",
		"MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "StateDirectory": "hiegw", "KillSignal": "SIGTERM"} {
		if got := one(k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	// The configuration and keys are read in place, so that edits and
	// renewals are seen: systemd copies credentials once, at start, and a
	// root-only ConfigurationDirectory would lock the user out of the
	// mappings under it.
	if !strings.Contains(one("ExecStart"), "--config /etc/hiegw/hiegw.yaml") {
		t.Errorf("ExecStart %q does not read /etc/hiegw/hiegw.yaml in place", one("ExecStart"))
	}
	for _, k := range []string{"LoadCredential", "DynamicUser", "ConfigurationDirectory"} {
		if len(keys[k]) > 0 {
			t.Errorf("%s=%v: the service must read its configuration, keys and mappings in place", k, keys[k])
		}
	}
	if one("CapabilityBoundingSet") != "" {
		t.Errorf("CapabilityBoundingSet=%q: hiegw needs no capability on its default ports", one("CapabilityBoundingSet"))
	}
	if one("ExecReload") == "" || !strings.Contains(one("ExecReload"), "HUP") {
		t.Error("no ExecReload sending SIGHUP (mapping and subscription reload)")
	}

	// systemd's own check, when this machine has it.
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit not verified by systemd")
		return
	}
	tmp := filepath.Join(t.TempDir(), "hiegw.service")
	if err := os.WriteFile(tmp, bytes.ReplaceAll(data, []byte("/usr/local/bin/hiegw"), []byte("/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// bytesOf reads a Kubernetes quantity (1Gi) or a GOMEMLIMIT value (920MiB)
// in binary units.
func bytesOf(t *testing.T, q string) int64 {
	t.Helper()
	for i, unit := range []string{"Ki", "Mi", "Gi"} {
		num, ok := strings.CutSuffix(strings.TrimSuffix(q, "B"), unit)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			t.Fatalf("quantity %q: %v", q, err)
		}
		return n << (10 * (i + 1))
	}
	t.Fatalf("quantity %q: want a number with Ki, Mi or Gi (or KiB, MiB, GiB)", q)
	return 0
}
