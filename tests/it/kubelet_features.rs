//! Kubelet features on a real node (root only; the node is the one of `kubelet`): a failing
//! liveness probe restarts its container; a readiness probe gates the pod's Ready condition and
//! the Service's Endpoints; configMap, secret, downwardAPI and ServiceAccount-token volumes and
//! env from a ConfigMap hold the right content; a memory hog is OOMKilled; a missing image ends
//! in ErrImagePull / ImagePullBackOff; a big container log is rotated by size; an emptyDir of medium Memory is a tmpfs of its sizeLimit,
//! unmounted when the pod goes (also when it went while the agent was down); a bound claim is
//! its PersistentVolume's hostPath, a missing one a FailedMount; a configMap volume follows
//! changes to its object; a subPath never follows a symlink the pod planted out of its volume;
//! containers get the Service environment variables (the namespace's only with service links).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Endpoints, Event, Pod};
use kube::Api;

use crate::kubelet::{phase, pod_where, start_real_node};
use crate::support::{kubectl, skip_without_containers, wait_for, ServerProc};

const OBJECTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: liveness
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; exec sleep 3600"]
    livenessProbe:
      exec:
        command: ["cat", "/tmp/alive"]
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: ready
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: files
  labels:
    tier: files
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef:
          name: settings
          key: greeting
    envFrom:
    - prefix: CM_
      configMapRef:
        name: settings
    volumeMounts:
    - name: cfg
      mountPath: /etc/cfg
    - name: cfg
      mountPath: /etc/greeting
      subPath: greeting
    - name: sec
      mountPath: /etc/sec
    - name: info
      mountPath: /etc/info
  volumes:
  - name: cfg
    configMap:
      name: settings
  - name: sec
    secret:
      secretName: creds
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef:
          fieldPath: metadata.labels
      - path: name
        fieldRef:
          fieldPath: metadata.name
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]
    resources:
      limits:
        memory: 24Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do printf 'line %04d %s\n' $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: noimage
spec:
  containers:
  - name: main
    image: 127.0.0.1:1/missing:v1
"#;

fn first_status(p: &Pod) -> Option<ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first().cloned()
}

fn condition(p: &Pod, kind: &str) -> Option<String> {
    let conditions = p.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

/// Waits for a Warning event `reason` about pod `pod` whose message contains `text`.
async fn warning_event(client: &kube::Client, pod: &str, reason: &str, text: &str) {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(Duration::from_secs(30), &format!("a {reason} event about {pod} saying {text:?}"), || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some(pod)
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")
                    && e.message.as_deref().is_some_and(|m| m.contains(text))
            })
            .then_some(())
    })
    .await;
}

/// Runs `cmd` in pod `pod` with kubectl exec, returning its stdout (panics on failure).
async fn exec(server: &ServerProc, home: &Path, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    let (ok, out, err) = kubectl(server, home, &args, None).await;
    assert!(ok, "kubectl exec {pod} -- {cmd:?} failed: {out}{err}");
    out
}

