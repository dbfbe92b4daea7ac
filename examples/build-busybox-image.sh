#!/bin/sh
# Builds the image the examples use, docker.io/library/busybox:1.35, from the machine's static
# busybox (Debian/Ubuntu: apt-get install busybox-static) — no registry, no docker needed.
# Writes an OCI image layout tarball (one layer: /bin/busybox plus a symlink per applet).
#
#   examples/build-busybox-image.sh [OUT.tar]     (default: busybox.tar)
#
# Then either drop it into the node's airgap dir, which orch imports at start and whenever a
# tarball appears:   cp busybox.tar /var/lib/orch/agent/images/
# or import it into a running node:   orch images import busybox.tar
set -eu
out=${1:-busybox.tar}
name=${IMAGE:-docker.io/library/busybox:1.35}
busybox=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] || { echo "busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
	echo "$busybox is dynamically linked; use a static one (apt-get install busybox-static)" >&2
	exit 1
fi
case $(uname -m) in
	x86_64) arch=amd64 ;;
	aarch64) arch=arm64 ;;
	armv7l | armv6l) arch=arm ;;
	*) arch=$(uname -m) ;;
esac
# Written under a temporary name and renamed, so an airgap watcher never sees half a tarball.
tmp="$out.partial"
trap 'rm -f "$tmp"' EXIT
python3 - "$busybox" "$tmp" "$name" "$arch" <<'PY'
import hashlib, io, json, subprocess, sys, tarfile

busybox, out, name, arch = sys.argv[1:]

def add(tar, path, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.linkname = kind, mode, link
    info.size = len(data) if data is not None else 0
    tar.addfile(info, io.BytesIO(data) if data is not None else None)

layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("root", 0o700),
                    ("sys", 0o555), ("tmp", 0o1777), ("var", 0o755), ("var/www", 0o755)]:
        add(t, d, mode=mode, kind=tarfile.DIRTYPE)
    add(t, "bin/busybox", open(busybox, "rb").read(), 0o755)
    add(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    add(t, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        add(t, "bin/" + applet, mode=0o777, kind=tarfile.SYMTYPE, link="busybox")
layer = layer.getvalue()

def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

config = json.dumps({
    "architecture": arch, "os": "linux",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
}).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": len(layer)}],
}).encode()
index = json.dumps({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
}]}).encode()

with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as t:
    add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add(t, "index.json", index)
    for blob in (layer, config, manifest):
        add(t, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
PY
mv "$tmp" "$out"
echo "$out: $name ($arch)"
