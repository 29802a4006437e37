package route

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Message is one event to publish.
type Message struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers map[string]string
}

// KafkaOptions configure the producer.
type KafkaOptions struct {
	Brokers []string
	// TLS gives each new connection to a broker its TLS configuration
	// (the client certificate and CAs in force); nil: plain TCP.
	TLS func() *tls.Config
	// SASL SCRAM (SHA-512 when Mechanism is "SCRAM-SHA-512", else SHA-256).
	SASLUser, SASLPassword, SASLMechanism string
	// WriteTimeout bounds one publish.
	WriteTimeout time.Duration
	// Compression of the produced batches: "", "none", "gzip", "snappy",
	// "lz4" or "zstd". A FHIR Bundle shrinks 15 to 35 times, which also
	// keeps large ones under the brokers' message size limit (1 MB by
	// default): the Bundle of an ORU^R01 with 2,000 results is 2.5 MB.
	Compression string
}

// compressions are the codecs KafkaOptions.Compression names.
var compressions = map[string]kafka.Compression{"gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd}

// ErrTooLarge marks an event the brokers refuse for its size, which no
// retry can deliver.
var ErrTooLarge = errors.New("event larger than the brokers accept")

// Kafka publishes to Kafka brokers with acknowledgement from every in-sync
// replica, keyed (hash partitioned) by the message key.
type Kafka struct {
	w *kafka.Writer
}

// NewKafka makes a producer.
func NewKafka(o KafkaOptions) (*Kafka, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	tr := &kafka.Transport{DialTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	if o.TLS != nil {
		// The handshake is made here rather than by the transport (whose
		// tls.Config is fixed), so that each connection gets the
		// certificates in force.
		var d net.Dialer
		tr.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := o.TLS().Clone()
			if tc.ServerName == "" {
				if host, _, err := net.SplitHostPort(addr); err == nil {
					tc.ServerName = host
				}
			}
			conn := tls.Client(c, tc)
			if err := conn.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
			}
			return conn, nil
		}
	}
	if o.SASLUser != "" {
		alg := scram.SHA256
		if o.SASLMechanism == "SCRAM-SHA-512" {
			alg = scram.SHA512
		}
		m, err := scram.Mechanism(alg, o.SASLUser, o.SASLPassword)
		if err != nil {
			return nil, fmt.Errorf("kafka sasl: %w", err)
		}
		tr.SASL = m
	}
	wt := o.WriteTimeout
	if wt <= 0 {
		wt = 10 * time.Second
	}
	codec, ok := compressions[o.Compression]
	if !ok && o.Compression != "" && o.Compression != "none" {
		return nil, fmt.Errorf("kafka: unknown compression %q", o.Compression)
	}
	return &Kafka{w: &kafka.Writer{
		Compression:            codec,
		Addr:                   kafka.TCP(o.Brokers...),
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              1000,
		BatchBytes:             16 << 20,
		BatchTimeout:           2 * time.Millisecond,
		WriteTimeout:           wt,
		ReadTimeout:            wt,
		MaxAttempts:            1, // the relay retries with backoff itself
		AllowAutoTopicCreation: true,
		Transport:              tr,
	}}, nil
}

// Publish writes msgs and returns once every one is acknowledged, or an
// error when any was not (the relay then retries all of them).
func (k *Kafka) Publish(ctx context.Context, msgs []Message) error {
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km[i] = kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value}
		for hk, hv := range m.Headers {
			km[i].Headers = append(km[i].Headers, kafka.Header{Key: hk, Value: []byte(hv)})
		}
	}
	if err := k.w.WriteMessages(ctx, km...); err != nil {
		var we kafka.WriteErrors
		if errors.As(err, &we) && len(we) == len(msgs) {
			pe := &PartialError{Err: err}
			for i, e := range we {
				if e != nil {
					if tooLarge(e) {
						e = fmt.Errorf("%w (%d bytes): %w", ErrTooLarge, len(msgs[i].Value), e)
					}
					pe.Failed = append(pe.Failed, i)
					pe.Errs = append(pe.Errs, e)
					if pe.First == nil {
						pe.First = e
					}
				}
			}
			return pe
		}
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// PartialError says which messages of a Publish were not acknowledged; the
// others were.
type PartialError struct {
	Failed []int   // indexes into the published slice
	Errs   []error // the cause of each failure, as Failed (ErrTooLarge: never deliverable)
	First  error   // the first failure's cause
	Err    error
}

// tooLarge tells a refusal for size: the broker's (MESSAGE_TOO_LARGE) or the
// writer's own.
func tooLarge(err error) bool {
	var mt kafka.MessageTooLargeError
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.As(err, &mt)
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("kafka: %d messages not acknowledged: %v", len(e.Failed), e.First)
}

func (e *PartialError) Unwrap() error { return e.Err }

// Close flushes and closes the producer.
func (k *Kafka) Close() error { return k.w.Close() }
