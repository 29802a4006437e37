//go:build tools

// This file pins modules that packages still being written will import, so
// that go.mod and go.sum stay complete while work proceeds in parallel. It is
// never compiled into the binary.
package main

import (
	_ "github.com/adrg/strutil"
	_ "github.com/beevik/etree"
	_ "github.com/expr-lang/expr"
	_ "github.com/google/uuid"
	_ "github.com/jmoiron/sqlx"
	_ "github.com/lenaten/hl7"
	_ "github.com/lib/pq"
	_ "github.com/pkg/sftp"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/segmentio/kafka-go"
	_ "github.com/twmb/franz-go/pkg/kfake"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/text/encoding/charmap"
	_ "golang.org/x/text/unicode/norm"
	_ "modernc.org/sqlite"
)