/// The (ready, not ready) addresses of Endpoints `name`.
async fn endpoint_ips(endpoints: &Api<Endpoints>, name: &str) -> (Vec<String>, Vec<String>) {
    let Ok(ep) = endpoints.get(name).await else { return Default::default() };
    let subsets = ep.subsets.unwrap_or_default();
    let ips = |f: fn(&k8s_openapi::api::core::v1::EndpointSubset) -> Option<&Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        subsets.iter().flat_map(|s| f(s).into_iter().flatten()).map(|a| a.ip.clone()).collect::<Vec<_>>()
    };
    (ips(|s| s.addresses.as_ref()), ips(|s| s.not_ready_addresses.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_volumes_env_and_failures_on_a_real_node() {
    if skip_without_containers("kubelet feature tests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, node, _) = start_real_node(dir.path(), &["--container-log-max-size=16Ki", "--container-log-max-files=2"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The ServiceAccount admission needs the default ServiceAccount to exist.
    wait_for_default_service_account(&server, &home).await;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(OBJECTS)).await;
    assert!(ok, "kubectl apply failed: {out}{err}");

    // A failing liveness probe restarts the container.
    let restarted =
        pod_where(&pods, "liveness", "a restart by the liveness probe", &node, |p| first_status(p).is_some_and(|s| s.restart_count >= 1))
            .await;
    let last = first_status(&restarted).unwrap().last_state.and_then(|s| s.terminated);
    assert!(last.is_some(), "the killed run is the last state: {:?}", restarted.status);
    warning_event(&client, "liveness", "Unhealthy", "Liveness probe failed").await;

    // Readiness gates the Ready condition and the Service's endpoints.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let running = pod_where(&pods, "ready", "Running and not Ready", &node, |p| {
        phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("False")
    })
    .await;
    let ip = running.status.unwrap().pod_ip.unwrap();
    wait_for(Duration::from_secs(30), "the unready pod in the Endpoints' notReadyAddresses", || async {
        let (ready, not_ready) = endpoint_ips(&endpoints, "web").await;
        (ready.is_empty() && not_ready == [ip.clone()]).then_some(())
    })
    .await;
    exec(&server, &home, "ready", &["touch", "/tmp/ready"]).await;
    pod_where(&pods, "ready", "Ready", &node, |p| condition(p, "Ready").as_deref() == Some("True")).await;
    wait_for(Duration::from_secs(30), "the ready pod in the Endpoints' addresses", || async {
        let (ready, not_ready) = endpoint_ips(&endpoints, "web").await;
        (ready == [ip.clone()] && not_ready.is_empty()).then_some(())
    })
    .await;

    // File volumes and env from a ConfigMap.
    pod_where(&pods, "files", "Running", &node, |p| phase(p) == "Running").await;
    assert_eq!(exec(&server, &home, "files", &["cat", "/etc/cfg/greeting", "/etc/cfg/color"]).await, "helloblue");
    assert_eq!(exec(&server, &home, "files", &["cat", "/etc/greeting"]).await, "hello", "a subPath of a file volume");
    assert_eq!(exec(&server, &home, "files", &["cat", "/etc/sec/password"]).await, "s3cret");
    assert_eq!(exec(&server, &home, "files", &["cat", "/etc/info/name"]).await, "files");
    assert_eq!(exec(&server, &home, "files", &["cat", "/etc/info/labels"]).await, "tier=\"files\"");
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(exec(&server, &home, "files", &["cat", &format!("{sa}/namespace")]).await, "default");
    let token = exec(&server, &home, "files", &["cat", &format!("{sa}/token")]).await;
    assert!(token.starts_with("eyJ") && token.split('.').count() == 3, "a JWT: {token}");
    let ca = exec(&server, &home, "files", &["cat", &format!("{sa}/ca.crt")]).await;
    assert!(ca.contains("BEGIN CERTIFICATE"), "the cluster CA: {ca}");
    let env = exec(&server, &home, "files", &["sh", "-c", "echo $GREETING $CM_greeting $CM_color"]).await;
    assert_eq!(env.trim(), "hello hello blue");

    // A memory hog is OOMKilled.
    let hog = pod_where(&pods, "hog", "Failed", &node, |p| phase(p) == "Failed").await;
    let terminated = first_status(&hog).and_then(|s| s.state?.terminated).expect("the hog terminated");
    assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"), "{terminated:?}");

    // A missing image is an image pull error with a message.
    let missing = pod_where(&pods, "noimage", "ErrImagePull or ImagePullBackOff", &node, |p| {
        let waiting = first_status(p).and_then(|s| s.state?.waiting);
        waiting.is_some_and(|w| matches!(w.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff")))
    })
    .await;
    let waiting = first_status(&missing).and_then(|s| s.state?.waiting).unwrap();
    assert!(waiting.message.is_some_and(|m| !m.is_empty()), "the pull error is told");
    assert_eq!(phase(&missing), "Pending");
    warning_event(&client, "noimage", "Failed", "Failed to pull image \"127.0.0.1:1/missing:v1\"").await;

    // A big log is rotated by size: kubectl logs reads the current file, one older one is kept.
    let chatty = pod_where(&pods, "chatty", "Succeeded", &node, |p| phase(p) == "Succeeded").await;
    let (ok, out, err) = kubectl(&server, &home, &["logs", "chatty"], None).await;
    assert!(ok, "{err}");
    assert!(out.trim_end().lines().last().is_some_and(|l| l.starts_with("line 0999")), "the newest records: {out}");
    assert!(!out.starts_with("line 0000") && out.len() < 16 * 1024, "only the current file: {} bytes", out.len());
    let uid = chatty.metadata.uid.unwrap();
    let logs = node.data_dir().join(format!("agent/logs/default_chatty_{uid}/main"));
    let mut files: Vec<String> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert!(files.len() == 2 && files[0] == "0.log" && files[1].starts_with("0.log.20"), "0.log and one rotated file: {files:?}");

    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "--all", "--grace-period=1", "--wait=false"], None).await;
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(30), "every pod to be gone", || async {
        pods.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
}

/// Whether anything is mounted at a path containing `part` (this test runs in the node's mount
/// namespace).
fn mounted(part: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4).is_some_and(|p| p.contains(part)))
}

