"""Exec and port-forward through the official Python `kubernetes` client (`kubernetes.stream`,
WebSocket `v4.channel.k8s.io`), against the `streams` pod of the kubelet streaming test: a
`web` container with httpd on port 8080.

Usage: python3 streams.py KUBECONFIG  (exits non-zero with a message on the first failure)
"""
import sys

from kubernetes import client, config
from kubernetes.stream import portforward, stream


def step(what):
    print(f"step: {what}", file=sys.stderr, flush=True)


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    step("exec")
    out = stream(core.connect_get_namespaced_pod_exec, "streams", "default", container="web",
                 command=["sh", "-c", "echo from-python"], stdout=True, stderr=True, stdin=False, tty=False)
    assert out == "from-python\n", repr(out)

    step("exec with stdin and an exit code")
    resp = stream(core.connect_get_namespaced_pod_exec, "streams", "default", container="web",
                  command=["sh", "-c", "read x; echo got-$x; echo oops >&2; exit 4"],
                  stdout=True, stderr=True, stdin=True, tty=False, _preload_content=False)
    resp.write_stdin("line\n")
    resp.run_forever(timeout=20)
    assert resp.read_stdout() == "got-line\n"
    assert resp.read_stderr() == "oops\n"
    assert resp.returncode == 4, resp.returncode
    resp.close()

    step("port-forward")
    pf = portforward(core.connect_get_namespaced_pod_portforward, "streams", "default", ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
    body = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    sock.close()
    assert b"hello-through-port-forward" in body, body
    assert pf.error(8080) is None, pf.error(8080)
    print("python streams: ok")


if __name__ == "__main__":
    main(sys.argv[1])
