// Package config reads hiegw's configuration: defaults, then an optional
// YAML file (unknown keys are errors), then HIEGW_* environment variables,
// then command-line flags. Validate names the setting that is wrong.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "30s", "5m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 30s or 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// String formats the duration.
func (d Duration) String() string { return time.Duration(d).String() }

// TLS configures a TLS server or client.
type TLS struct {
	Cert string `yaml:"cert"` // PEM certificate file
	Key  string `yaml:"key"`  // PEM private key file
	// ClientCA, when set on a server, requires and verifies client
	// certificates against it (mutual TLS).
	ClientCA string `yaml:"client_ca"`
	// CA verifies servers (clients only).
	CA string `yaml:"ca"`
	// MinVersion is the lowest TLS version accepted: "1.2" (the default) or
	// "1.3". Older versions are refused at start-up.
	MinVersion string `yaml:"min_version"`
}

// Enabled tells whether any TLS setting is present (min_version alone asks
// for TLS too: a server then lacks its certificate and refuses to start, a
// client verifies with the system's roots).
func (t TLS) Enabled() bool {
	return t.Cert != "" || t.Key != "" || t.ClientCA != "" || t.CA != "" || t.MinVersion != ""
}

// MLLPSender is a sender known to the MLLP listener.
type MLLPSender struct {
	Name string `yaml:"name"`
	// CertCN identifies the sender by its client certificate's common name.
	CertCN string `yaml:"cert_cn"`
	// CertSHA256 identifies the sender by the SHA-256 fingerprint (hex, colons
	// allowed) of its client certificate; when both are set, both must match.
	CertSHA256 string `yaml:"cert_sha256"`
	// Facilities the sender may send as (MSH-4 namespace ids); empty allows any.
	Facilities []string `yaml:"facilities"`
	// AckAddr (host:port) is the sender's MLLP receiver for application
	// acknowledgements: a message in enhanced mode whose MSH-16 asks for one
	// (AL, ER, SU) is answered there once it is processed. Empty: they are
	// kept in the store as "no_route" and not sent.
	AckAddr string `yaml:"ack_addr"`
	// AckTLS, when any of it is set, speaks TLS 1.2+ to AckAddr: ca verifies
	// the sender's receiver (the system's roots without it), cert and key are
	// hiegw's client certificate if the receiver asks for one.
	AckTLS TLS `yaml:"ack_tls"`
}

// AckRoute is where a sender that is not identified by a client certificate
// (plain TCP, or TLS without mllp.senders) receives its application
// acknowledgements. Such a sender is known by the name hiegw gives its
// messages: MSH-4 (sending facility: namespace id, else universal id), else
// MSH-3 (sending application).
type AckRoute struct {
	// Facility is that sender name, exactly as the messages carry it.
	Facility string `yaml:"facility"`
	// Addr (host:port) is the sender's MLLP receiver for application
	// acknowledgements.
	Addr string `yaml:"addr"`
	// TLS, when any of it is set, speaks TLS 1.2+ to Addr (ca, cert, key,
	// min_version as in mllp.senders[].ack_tls).
	TLS TLS `yaml:"tls"`
}