fn volume_objects(pv_dir: &Path) -> String {
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    \
             image: busybox\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n    volumeMounts:\n    - name: cache\n      \
             mountPath: /cache\n    - name: data\n      mountPath: /data\n    - name: live\n      mountPath: /etc/live\n  volumes:\n  \
             - name: cache\n    emptyDir:\n      medium: Memory\n      sizeLimit: 1Mi\n  - name: data\n    persistentVolumeClaim:\n      \
             claimName: data\n  - name: live\n    configMap:\n      name: live\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: host-pv\nspec:\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n  \
         hostPath:\n    path: {}\n    type: DirectoryOrCreate\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  \
         volumeName: host-pv\n  storageClassName: \"\"\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: live\ndata:\n  value: one\n---\n{}---\n{}---\n\
         apiVersion: v1\nkind: Pod\nmetadata:\n  name: unclaimed\nspec:\n  nodeName: kubelet-test\n  containers:\n  - name: main\n    image: busybox\n    \
         imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  \
         - name: data\n    persistentVolumeClaim:\n      claimName: missing\n",
        pv_dir.display(),
        pod("mem"),
        pod("orphan"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_volumes_claims_and_refreshed_files_on_a_real_node() {
    if skip_without_containers("kubelet volume tests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, mut node, _) = start_real_node(dir.path(), &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pv_dir = dir.path().join("pv");
    wait_for_default_service_account(&server, &home).await;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(&volume_objects(&pv_dir))).await;
    assert!(ok, "kubectl apply failed: {out}{err}");

    // A configMap volume follows its object (checked at the end: the kubelet syncs each minute).
    let mem = pod_where(&pods, "mem", "Running", &node, |p| phase(p) == "Running").await;
    assert_eq!(exec(&server, &home, "mem", &["cat", "/etc/live/value"]).await, "one");
    let (ok, _, err) = kubectl(&server, &home, &["patch", "configmap", "live", "-p", r#"{"data":{"value":"two"}}"#], None).await;
    assert!(ok, "{err}");

    // emptyDir medium Memory is a tmpfs of sizeLimit.
    let mounts = exec(&server, &home, "mem", &["grep", " /cache ", "/proc/mounts"]).await;
    assert!(mounts.starts_with("tmpfs") && mounts.contains("size=1024k"), "a 1Mi tmpfs: {mounts}");
    let (ok, _, _) = kubectl(&server, &home, &["exec", "mem", "--", "dd", "if=/dev/zero", "of=/cache/big", "bs=1M", "count=2"], None).await;
    assert!(!ok, "writing past the sizeLimit fails");
    let mem_uid = mem.metadata.uid.clone().unwrap();
    assert!(mounted(&mem_uid), "the tmpfs is mounted on the node");

    // A bound claim is its PersistentVolume's hostPath.
    exec(&server, &home, "mem", &["sh", "-c", "echo kept > /data/file"]).await;
    assert_eq!(std::fs::read_to_string(pv_dir.join("file")).unwrap(), "kept\n");

    // A pod whose claim does not exist waits and says why (given its node: the scheduler would
    // not place it, see `local_storage`).
    pod_where(&pods, "unclaimed", "FailedMount for the missing claim", &node, |p| {
        let s = p.status.as_ref();
        s.and_then(|s| s.reason.as_deref()) == Some("FailedMount")
            && s.and_then(|s| s.message.as_deref()).is_some_and(|m| m.contains("persistentvolumeclaim \"missing\" not found"))
            && phase(p) == "Pending"
    })
    .await;
    warning_event(&client, "unclaimed", "FailedMount", "persistentvolumeclaim \"missing\" not found").await;

    // The configMap update reaches the running pod's volume (by the periodic sync, not a restart).
    wait_for(Duration::from_secs(90), "the configMap volume to follow the update", || async {
        let (ok, out, _) = kubectl(&server, &home, &["exec", "mem", "--", "cat", "/etc/live/value"], None).await;
        (ok && out == "two").then_some(())
    })
    .await;

    // The agent's cleanup of a pod deleted while it was down unmounts its tmpfs.
    let orphan = pod_where(&pods, "orphan", "Running", &node, |p| phase(p) == "Running").await;
    let orphan_uid = orphan.metadata.uid.clone().unwrap();
    assert!(mounted(&orphan_uid));
    node.agent().terminate(Duration::from_secs(30));
    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "orphan", "--force", "--grace-period=0"], None).await;
    assert!(ok, "{err}");
    node.agent().restart();
    wait_for(Duration::from_secs(60), "the orphaned pod's tmpfs to be unmounted", || async { (!mounted(&orphan_uid)).then_some(()) }).await;

    // Deleting a pod unmounts its tmpfs.
    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "--all", "--grace-period=1", "--wait=false"], None).await;
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(30), "the deleted pod's tmpfs to be unmounted", || async { (!mounted(&mem_uid)).then_some(()) }).await;
    wait_for(Duration::from_secs(30), "every pod to be gone", || async {
        pods.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
}

const PLANTED: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: planted
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: plant
    image: busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "ln -s / /shared/escape && ln -s ../../../.. /shared/up && mkdir -p /shared/ok && printf mine > /shared/ok/f"]
    volumeMounts:
    - name: shared
      mountPath: /shared
  containers:
  - name: fine
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - name: shared
      mountPath: /mnt
      subPath: ok
  - name: victim
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - name: shared
      mountPath: /host
      subPath: escape
  - name: climber
    image: busybox
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - name: shared
      mountPath: /host
      subPathExpr: $(DIR)
    env:
    - name: DIR
      value: up
  volumes:
  - name: shared
    emptyDir: {}
