//! The containerd runtime against a real containerd (supervised by orch) and runc: image
//! import (OCI layout and docker archive), the `orch images` CLI, containers with CRI logs,
//! exec, kill, OOM kills, and pulls from Debian's docker-registry on loopback. Needs root (and
//! the containerd, runc, busybox-static and docker-registry packages); skipped otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::node::runtime::config::ContainerdPaths;
use orch::node::runtime::containerd::Containerd;
use orch::node::runtime::images::registries::Registries;
use orch::node::runtime::supervisor::{find_binary, Supervisor};
use orch::node::runtime::{BindMount, ContainerConfig, ContainerRuntime, ContainerState, PullPolicy, Resources};
use orch::testkit::images;

use crate::support::{free_port, orch_binary, skip_without_containers, wait_for};

/// A data dir with a running supervised containerd and a runtime connected to it.
struct Node {
    dir: tempfile::TempDir,
    supervisor: Option<Supervisor>,
    runtime: Containerd,
}

impl Node {
    async fn start(registries: Registries) -> Self {
        // Short paths: containerd's sockets must fit in 108 bytes.
        let dir = tempfile::Builder::new().prefix("orch-ctrd").tempdir_in("/tmp").unwrap();
        let paths = ContainerdPaths::for_data_dir(dir.path());
        let supervisor = Supervisor::start(paths.clone(), Duration::from_secs(20)).await.unwrap();
        let runtime = Containerd::connect(&paths.socket(), &paths.fifo_dir(), registries).await.unwrap();
        Self { dir, supervisor: Some(supervisor), runtime }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    async fn stop(mut self) {
        for c in self.runtime.list_containers().await.unwrap_or_default() {
            let _ = self.runtime.remove_container(&c.id).await;
        }
        if let Some(s) = self.supervisor.take() {
            s.stop().await;
        }
        remove_test_cgroups();
    }
}

fn test_cgroup() -> String {
    format!("orch-test-{}", std::process::id())
}

/// Removes the (empty) parent cgroups the test's containers ran under.
fn remove_test_cgroups() {
    for dir in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(dir.path().join(test_cgroup()));
    }
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(test_cgroup()));
}

fn container(node: &Node, id: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        id: id.into(),
        image: "busybox".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        cgroup_parent: format!("/{}", test_cgroup()),
        log_path: node.path(&format!("logs/{id}/0.log")),
        labels: [("io.kubernetes.container.name".to_string(), id.to_string())].into(),
        ..Default::default()
    }
}

