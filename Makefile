# orch — see README.md. `make run` starts a server; `make test` runs every test.

CARGO ?= cargo
RELEASE_BIN := target/release/orch
# Debian packages the tests, benchmarks and runtime need.
DEB_PACKAGES := protobuf-compiler containerd runc iproute2 nftables busybox-static docker-registry etcd-server curl ca-certificates

.PHONY: build run test bench bench-store bench-api bench-scheduler bench-pods bench-net bench-dns deps clean

build:
	$(CARGO) build --release --bin orch

run: deps build
	$(RELEASE_BIN) server

test:
	$(CARGO) test --all-targets

bench: bench-store bench-api bench-scheduler bench-pods bench-net bench-dns

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
