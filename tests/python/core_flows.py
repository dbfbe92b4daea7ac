"""Core API flows through the official Python `kubernetes` client, against an orch server.

Usage: python3 core_flows.py KUBECONFIG  (exits non-zero with a message on the first failure)
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def expect_status(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"expected HTTP {code}, got {e.status}: {e.body}"
        return e
    raise AssertionError(f"expected HTTP {code}, the call succeeded")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system"} <= names, names

    ns = "py"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings", labels={"app": "py"}), data={"mode": "fast"})
    created = core.create_namespaced_config_map(ns, cm)
    assert created.metadata.uid and created.metadata.resource_version.isdigit()

    got = core.read_namespaced_config_map("settings", ns)
    assert got.data == {"mode": "fast"}, got.data

    core.patch_namespaced_config_map("settings", ns, {"data": {"extra": "1"}})
    assert core.read_namespaced_config_map("settings", ns).data == {"mode": "fast", "extra": "1"}

    stale = got
    stale.data = {"mode": "slow"}
    expect_status(409, core.replace_namespaced_config_map, "settings", ns, stale)

    listed = core.list_namespaced_config_map(ns, label_selector="app=py")
    assert [c.metadata.name for c in listed.items] == ["settings"]

    bad = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_Valid"))
    e = expect_status(422, core.create_namespaced_config_map, ns, bad)
    assert "metadata.name" in e.body

    # Watch: events arrive in order while another thread writes.
    rv = core.list_namespaced_config_map(ns).metadata.resource_version

    def writer():
        time.sleep(0.5)
        for i in range(3):
            core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"w{i}")))

    threading.Thread(target=writer).start()
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2")], seen

    core.delete_namespaced_config_map("settings", ns)
    expect_status(404, core.read_namespaced_config_map, "settings", ns)
    print("python client flows: ok")


if __name__ == "__main__":
    main(sys.argv[1])