async fn log_text(path: &Path, needle: &str) -> String {
    wait_for(Duration::from_secs(10), &format!("{needle:?} in {}", path.display()), || async {
        std::fs::read_to_string(path).ok().filter(|t| t.contains(needle))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_run_log_exec_and_die_on_containerd() {
    if skip_without_containers("containers_run_log_exec_and_die_on_containerd") {
        return;
    }
    let node = Node::start(Registries::default()).await;
    let rt = &node.runtime;
    assert!(rt.version().await.unwrap().starts_with("containerd://1."));

    let tar = node.path("busybox.tar");
    images::busybox_oci_tar(&tar).unwrap();
    let imported = rt.import(&tar).await.unwrap();
    assert_eq!(imported[0].name, "docker.io/library/busybox:latest");
    let present = rt.ensure_image("busybox:latest", PullPolicy::IfNotPresent, None).await.unwrap();
    assert_eq!(present.digest, imported[0].digest);

    // Run to completion: output lands in the CRI log.
    let c = container(&node, "hello", &["sh", "-c", "echo hello; echo oops >&2; exit 7"]);
    rt.create_container(&c).await.unwrap();
    rt.start_container("hello").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), rt.wait_container("hello")).await.expect("hello exits").unwrap();
    assert_eq!((status.code, status.oom_killed), (7, false));
    let log = log_text(&c.log_path, "oops").await;
    assert!(log.lines().any(|l| l.ends_with(" stdout F hello")), "{log}");
    assert!(log.lines().any(|l| l.ends_with(" stderr F oops")), "{log}");
    assert!(matches!(rt.container_state("hello").await.unwrap(), ContainerState::Exited(s) if s.code == 7));

    // A long-running one: exec in it, then kill it.
    std::fs::write(node.path("hostname"), "sleeper-pod\n").unwrap();
    let mut c = container(&node, "sleeper", &["sleep", "300"]);
    c.mounts.push(BindMount { host_path: node.path("hostname"), container_path: "/etc/hostname".into(), read_only: true });
    c.env.push(("GREETING".into(), "hi there".into()));
    rt.create_container(&c).await.unwrap();
    rt.start_container("sleeper").await.unwrap();
    assert!(matches!(rt.container_state("sleeper").await.unwrap(), ContainerState::Running { .. }));
    let out = rt.exec("sleeper", &["cat".into(), "/etc/hostname".into()], Duration::from_secs(10)).await.unwrap();
    assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stdout).as_ref()), (0, "sleeper-pod\n"));
    let out = rt.exec("sleeper", &["sh".into(), "-c".into(), "echo $GREETING >&2; exit 3".into()], Duration::from_secs(10)).await.unwrap();
    assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stderr).as_ref()), (3, "hi there\n"));
    let listed = rt.list_containers().await.unwrap();
    let sleeper = listed.iter().find(|c| c.id == "sleeper").expect("sleeper is listed");
    assert_eq!(sleeper.labels["io.kubernetes.container.name"], "sleeper");
    rt.kill_container("sleeper", libc::SIGKILL).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), rt.wait_container("sleeper")).await.expect("sleeper dies").unwrap();
    assert_eq!(status.code, 137);
    rt.remove_container("sleeper").await.unwrap();
    rt.remove_container("sleeper").await.unwrap();
    assert!(!rt.list_containers().await.unwrap().iter().any(|c| c.id == "sleeper"));

    // A memory hog in a 32 MiB cgroup is OOM-killed.
    let mut c = container(&node, "hog", &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]);
    c.resources = Resources { memory_limit_bytes: Some(32 << 20), ..Default::default() };
    rt.create_container(&c).await.unwrap();
    rt.start_container("hog").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), rt.wait_container("hog")).await.expect("the hog dies").unwrap();
    assert_eq!((status.code, status.oom_killed), (137, true), "{status:?}");
    assert!(matches!(rt.container_state("hog").await.unwrap(), ContainerState::Exited(s) if s.oom_killed));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_import_list_and_remove_through_the_cli() {
    if skip_without_containers("images_import_list_and_remove_through_the_cli") {
        return;
    }
    let node = Node::start(Registries::default()).await;
    let image = images::busybox_image().unwrap();
    let oci = node.path("oci.tar");
    let docker = node.path("docker.tar");
    images::write_oci_tar(&image, "registry.example/tools/busybox:oci", &oci).unwrap();
    images::write_docker_tar(&image, "busybox:docker", &docker).unwrap();
    let orch = |args: &[&str]| {
        let out =
            std::process::Command::new(orch_binary()).arg("--data-dir").arg(node.dir.path()).arg("images").args(args).output().unwrap();
        assert!(out.status.success(), "orch images {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = orch(&["import", oci.to_str().unwrap(), docker.to_str().unwrap()]);
    assert!(out.contains("imported registry.example/tools/busybox:oci"), "{out}");
    assert!(out.contains("imported docker.io/library/busybox:docker"), "{out}");
    let ls = orch(&["ls"]);
    assert!(ls.contains("registry.example/tools/busybox:oci") && ls.contains("docker.io/library/busybox:docker"), "{ls}");
    // The docker-archive image runs too.
    let mut c = container(&node, "from-docker", &["echo", "docker archive works"]);
    c.image = "busybox:docker".into();
    node.runtime.create_container(&c).await.unwrap();
    node.runtime.start_container("from-docker").await.unwrap();
    assert_eq!(node.runtime.wait_container("from-docker").await.unwrap().code, 0);
    log_text(&c.log_path, "docker archive works").await;
    orch(&["rm", "busybox:docker"]);
    let ls = orch(&["ls"]);
    assert!(!ls.contains("busybox:docker") && ls.contains("busybox:oci"), "{ls}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airgap_tarballs_are_imported_when_they_appear() {
    if skip_without_containers("airgap_tarballs_are_imported_when_they_appear") {
        return;
    }
    let node = Node::start(Registries::default()).await;
    let dir = orch::node::runtime::images::airgap::dir(node.dir.path());
    std::fs::create_dir_all(&dir).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(orch::node::runtime::images::airgap::watch(node.runtime.client.clone(), dir.clone(), shutdown.clone()));
    let image = images::busybox_image().unwrap();
    images::write_oci_tar(&image, "docker.io/library/airgapped:v1", &node.path("staging.tar")).unwrap();
    std::fs::rename(node.path("staging.tar"), dir.join("airgapped.tar")).unwrap();
    wait_for(Duration::from_secs(20), "the airgap image to be imported", || async {
        let images = node.runtime.list_images().await.unwrap();
        images.iter().any(|i| i.name == "docker.io/library/airgapped:v1").then_some(())
    })
    .await;
    shutdown.cancel();
    watcher.await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_from_a_loopback_registry() {
    if skip_without_containers("images_are_pulled_from_a_loopback_registry") {
        return;
    }
    let Some(registry_bin) = find_binary("docker-registry") else {
        eprintln!("SKIPPED images_are_pulled_from_a_loopback_registry: docker-registry is missing (apt-get install docker-registry)");
        return;
    };
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let config = store.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            store.path().join("data").display()
        ),
    )
    .unwrap();
    let mut registry = tokio::process::Command::new(registry_bin)
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let image = images::busybox_image().unwrap();
    wait_for(Duration::from_secs(20), "docker-registry to accept the push", || async {
        images::push(&image, &base, "tools/busybox", "v1").await.ok()
    })
    .await;

    // The registry is reached through a mirror entry as well as directly.
    let registries = Registries::parse(&format!("mirrors:\n  mirror.invalid:\n    endpoint:\n      - \"{base}\"\n")).unwrap();
    let node = Node::start(registries).await;
    let rt = &node.runtime;
    let pulled = rt.ensure_image(&format!("127.0.0.1:{port}/tools/busybox:v1"), PullPolicy::IfNotPresent, None).await.unwrap();
    assert!(!pulled.pinned, "pulled images are not pinned");
    assert_eq!(pulled.name, format!("127.0.0.1:{port}/tools/busybox:v1"));
    let mirrored = rt.ensure_image("mirror.invalid/tools/busybox:v1", PullPolicy::Always, None).await.unwrap();
    assert_eq!(mirrored.digest, pulled.digest);
    let mut c = container(&node, "pulled", &["echo", "pulled and running"]);
    c.image = format!("127.0.0.1:{port}/tools/busybox:v1");
    rt.create_container(&c).await.unwrap();
    rt.start_container("pulled").await.unwrap();
    assert_eq!(rt.wait_container("pulled").await.unwrap().code, 0);
    log_text(&c.log_path, "pulled and running").await;

    let err = rt.ensure_image(&format!("127.0.0.1:{port}/tools/busybox:missing"), PullPolicy::IfNotPresent, None).await.unwrap_err();
    assert!(err.to_string().contains("manifest unknown"), "{err}");
    let err = rt.ensure_image("127.0.0.1:1/none:v1", PullPolicy::Never, None).await.unwrap_err();
    assert!(err.to_string().contains("imagePullPolicy is Never"), "{err}");
    node.stop().await;
    let _ = registry.kill().await;
}

/// The pids of containerd processes running with the config under `data_dir`.
fn containerd_pids(data_dir: &Path) -> Vec<u32> {
    let config = ContainerdPaths::for_data_dir(data_dir).config().display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&config)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_runtime_imports_airgap_images_at_start_and_restarts_containerd() {
    if skip_without_containers("the_node_runtime_imports_airgap_images_at_start_and_restarts_containerd") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("orch-node").tempdir_in("/tmp").unwrap();
    let airgap = orch::node::runtime::images::airgap::dir(dir.path());
    std::fs::create_dir_all(&airgap).unwrap();
    images::busybox_oci_tar(&airgap.join("busybox.tar")).unwrap();
    let node = orch::node::runtime::node::NodeRuntime::start(dir.path(), None, Default::default()).await.unwrap();
    wait_for(Duration::from_secs(20), "the airgap image imported at start", || async {
        let images = node.runtime.list_images().await.unwrap_or_default();
        images.iter().any(|i| i.name == "docker.io/library/busybox:latest").then_some(())
    })
    .await;
    let first = containerd_pids(dir.path());
    assert_eq!(first.len(), 1, "one containerd runs");
    // SAFETY: kill(2) on a pid we just looked up.
    unsafe { libc::kill(first[0] as i32, libc::SIGKILL) };
    wait_for(Duration::from_secs(20), "containerd to be restarted", || async {
        let now = containerd_pids(dir.path());
        let back = now.len() == 1 && now != first && node.runtime.version().await.is_ok();
        back.then_some(())
    })
    .await;
    let images = node.runtime.list_images().await.unwrap();
    let busybox = images.iter().find(|i| i.name == "docker.io/library/busybox:latest").expect("the airgap image survives");
    assert!(busybox.pinned, "airgap images are pinned against image garbage collection");
    node.stop().await;
    assert!(containerd_pids(dir.path()).is_empty(), "containerd stopped");
}