"#;

/// CVE-2017-1002101: a container plants symlinks in its emptyDir; containers mounting them as
/// subPath must not get the host's root.
#[tokio::test]
async fn sub_paths_do_not_follow_planted_symlinks_on_a_real_node() {
    if skip_without_containers("kubelet subPath test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, node, _) = start_real_node(dir.path(), &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for_default_service_account(&server, &home).await;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(PLANTED)).await;
    assert!(ok, "kubectl apply failed: {out}{err}");
    let refused = |p: &Pod, container: &str, sub_path: &str| {
        let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
        let waiting = statuses.iter().find(|s| s.name == container).and_then(|s| s.state.clone()?.waiting);
        waiting.is_some_and(|w| {
            w.reason.as_deref() == Some("CreateContainerConfigError")
                && w.message.as_deref().is_some_and(|m| m.contains(&format!("subPath {sub_path:?}")))
        })
    };
    pod_where(&pods, "planted", "the planted links refused as subPaths", &node, |p| {
        refused(p, "victim", "escape") && refused(p, "climber", "up")
    })
    .await;
    let (ok, out, err) = kubectl(&server, &home, &["exec", "planted", "-c", "fine", "--", "cat", "/mnt/f"], None).await;
    assert!(ok && out == "mine", "a subPath inside the volume works: {out}{err}");
    let (ok, _, err) = kubectl(&server, &home, &["delete", "pod", "planted", "--grace-period=1"], None).await;
    assert!(ok, "{err}");
}

/// Waits until the default ServiceAccount exists (the ServiceAccount admission needs it).
pub(crate) async fn wait_for_default_service_account(server: &crate::support::ServerProc, home: &std::path::Path) {
    wait_for(Duration::from_secs(30), "the default ServiceAccount", || async {
        let (ok, _, _) = kubectl(server, home, &["get", "serviceaccount", "default"], None).await;
        ok.then_some(())
    })
    .await;
}

const SERVICE_ENV: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: my-web
spec:
  clusterIP: 10.43.100.100
  ports:
  - name: http
    port: 80
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: v1
kind: Pod
metadata:
  name: linked
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["env"]
    env:
    - name: API
      value: $(KUBERNETES_SERVICE_HOST):$(MY_WEB_SERVICE_PORT_HTTP)
    - name: MY_WEB_PORT
      value: mine
---
apiVersion: v1
kind: Pod
metadata:
  name: unlinked
spec:
  restartPolicy: Never
  enableServiceLinks: false
  containers:
  - name: main
    image: busybox
    imagePullPolicy: Never
    command: ["env"]
"#;

/// Every container gets the `kubernetes` Service's variables; with service links (the default)
/// also those of its namespace's Services, which `$(VAR)` can use and explicit env overrides.
#[tokio::test]
async fn service_environment_variables_on_a_real_node() {
    if skip_without_containers("kubelet service env test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (server, client, node, _) = start_real_node(dir.path(), &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for_default_service_account(&server, &home).await;
    let (ok, out, err) = kubectl(&server, &home, &["apply", "-f", "-"], Some(SERVICE_ENV)).await;
    assert!(ok, "kubectl apply failed: {out}{err}");
    let env_of = |pod: &'static str| {
        let (server, home, pods, node) = (&server, &home, &pods, &node);
        async move {
            pod_where(pods, pod, "Succeeded", node, |p| phase(p) == "Succeeded").await;
            let (ok, out, err) = kubectl(server, home, &["logs", pod], None).await;
            assert!(ok, "kubectl logs {pod}: {err}");
            out.lines().map(str::to_string).collect::<std::collections::BTreeSet<_>>()
        }
    };
    let kubernetes = [
        "KUBERNETES_SERVICE_HOST=10.43.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_SERVICE_PORT_HTTPS=443",
        "KUBERNETES_PORT=tcp://10.43.0.1:443",
        "KUBERNETES_PORT_443_TCP=tcp://10.43.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO=tcp",
        "KUBERNETES_PORT_443_TCP_PORT=443",
        "KUBERNETES_PORT_443_TCP_ADDR=10.43.0.1",
    ];
    let linked = env_of("linked").await;
    for want in kubernetes.iter().chain(&[
        "MY_WEB_SERVICE_HOST=10.43.100.100",
        "MY_WEB_SERVICE_PORT=80",
        "MY_WEB_SERVICE_PORT_HTTP=80",
        "MY_WEB_SERVICE_PORT_DNS=53",
        "MY_WEB_PORT=mine",
        "MY_WEB_PORT_53_UDP=udp://10.43.100.100:53",
        "MY_WEB_PORT_53_UDP_PROTO=udp",
        "API=10.43.0.1:80",
    ]) {
        assert!(linked.contains(*want), "{want} in the linked pod's env: {linked:?}");
    }
    let unlinked = env_of("unlinked").await;
    for want in kubernetes {
        assert!(unlinked.contains(want), "{want} in the unlinked pod's env: {unlinked:?}");
    }
    assert!(!unlinked.iter().any(|l| l.starts_with("MY_WEB_")), "no links without enableServiceLinks: {unlinked:?}");
}
