// Package broker runs the embedded broker: an in-process server that speaks
// the real Kafka protocol (github.com/twmb/franz-go/pkg/kfake), keeps its
// topics on disk, and serves any Kafka client. It is the single-machine
// default; production points hiegw at real Kafka brokers instead.
package broker

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Options configure the embedded broker.
type Options struct {
	Addr      string        // host:port to listen on
	DataDir   string        // where topics and offsets persist
	Retention time.Duration // how long records are kept (default 7 days)
	Topics    []string      // created at start
}

// Broker is a running embedded broker.
type Broker struct {
	c    *kfake.Cluster
	addr string
}

// Start starts the broker.
func Start(o Options) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker address %q: %w", o.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("broker address %q: port: %w", o.Addr, err)
	}
	ret := o.Retention
	if ret <= 0 {
		ret = 7 * 24 * time.Hour
	}
	var bound string
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake listens on 127.0.0.1; bind where the operator asked instead.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, net.JoinHostPort(host, portStr))
			if err == nil {
				bound = ln.Addr().String()
			}
			return ln, err
		}),
		kfake.DataDir(o.DataDir),
		kfake.SyncWrites(),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(4),
		kfake.BrokerConfigs(map[string]string{"log.retention.ms": strconv.FormatInt(ret.Milliseconds(), 10)}),
		kfake.ClusterID("hiegw-embedded"),
	}
	if len(o.Topics) > 0 {
		opts = append(opts, kfake.SeedTopics(4, o.Topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", o.Addr, err)
	}
	if bound == "" {
		if addrs := c.ListenAddrs(); len(addrs) > 0 {
			bound = addrs[0]
		}
	}
	return &Broker{c: c, addr: bound}, nil
}

// Addr is the address clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and flushes its data to disk.
func (b *Broker) Close() { b.c.Close() }