// Config is the whole configuration.
type Config struct {
	// Version is the running binary's version (set by the command, not
	// read from the file); the console shows it.
	Version string `yaml:"-"`
	// File is the configuration file Load read (--config), "" when none.
	File    string `yaml:"-"`
	DataDir string `yaml:"data_dir"`
	Log     struct {
		Level  string `yaml:"level"`  // debug, info, warn, error
		Format string `yaml:"format"` // text, json
		// LogMessageBodies logs message bodies at debug level. They hold
		// protected health information: leave off in production.
		LogMessageBodies bool `yaml:"log_message_bodies"`
	} `yaml:"log"`
	MLLP struct {
		Addr            string   `yaml:"addr"`
		TLS             TLS      `yaml:"tls"`
		MaxMessageBytes int      `yaml:"max_message_bytes"`
		IdleTimeout     Duration `yaml:"idle_timeout"`
		ReadTimeout     Duration `yaml:"read_timeout"`
		MaxConnections  int      `yaml:"max_connections"`
		// MaxConnectionsPerAddress bounds the connections from one IP
		// address (0: only max_connections bounds them).
		MaxConnectionsPerAddress int          `yaml:"max_connections_per_address"`
		Allow                    []string     `yaml:"allow"` // CIDRs or addresses; empty allows all
		Senders                  []MLLPSender `yaml:"senders"`
		// AckRoutes are the return addresses for application
		// acknowledgements of senders named by MSH-4/MSH-3 rather than by
		// a client certificate.
		AckRoutes []AckRoute `yaml:"ack_routes"`
		// AppAck tunes the delivery of application acknowledgements.
		AppAck struct {
			ReplyTimeout Duration `yaml:"reply_timeout"` // connect, send and read the sender's answer
			MinBackoff   Duration `yaml:"min_backoff"`   // first wait after a failed delivery; doubles
			MaxBackoff   Duration `yaml:"max_backoff"`   // longest wait between attempts
		} `yaml:"app_ack"`
	} `yaml:"mllp"`
	HTTP struct {
		Addr string `yaml:"addr"`
		TLS  TLS    `yaml:"tls"`
		// Tokens are the API's bearer tokens, stored hashed. With none, the
		// API may listen on a loopback address only.
		Tokens []APIToken `yaml:"tokens"`
	} `yaml:"http"`
	SFTP struct {
		Addr               string        `yaml:"addr"` // empty disables the listener
		HostKey            string        `yaml:"host_key"`
		MaxFileBytes       int64         `yaml:"max_file_bytes"`
		MaxFilesPerSession int           `yaml:"max_files_per_session"`
		Accounts           []SFTPAccount `yaml:"accounts"`
		// MaxAuthFailures failed logins from one client address within
		// AuthFailureWindow lock that address out for AuthLockout: its new
		// connections are closed at once. 0 turns throttling off.
		MaxAuthFailures   int      `yaml:"max_auth_failures"`
		AuthFailureWindow Duration `yaml:"auth_failure_window"`
		AuthLockout       Duration `yaml:"auth_lockout"`
	} `yaml:"sftp"`
	Broker struct {
		Addr      string   `yaml:"addr"` // embedded broker; unused when kafka.brokers is set
		Retention Duration `yaml:"retention"`
	} `yaml:"broker"`
	Kafka struct {
		Brokers []string `yaml:"brokers"` // real Kafka; empty means the embedded broker
		TLS     TLS      `yaml:"tls"`
		SASL    struct {
			Mechanism string `yaml:"mechanism"` // SCRAM-SHA-256 or SCRAM-SHA-512
			User      string `yaml:"user"`
			Password  string `yaml:"password"`
		} `yaml:"sasl"`
		DeadLetterSuffix string `yaml:"dead_letter_suffix"`
		MaxAttempts      int    `yaml:"max_attempts"`
		// Compression of the event batches the gateway produces: none,
		// gzip, snappy (default), lz4 or zstd.
		Compression string `yaml:"compression"`
	} `yaml:"kafka"`
	Store struct {
		PostgresDSN string `yaml:"postgres_dsn"` // empty means the embedded store in data_dir
		Sync        string `yaml:"sync"`         // embedded store: full (default) or normal
		// RawRetention is how long raw message bodies (PHI) are kept once a
		// message is settled (processed or rejected); 0 keeps them. The
		// record, the message log row and its ACK stay.
		RawRetention Duration `yaml:"raw_retention"`
		// OutboxRetention is how long published events (their FHIR Bundles:
		// PHI) are kept in the outbox; 0 keeps them. Replay reaches back as
		// far as this. Events not yet published and dead-lettered ones stay.
		OutboxRetention Duration `yaml:"outbox_retention"`
	} `yaml:"store"`
	Mappings struct {
		Dir            string   `yaml:"dir"`
		ReloadInterval Duration `yaml:"reload_interval"`
	} `yaml:"mappings"`
	Subscriptions struct {
		File string `yaml:"file"` // empty: one default subscription, every event to hie.events
	} `yaml:"subscriptions"`
	Pipeline struct {
		Lanes int `yaml:"lanes"`
		// Paused starts the gateway with processing paused: it receives,
		// stores and acknowledges, and processes nothing until an operator
		// resumes it (POST /api/v1/pipeline/resume). An intake-only replica.
		Paused bool `yaml:"paused"`
		// LeaseTTL is the processing leases' time to live on PostgreSQL:
		// the replicas sharing a database split processing by sender
		// partition, each partition under a lease its replica renews
		// every third of this; the others take a replica's partitions
		// over this long after it stopped renewing (at once after a clean
		// shutdown). 0s turns the leases off (every replica processes
		// everything: only for a single replica).
		LeaseTTL Duration `yaml:"lease_ttl"`
	} `yaml:"pipeline"`
	Intake struct {
		// GatherDelay bounds how long a group commit waits for the senders
		// that recent traffic says are about to send (several connections
		// each waiting for its ACK): one sync then carries all their
		// messages. A lone sender never waits. 0s turns it off.
		GatherDelay Duration `yaml:"gather_delay"`
	} `yaml:"intake"`
	Debug struct {
		// PprofAddr, when set, serves Go's runtime profiles
		// (/debug/pprof/) on a listener of their own. Profiles show the
		// program, not message content, but a heap or goroutine dump can
		// hold fragments of it: the address must be loopback.
		PprofAddr string `yaml:"pprof_addr"`
	} `yaml:"debug"`
}

