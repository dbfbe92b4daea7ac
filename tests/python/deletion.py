"""Deletion and defaulting as the official Python `kubernetes` client expects them: typed objects
back from deletes of resources that return them, Status Success from the others, delete_collection
with label and field selectors and dry run, and the status a new Service comes back with.

Usage: python3 deletion.py KUBECONFIG  (exits non-zero with a message on the first failure)
"""
import sys

from kubernetes import client, config


def names(items, prefix):
    return sorted(i.metadata.name for i in items if i.metadata.name.startswith(prefix))


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    ns = "deletion"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

    # A new Service has kube's initial status; deleting it returns the Service.
    spec = client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)], selector={"app": "web"})
    svc = core.create_namespaced_service(ns, client.V1Service(metadata=client.V1ObjectMeta(name="web"), spec=spec))
    assert svc.status is not None and svc.status.load_balancer is not None, svc.status
    deleted = core.delete_namespaced_service("web", ns)
    assert isinstance(deleted, client.V1Service), type(deleted)
    assert deleted.metadata.name == "web" and deleted.spec.ports[0].port == 80, deleted

    # A ConfigMap's delete answers Status Success with details.
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="one")))
    status = core.delete_namespaced_config_map("one", ns)  # typed `object`: the JSON as a dict
    assert status["kind"] == "Status" and status["status"] == "Success", status
    assert status["details"]["name"] == "one" and status["details"]["kind"] == "configmaps", status

    # delete_collection with a label selector, then a field selector; dry run deletes nothing.
    for name, app in [("c0", "a"), ("c1", "a"), ("c2", "b"), ("c3", "b")]:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"app": app})))
    core.delete_collection_namespaced_config_map(ns, label_selector="app=a")
    assert names(core.list_namespaced_config_map(ns).items, "c") == ["c2", "c3"]
    core.delete_collection_namespaced_config_map(ns, field_selector="metadata.name=c2")
    assert names(core.list_namespaced_config_map(ns).items, "c") == ["c3"]
    core.delete_collection_namespaced_config_map(ns, dry_run="All")
    assert names(core.list_namespaced_config_map(ns).items, "c") == ["c3"]
    core.delete_collection_namespaced_config_map(ns, grace_period_seconds=0, propagation_policy="Background")
    assert names(core.list_namespaced_config_map(ns).items, "c") == []

    # A pod held by a finalizer: the delete returns the terminating pod.
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="held", finalizers=["example.com/hold"]),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    core.create_namespaced_pod(ns, pod)
    terminating = core.delete_namespaced_pod("held", ns)
    assert isinstance(terminating, client.V1Pod) and terminating.metadata.deletion_timestamp is not None, terminating
    core.patch_namespaced_pod("held", ns, {"metadata": {"finalizers": None}})

    # Namespaces return themselves, terminating (the client has no delete_collection_namespace:
    # kube serves none).
    gone = core.delete_namespace(ns)
    assert gone["kind"] == "Namespace" and gone["status"]["phase"] == "Terminating", gone
    print("python deletion flows: ok")


if __name__ == "__main__":
    main(sys.argv[1])
