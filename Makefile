# The targets CI runs are exactly these: .ci/run calls `make test` and `make interop`.
GO      ?= go
BIN     := bin/hiegw
PG_DSN  ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run build test test-postgres interop fuzz bench load vet fmt clean

run: ## run the gateway on its embedded defaults (127.0.0.1; data in ./data)
	$(GO) run -ldflags '$(LDFLAGS)' ./cmd/hiegw serve

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hiegw

vet:
	$(GO) vet ./...

test: vet ## every test that needs nothing installed (PostgreSQL tests too when HIEGW_TEST_POSTGRES_DSN is set)
	$(GO) test ./...
	$(GO) run ./cmd/hiegw mappings check mappings
	$(GO) run ./cmd/hiegw mappings test --dir mappings mappings/default/tests

test-postgres: ## the same tests with the local PostgreSQL
	HIEGW_TEST_POSTGRES_DSN='$(PG_DSN)' $(GO) test ./...

interop: build ## real clients nobody here wrote: python3-hl7 mllp_send, kcat, OpenSSH sftp, promtool, Chromium
	bash .ci/interop $(BIN)
	bash .ci/browser/run.sh $(BIN)

fuzz: ## a short fuzz run of every parser and file loader (FUZZTIME=10m for a long one; FUZZMIN=3s bounds the minimising of each new input, 60s in Go)
	$(GO) test ./internal/mllp -run '^$$' -fuzz FuzzReadFrame -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/hl7 -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/ccda -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/hl7 -run '^$$' -fuzz '^FuzzUnescape$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/hl7 -run '^$$' -fuzz '^FuzzSplitBatch$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/route -run '^$$' -fuzz '^FuzzAddEnterpriseID$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/journal -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/store -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/intake -run '^$$' -fuzz '^FuzzAccept$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/mapping -run '^$$' -fuzz '^FuzzMapHL7$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/mapping -run '^$$' -fuzz '^FuzzMapCCDA$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/mapping -run '^$$' -fuzz '^FuzzIndexesHL7$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/mapping -run '^$$' -fuzz '^FuzzIndexesCCDA$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/mapping -run '^$$' -fuzz '^FuzzCompileSet$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/route -run '^$$' -fuzz '^FuzzParseSubscriptions$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzConfigFile$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/sftpd -run '^$$' -fuzz '^FuzzSFTPSession$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}
	$(GO) test ./internal/gateway -run '^$$' -fuzz '^FuzzAPI$$' -fuzztime $${FUZZTIME:-30s} -fuzzminimizetime $${FUZZMIN:-3s}

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/hl7 ./internal/mapping ./internal/ccda ./internal/mpi ./internal/store ./internal/route ./internal/pipeline

load: build ## the README's gateway figures: LOAD="-n 20000 -c 8" (add -p or -r for receipt alone; see deployments/load.sh)
	bash deployments/load.sh $${LOAD:--n 20000 -c 8}

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin data
