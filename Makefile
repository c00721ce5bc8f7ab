# snapvm: see README.md. `make test` is all a fresh machine needs.
GO      ?= go
BIN     := bin
# Packages with goroutines of their own run their tests again under -race.
RACE_PKGS := ./qmp/... ./job/... ./hmp/... ./monitor/... ./internal/qmpclient/... ./block/... ./blockcmd/... ./memory/... ./vclock/... ./vmstate/... ./snapshot/... ./snapshotcmd/... ./machine/... ./devices/... ./riscv/...

.PHONY: all build setup test test-race vet run demo guests fuzz bench-img bench-cpu bench-snapshot bench-external clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

setup:
	./scripts/setup.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

test: setup vet
	$(GO) test -count=1 -timeout 20m ./...
	# The hart's interpreter on its own (translation off), against the same tests.
	SNAPVM_JIT=0 $(GO) test -count=1 -timeout 20m ./riscv/... ./tests/difftest/... ./tests/randinsn/...
	$(GO) test -count=1 -race -timeout 20m $$($(GO) list $(RACE_PKGS) 2>/dev/null)

# The demo: boot the bundled guest, take a snapshot and restore it.
run demo: build
	$(BIN)/snapvm

guests:
	$(MAKE) -C guests

# Long fuzzing runs (CI runs the seed corpora only, as part of go test).
FUZZTIME ?= 60s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench-img: build
	./scripts/bench-img.sh

bench-cpu: build
	./scripts/bench-cpu.sh

bench-snapshot: build
	./scripts/bench-snapshot.sh

bench-external: build
	./scripts/bench-external.sh

clean:
	rm -rf $(BIN)

# Random instruction sequences, QEMU against snapvm (tests/randinsn); go test compares 200.
RANDINSN_N ?= 5000
.PHONY: randinsn
randinsn:
	$(GO) test -count=1 -timeout 60m -run TestSnapvmMatchesQEMU ./tests/randinsn -randinsn.n=$(RANDINSN_N) $(RANDINSN_FLAGS)