// API roles.
const (
	RoleOperator = "operator"
	RoleAnalyst  = "analyst"
	RoleReadOnly = "read-only"
)

// APIToken is one bearer token of the HTTP API.
type APIToken struct {
	Name string `yaml:"name"` // who the token belongs to; named in the audit log
	// Hash is "sha256:" followed by the hex SHA-256 of the token, never the
	// token itself.
	Hash string `yaml:"hash"`
	Role string `yaml:"role"` // operator, analyst or read-only
}

// SFTPAccount is an SFTP sender account.
type SFTPAccount struct {
	Name           string `yaml:"name"`
	AuthorizedKeys string `yaml:"authorized_keys"` // authorized_keys file
	PasswordHash   string `yaml:"password_hash"`   // bcrypt or argon2id; never plain text
}

// Default returns the built-in defaults: everything on 127.0.0.1, data in
// ./data, the embedded store and broker.
func Default() *Config {
	c := &Config{DataDir: "data"}
	c.Log.Level, c.Log.Format = "info", "text"
	c.MLLP.Addr = "127.0.0.1:2575"
	c.MLLP.MaxMessageBytes = 4 << 20
	c.MLLP.IdleTimeout = Duration(5 * time.Minute)
	c.MLLP.ReadTimeout = Duration(30 * time.Second)
	c.MLLP.AppAck.ReplyTimeout = Duration(30 * time.Second)
	c.MLLP.AppAck.MinBackoff = Duration(time.Second)
	c.MLLP.AppAck.MaxBackoff = Duration(5 * time.Minute)
	c.MLLP.MaxConnections = 256
	c.HTTP.Addr = "127.0.0.1:8080"
	c.SFTP.Addr = "127.0.0.1:2222"
	c.SFTP.MaxFileBytes = 32 << 20
	c.SFTP.MaxFilesPerSession = 10000
	c.SFTP.MaxAuthFailures = 10
	c.SFTP.AuthFailureWindow = Duration(10 * time.Minute)
	c.SFTP.AuthLockout = Duration(15 * time.Minute)
	c.Broker.Addr = "127.0.0.1:9092"
	c.Broker.Retention = Duration(7 * 24 * time.Hour)
	c.Kafka.DeadLetterSuffix = ".dlq"
	c.Kafka.MaxAttempts = 10
	c.Kafka.Compression = "snappy"
	c.Store.Sync = "full"
	c.Mappings.Dir = "mappings"
	c.Mappings.ReloadInterval = Duration(2 * time.Second)
	c.Pipeline.Lanes = 4
	c.Pipeline.LeaseTTL = Duration(15 * time.Second)
	c.Intake.GatherDelay = Duration(300 * time.Microsecond)
	return c
}

