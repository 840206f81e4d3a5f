# Tandem — see README.md. Targets that build namespaces (test, demo) need root.
CARGO ?= cargo

.PHONY: run test unit lint bench fuzz clean

## run: a standalone box on loopback with two throwaway backends (Ctrl-C stops it)
run:
	scripts/run-standalone.sh

## test: every test, units and lab (namespaces, real daemons); needs root
test:
	$(CARGO) build --workspace --bins
	@if command -v cargo-nextest >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## unit: the unit tests only (no root needed)
unit:
	$(CARGO) test --workspace --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: the benchmarks of bench/ (long; prints the figures for docs/performance.md)
bench:
	bench/proxy.sh

## fuzz: each fuzz target for a bounded time (needs cargo-fuzz)
fuzz:
	scripts/fuzz.sh

clean:
	$(CARGO) clean
	rm -rf build
