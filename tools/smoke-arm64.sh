#!/usr/bin/env bash
# Smoke-tests an arm64 orch binary on this (x86_64) machine under qemu user emulation:
# `orch version`, then `orch server --disable-agent` on loopback until kubectl gets /readyz.
# Usage: tools/smoke-arm64.sh dist/orch-arm64
set -euo pipefail
bin="$1"
qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
file "$bin" 2>/dev/null | grep -q 'ARM aarch64' || { echo "smoke: $bin is not an arm64 binary" >&2; exit 1; }
"${qemu[@]}" "$bin" version

dir=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
"${qemu[@]}" "$bin" server --disable-agent --data-dir "$dir/data" --bind-address 127.0.0.1 \
    --https-listen-port "$port" > "$dir/server.log" 2>&1 &
pid=$!
start=$(date +%s)
# Emulation is slow: give the server a few minutes.
until [ -s "$dir/data/orch.yaml" ] && kubectl --kubeconfig "$dir/data/orch.yaml" get --raw /readyz 2>/dev/null | grep -qx ok; do
    if ! kill -0 "$pid" 2>/dev/null || [ $(( $(date +%s) - start )) -gt 300 ]; then
        echo "smoke: the arm64 server did not become ready" >&2
        tail -50 "$dir/server.log" >&2
        exit 1
    fi
    sleep 2
done
echo "smoke: arm64 orch server ready under qemu after $(( $(date +%s) - start )) s"