// flagDef binds one flag (and its HIEGW_ variable) to a setting.
type flagDef struct {
	name, usage string
	set         func(c *Config, v string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

var flagDefs = []flagDef{
	{"data-dir", "directory for the embedded store, broker data and SFTP folders", str(func(c *Config) *string { return &c.DataDir })},
	{"mllp-addr", "MLLP listener address", str(func(c *Config) *string { return &c.MLLP.Addr })},
	{"http-addr", "HTTP address (health, metrics, API)", str(func(c *Config) *string { return &c.HTTP.Addr })},
	{"sftp-addr", "SFTP listener address (empty disables it)", str(func(c *Config) *string { return &c.SFTP.Addr })},
	{"broker-addr", "embedded Kafka-protocol broker address", str(func(c *Config) *string { return &c.Broker.Addr })},
	{"kafka-brokers", "comma-separated Kafka brokers; replaces the embedded broker", func(c *Config, v string) error {
		c.Kafka.Brokers = nil
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.Kafka.Brokers = append(c.Kafka.Brokers, b)
			}
		}
		return nil
	}},
	{"postgres-dsn", "PostgreSQL DSN; replaces the embedded store", str(func(c *Config) *string { return &c.Store.PostgresDSN })},
	{"mappings-dir", "directory of mapping files", str(func(c *Config) *string { return &c.Mappings.Dir })},
	{"subscriptions", "subscriptions file", str(func(c *Config) *string { return &c.Subscriptions.File })},
	{"log-level", "debug, info, warn or error", str(func(c *Config) *string { return &c.Log.Level })},
	{"log-format", "text or json", str(func(c *Config) *string { return &c.Log.Format })},
	{"pprof-addr", "loopback address serving Go's runtime profiles at /debug/pprof/ (off when empty)", str(func(c *Config) *string { return &c.Debug.PprofAddr })},
}

