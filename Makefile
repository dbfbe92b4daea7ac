# orch — see README.md. `make run` starts a server; `make test` runs every test.

CARGO ?= cargo
RELEASE_BIN := target/release/orch
# Debian packages the tests, benchmarks and runtime need.
DEB_PACKAGES := protobuf-compiler containerd runc iproute2 nftables busybox-static docker-registry etcd-server curl ca-certificates
# What `make dist` needs besides: the arm64 cross linker and C library, and qemu to smoke-test.
DIST_PACKAGES := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static file
ARM64 := aarch64-unknown-linux-gnu


.PHONY: build run test bench bench-store bench-api bench-scheduler bench-pods bench-net bench-services bench-dns bench-failover deps dist-deps dist dist-arm64 dist-smoke clean

build:
	$(CARGO) build --release --bin orch

run: deps build
	$(RELEASE_BIN) server

test:
	$(CARGO) test --all-targets

bench: bench-store bench-api bench-scheduler bench-pods bench-net bench-services

bench-api:
	$(CARGO) build --release --bins
	target/release/orch-bench api

bench-store:
	$(CARGO) build --release --bins
	target/release/orch-bench store

# 1,000 hollow nodes, 300 Deployments x 100 replicas. A quick run:
# make bench-scheduler SCHEDULER_ARGS="--nodes 100 --deployments 30 --replicas 100"
bench-scheduler:
	$(CARGO) build --release --bins
	target/release/orch-bench scheduler $(SCHEDULER_ARGS)

# A real node (needs root, containerd, runc, busybox-static; its pod network lives in a network
# namespace of its own): pod start-up latency of 1 and of 50 pods at once, and orch's RSS idle
# and with 50 pods. A quicker run: make bench-pods PODS_ARGS="--settle 3 --singles 2"
bench-pods:
	$(CARGO) build --release --bins
	target/release/orch-bench pods $(PODS_ARGS)

# Two real nodes in network namespaces of their own (root; containerd, runc, busybox-static):
# pod-to-pod TCP throughput and latency over VXLAN and host-gw against the underlay.
bench-net:
	$(CARGO) build --release --bins
	target/release/orch-bench net $(NET_ARGS)

# Stripped release binaries for amd64 and arm64 (Raspberry Pi 3/4/5 with a 64-bit OS) in
# dist/, with sha256sum.txt.
dist: dist-arm64
	$(CARGO) build --release --bin orch
	cp target/release/orch dist/orch-amd64
	cd dist && sha256sum orch-amd64 orch-arm64 > sha256sum.txt
	ls -l dist

dist-arm64: dist-deps
	rustup target add $(ARM64)
	$(CARGO) build --release --bin orch --target $(ARM64)
	mkdir -p dist
	cp target/$(ARM64)/release/orch dist/orch-arm64

# The arm64 binary under qemu: `orch version`, then a server answering /readyz.
dist-smoke: dist-arm64
	tools/smoke-arm64.sh dist/orch-arm64

dist-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DIST_PACKAGES)"

# Services (root; containerd, runc, busybox-static): proxy rule programming for 1,000 and 5,000
# Services, ClusterIP round-trip overhead on two real nodes, and the cluster DNS (below).
bench-services:
	$(CARGO) build --release --bins
	target/release/orch-bench services

# Three servers and an agent; the leader is SIGKILLed 20 times: how soon writes through a
# survivor succeed again (p99) and the agent's heartbeat resumes.
bench-failover:
	ORCH_FAILOVER_KILLS=20 $(CARGO) test --test it agent_failover -- --nocapture

# The node-local cluster DNS server on loopback: queries/s and p50/p99 over UDP and TCP.
bench-dns:
	$(CARGO) build --release --bins
	target/release/orch-bench dns $(DNS_ARGS)

# Installs missing Debian packages (only as root; otherwise says what is missing) and the
# Python kubernetes client the integration tests drive the API with.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: missing$$missing (run 'sudo make deps')"; fi
	@python3 -c 'import kubernetes' 2>/dev/null && echo "deps: python kubernetes client present" || \
		python3 -m pip install -q kubernetes || python3 -m pip install -q --break-system-packages kubernetes

clean:
	$(CARGO) clean
