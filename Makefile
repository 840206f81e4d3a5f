# Tandem — see README.md. Targets that build namespaces (test, demo) need root.
CARGO ?= cargo

.PHONY: run demo test unit lint bench fuzz clean image vm-pair vm-test

## run: a standalone box on loopback with two throwaway backends (Ctrl-C stops it)
run:
	scripts/run-standalone.sh

## demo: a Tandem pair in network namespaces with a client and two web servers; needs root
demo:
	scripts/demo.sh

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

## image: build/tandem.img, the appliance's disk image (Debian's packages + static binaries); root
image:
	image/build.sh

## vm-pair: boot two images under QEMU on a bridge in a namespace, with a client namespace; root
vm-pair: image
	scripts/vm-lab.py pair

## vm-test: boot an image, answer the wizard, serve a client, apply broken and good updates; root
vm-test: image
	scripts/vm-lab.py test

clean:
	$(CARGO) clean
	rm -rf build