// EnvName is the environment variable of a flag.
func EnvName(flagName string) string {
	return "HIEGW_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load builds the configuration from args (flags, including --config FILE)
// and the environment, then validates it.
func Load(args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	fs := flag.NewFlagSet("hiegw serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", getenv("HIEGW_CONFIG"), "YAML configuration file (env HIEGW_CONFIG)")
	vals := map[string]*string{}
	for _, d := range flagDefs {
		vals[d.name] = fs.String(d.name, "", d.usage+" (env "+EnvName(d.name)+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	c := Default()
	if *file != "" {
		if err := c.readFile(*file); err != nil {
			return nil, err
		}
		c.File = *file
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, d := range flagDefs {
		v, from := getenv(EnvName(d.name)), EnvName(d.name)
		if set[d.name] {
			v, from = *vals[d.name], "--"+d.name
		} else if v == "" {
			continue
		}
		if err := d.set(c, v); err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
	}
	// Secrets come from the environment only, never from flags (which any
	// user of the machine can read in the process list).
	for _, e := range secretEnv {
		if v := getenv(e.name); v != "" {
			*e.field(c) = v
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// secretEnv are the settings that an environment variable may hold instead
// of the configuration file: a Kubernetes Secret or a systemd credential
// then keeps them out of the file.
var secretEnv = []struct {
	name  string
	field func(*Config) *string
}{
	{"HIEGW_KAFKA_SASL_PASSWORD", func(c *Config) *string { return &c.Kafka.SASL.Password }},
}

func (c *Config) readFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return c.decode(path, data)
}

// decode reads a configuration file's content over c; path names it in
// errors.
func (c *Config) decode(path string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Validate checks every setting and reports all problems at once, each
// named by its YAML path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	addr := func(path, v string, optional bool) {
		if v == "" {
			if !optional {
				bad(path, "is required (host:port)")
			}
			return
		}
		if _, p, err := net.SplitHostPort(v); err != nil {
			bad(path, "%q is not host:port", v)
		} else if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
			bad(path, "%q has no valid port", v)
		}
	}
	if c.DataDir == "" {
		bad("data_dir", "is required")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	addr("mllp.addr", c.MLLP.Addr, false)
	addr("http.addr", c.HTTP.Addr, false)
	addr("sftp.addr", c.SFTP.Addr, true)
	if d := time.Duration(c.Intake.GatherDelay); d < 0 || d > 10*time.Millisecond {
		bad("intake.gather_delay", "%s must be between 0s (off) and 10ms", d)
	}
	addr("debug.pprof_addr", c.Debug.PprofAddr, true)
	if c.Debug.PprofAddr != "" && !IsLoopback(c.Debug.PprofAddr) {
		bad("debug.pprof_addr", "%q is not a loopback address: profiles may hold fragments of messages", c.Debug.PprofAddr)
	}
	if len(c.Kafka.Brokers) == 0 {
		addr("broker.addr", c.Broker.Addr, false)
	}
	for i, b := range c.Kafka.Brokers {
		addr(fmt.Sprintf("kafka.brokers[%d]", i), b, false)
	}
	if c.MLLP.MaxMessageBytes < 1024 {
		bad("mllp.max_message_bytes", "must be at least 1024, is %d", c.MLLP.MaxMessageBytes)
	}
	if c.MLLP.IdleTimeout <= 0 || c.MLLP.ReadTimeout <= 0 {
		bad("mllp.idle_timeout/read_timeout", "must be positive")
	}
	if c.MLLP.MaxConnections < 0 {
		bad("mllp.max_connections", "must be 0 (no bound) or more, is %d", c.MLLP.MaxConnections)
	}
	if n := c.MLLP.MaxConnectionsPerAddress; n < 0 || c.MLLP.MaxConnections > 0 && n > c.MLLP.MaxConnections {
		bad("mllp.max_connections_per_address", "must be 0 (no bound) to max_connections (%d), is %d", c.MLLP.MaxConnections, n)
	}
	if a := c.MLLP.AppAck; a.ReplyTimeout <= 0 || a.MinBackoff <= 0 || a.MaxBackoff <= 0 {
		bad("mllp.app_ack", "reply_timeout, min_backoff and max_backoff must be positive (are %s, %s, %s)",
			a.ReplyTimeout, a.MinBackoff, a.MaxBackoff)
	} else if a.MaxBackoff < a.MinBackoff {
		bad("mllp.app_ack.max_backoff", "%s is shorter than min_backoff %s", a.MaxBackoff, a.MinBackoff)
	}
	for i, a := range c.MLLP.Allow {
		if _, err := netip.ParsePrefix(a); err != nil {
			if _, err := netip.ParseAddr(a); err != nil {
				bad(fmt.Sprintf("mllp.allow[%d]", i), "%q is neither an address nor a CIDR", a)
			}
		}
	}
	tlsPair := func(path string, t TLS, server bool) {
		if (t.Cert == "") != (t.Key == "") {
			bad(path, "cert and key must be given together")
		}
		if t.ClientCA != "" && t.Cert == "" {
			bad(path, "client_ca needs cert and key")
		}
		if server && t.Enabled() && t.Cert == "" && t.ClientCA == "" {
			bad(path, "TLS settings need cert and key")
		}
		switch t.MinVersion {
		case "", "1.2", "1.3":
		default:
			bad(path+".min_version", "%q is not 1.2 or 1.3 (TLS versions below 1.2 are refused)", t.MinVersion)
		}
		for _, f := range []struct{ k, v string }{{"cert", t.Cert}, {"key", t.Key}, {"client_ca", t.ClientCA}, {"ca", t.CA}} {
			if f.v == "" {
				continue
			}
			if _, err := os.Stat(f.v); err != nil {
				bad(path+"."+f.k, "%v", err)
			}
		}
	}
	tlsPair("mllp.tls", c.MLLP.TLS, true)
	tlsPair("http.tls", c.HTTP.TLS, true)
	if m := c.Kafka.SASL.Mechanism; m != "" && m != "SCRAM-SHA-256" && m != "SCRAM-SHA-512" {
		bad("kafka.sasl.mechanism", "%q is not SCRAM-SHA-256 or SCRAM-SHA-512", m)
	}
	if c.Kafka.SASL.User != "" && c.Kafka.SASL.Password == "" {
		bad("kafka.sasl.password", "is required with kafka.sasl.user")
	}
	if c.Kafka.SASL.User == "" && (c.Kafka.SASL.Password != "" || c.Kafka.SASL.Mechanism != "") {
		bad("kafka.sasl.user", "is required with kafka.sasl.password or kafka.sasl.mechanism")
	}
	if len(c.Kafka.Brokers) == 0 && (c.Kafka.TLS.Enabled() || c.Kafka.SASL.User != "") {
		bad("kafka.tls/kafka.sasl", "apply to kafka.brokers, which is empty (the embedded broker speaks neither)")
	}
	if c.Kafka.TLS.ClientCA != "" {
		bad("kafka.tls.client_ca", "is for servers; a Kafka client verifies brokers with kafka.tls.ca")
	}
	tlsPair("kafka.tls", c.Kafka.TLS, false)
	c.validateSecurity(bad)
	for i, s := range c.MLLP.Senders {
		p := fmt.Sprintf("mllp.senders[%d]", i)
		if s.AckAddr != "" {
			addr(p+".ack_addr", s.AckAddr, false)
			if h, port, err := net.SplitHostPort(s.AckAddr); err == nil && (h == "" || port == "0") {
				bad(p+".ack_addr", "%q must name a host and a port to connect to", s.AckAddr)
			}
		}
		if s.AckTLS.Enabled() && s.AckAddr == "" {
			bad(p+".ack_tls", "applies to ack_addr, which is empty")
		}
		if s.AckTLS.ClientCA != "" {
			bad(p+".ack_tls.client_ca", "is for servers; hiegw verifies the sender's receiver with ack_tls.ca")
		}
		tlsPair(p+".ack_tls", s.AckTLS, false)
	}
	c.validateAckRoutes(bad, addr, tlsPair)
	for _, r := range []struct {
		name string
		d    Duration
	}{{"store.raw_retention", c.Store.RawRetention}, {"store.outbox_retention", c.Store.OutboxRetention}} {
		if r.d < 0 || r.d > 0 && r.d < Duration(time.Hour) {
			bad(r.name, "must be 0 (keep) or at least 1h, is %s", r.d)
		}
	}
	if s := strings.ToLower(c.Store.Sync); s != "full" && s != "normal" {
		bad("store.sync", "%q is not full or normal", c.Store.Sync)
	}
	if c.Pipeline.Lanes < 1 || c.Pipeline.Lanes > 256 {
		bad("pipeline.lanes", "must be 1 to 256, is %d", c.Pipeline.Lanes)
	}
	if t := time.Duration(c.Pipeline.LeaseTTL); t != 0 && (t < time.Second || t > 10*time.Minute) {
		bad("pipeline.lease_ttl", "must be 0s (off) or 1s to 10m, is %s", t)
	}
	if c.Kafka.MaxAttempts < 1 {
		bad("kafka.max_attempts", "must be at least 1")
	}
	if !slices.Contains([]string{"none", "gzip", "snappy", "lz4", "zstd"}, c.Kafka.Compression) {
		bad("kafka.compression", "%q is not none, gzip, snappy, lz4 or zstd", c.Kafka.Compression)
	}
	for i, a := range c.SFTP.Accounts {
		p := fmt.Sprintf("sftp.accounts[%d]", i)
		if a.Name == "" {
			bad(p+".name", "is required")
		}
		if a.AuthorizedKeys == "" && a.PasswordHash == "" {
			bad(p, "needs authorized_keys or password_hash")
		}
		if h := a.PasswordHash; h != "" && !strings.HasPrefix(h, "$2") && !strings.HasPrefix(h, "$argon2id$") {
			bad(p+".password_hash", "must be a bcrypt ($2…) or argon2id ($argon2id$…) hash, never a plain password")
		}
	}
	c.validateSFTPThrottle(bad)
	return errors.Join(errs...)
}

// maxSFTPAuthFailures bounds sftp.max_auth_failures (the listener keeps
// that many failure times per address).
const maxSFTPAuthFailures = 100

// validateSFTPThrottle checks the login throttling settings; the window and
// the lockout matter only while throttling is on.
func (c *Config) validateSFTPThrottle(bad func(path, format string, args ...any)) {
	n := c.SFTP.MaxAuthFailures
	if n < 0 || n > maxSFTPAuthFailures {
		bad("sftp.max_auth_failures", "must be 0 (no throttling) to %d, is %d", maxSFTPAuthFailures, n)
		return
	}
	if n == 0 {
		return
	}
	if c.SFTP.AuthFailureWindow < Duration(time.Second) {
		bad("sftp.auth_failure_window", "must be at least 1s while sftp.max_auth_failures is set, is %s", c.SFTP.AuthFailureWindow)
	}
	if c.SFTP.AuthLockout < Duration(time.Second) {
		bad("sftp.auth_lockout", "must be at least 1s while sftp.max_auth_failures is set, is %s", c.SFTP.AuthLockout)
	}
}

// validateAckRoutes checks mllp.ack_routes: each names one sender by the
// name its messages carry, no name twice nor a certificate sender's, and an
// address hiegw can connect to.
func (c *Config) validateAckRoutes(bad func(path, format string, args ...any), addr func(path, v string, optional bool),
	tlsPair func(path string, t TLS, server bool)) {
	if len(c.MLLP.AckRoutes) > 0 && len(c.MLLP.Senders) > 0 {
		bad("mllp.ack_routes", "unused while mllp.senders is set: every MLLP connection is then identified by its client "+
			"certificate, never by MSH-4/MSH-3; give each sender its mllp.senders[].ack_addr instead")
	}
	certNames := map[string]bool{}
	for _, s := range c.MLLP.Senders {
		certNames[s.Name] = true
	}
	seen := map[string]int{}
	for i, r := range c.MLLP.AckRoutes {
		p := fmt.Sprintf("mllp.ack_routes[%d]", i)
		switch f := r.Facility; {
		case strings.TrimSpace(f) == "":
			bad(p+".facility", "is required (the sender's MSH-4, else MSH-3)")
		case strings.TrimSpace(f) != f:
			bad(p+".facility", "%q has leading or trailing spaces, which no message's sender name has", f)
		case certNames[f]:
			bad(p+".facility", "%q is also the name of a sender in mllp.senders (set its ack_addr there)", f)
		default:
			if j, dup := seen[f]; dup {
				bad(p+".facility", "%q is given twice (also mllp.ack_routes[%d])", f, j)
			} else {
				seen[f] = i
			}
		}
		addr(p+".addr", r.Addr, false)
		if h, port, err := net.SplitHostPort(r.Addr); err == nil && (h == "" || port == "0") {
			bad(p+".addr", "%q must name a host and a port to connect to", r.Addr)
		}
		if r.TLS.ClientCA != "" {
			bad(p+".tls.client_ca", "is for servers; hiegw verifies the sender's receiver with tls.ca")
		}
		tlsPair(p+".tls", r.TLS, false)
	}
}

// Redacted returns a copy safe to print: secrets replaced.
func (c *Config) Redacted() Config {
	r := *c
	if r.Store.PostgresDSN != "" {
		r.Store.PostgresDSN = redactDSN(r.Store.PostgresDSN)
	}
	if r.Kafka.SASL.Password != "" {
		r.Kafka.SASL.Password = "REDACTED"
	}
	r.SFTP.Accounts = append([]SFTPAccount(nil), c.SFTP.Accounts...)
	for i := range r.SFTP.Accounts {
		if r.SFTP.Accounts[i].PasswordHash != "" {
			r.SFTP.Accounts[i].PasswordHash = "REDACTED"
		}
	}
	return r
}

func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.Index(dsn[i+3:], "@"); at >= 0 {
			cred := dsn[i+3 : i+3+at]
			if c := strings.Index(cred, ":"); c >= 0 {
				return dsn[:i+3] + cred[:c] + ":REDACTED" + dsn[i+3+at:]
			}
		}
		return dsn
	}
	var out []string
	for _, kv := range strings.Fields(dsn) {
		if strings.HasPrefix(kv, "password=") {
			kv = "password=REDACTED"
		}
		out = append(out, kv)
	}
	return strings.Join(out, " ")
}
