# cfs-export: build, test and demo. `make test` and `make demo` install what
# they need (Debian packages, as root) on a fresh machine.

CARGO ?= cargo
PREFIX ?= /usr/local

# Build deps (composefs/ocidir link OpenSSL) and the real tools the tests drive
# (cmake builds the zlib-ng C library of the e2e test identity's layer writer).
DEBIAN_PACKAGES := gcc pkg-config libssl-dev zlib1g-dev gzip \
	skopeo podman buildah runc uidmap fuse-overlayfs umoci docker-registry \
	apache2-utils openssl curl containerd cmake busybox-static pigz zstd time man-db tmux util-linux procps python3-minimal python3 golang-go \
	golang-github-klauspost-pgzip-dev golang-github-klauspost-compress-dev \
	debootstrap

.PHONY: all build test check demo bench install install-deps clean

all: build

install-deps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "error: run as root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

build: install-deps
	$(CARGO) build --release

# Unit tests, library-level tests and the end-to-end tests against real
# skopeo / podman / docker-registry (integration/): on the host's stack, then
# again on Debian trixie's (skopeo 1.18, podman 5.4; a root cached under
# /var/cache/cfs-export-tests, made on first use).
test: install-deps
	$(CARGO) build
	$(CARGO) test --workspace
	CARGO="$(CARGO)" scripts/e2e-trixie.sh

check: install-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build
	$(CARGO) test --workspace
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

demo: build
	./scripts/demo.sh

# Ratios against baselines measured in one run; writes bench/RESULTS.md.
# BENCH_SIZE_MIB (default 1100) and BENCH_REPEATS (default 3) scale it.
bench: install-deps
	$(CARGO) build --release --workspace --bins
	python3 bench/run.py

clean:
	$(CARGO) clean

# Binary, man pages and shell completions under $(PREFIX).
install: build
	install -D -m 0755 target/release/cfs-export $(DESTDIR)$(PREFIX)/bin/cfs-export
	target/release/cfs-export man --dir $(DESTDIR)$(PREFIX)/share/man/man1
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	target/release/cfs-export completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/cfs-export
	target/release/cfs-export completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_cfs-export
	target/release/cfs-export completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/cfs-export.fish
