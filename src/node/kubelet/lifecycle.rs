//! Container lifecycle steps around start and stop: postStart/preStop hooks (exec or httpGet),
//! the graceful stop (preStop, SIGTERM, wait out the grace period, SIGKILL), and the final
//! grace-0 delete of a pod whose containers are gone.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::time::Instant;

use super::layout::PodRef;
use super::probes::{self, ProbeTarget};
use super::NodeContext;
use crate::node::heartbeat::is_status;
use crate::node::runtime::ContainerState;

/// How often a stopping container's state is looked at.
const POLL: Duration = Duration::from_millis(100);

/// Runs a lifecycle hook (as a probe with the grace period as its timeout); failures are logged.
pub async fn run_hook(ctx: &NodeContext, id: &str, hook: &LifecycleHandler, ip: IpAddr, netns: Option<PathBuf>, spec: &Container) {
    let probe = Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        timeout_seconds: Some(30),
        ..Default::default()
    };
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(crate::k8s::time::wait(sleep.seconds)).await;
        return;
    }
    let target = ProbeTarget { runtime: ctx.runtime.as_ref(), container_id: id, container: spec, pod_ip: ip, netns };
    if let Err(e) = probes::check(&probe, &target).await {
        tracing::warn!(container = %spec.name, error = %e, "lifecycle hook failed");
    }
}

async fn exited(ctx: &NodeContext, id: &str) -> bool {
    !matches!(ctx.runtime.container_state(id).await, Ok(ContainerState::Running { .. }))
}

/// Waits until the container is no longer running, at most until `deadline`.
async fn wait_stopped(ctx: &NodeContext, id: &str, deadline: Instant) -> bool {
    loop {
        if exited(ctx, id).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Stops a running container within `grace`: its preStop hook, SIGTERM, and SIGKILL for
/// whatever still runs when the grace period is over.
pub async fn stop_container(ctx: &NodeContext, id: &str, spec: &Container, grace: Duration, ip: IpAddr, netns: Option<PathBuf>) {
    let deadline = Instant::now() + grace.min(crate::k8s::time::FOREVER);
    if !grace.is_zero() {
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            let _ = tokio::time::timeout(grace, run_hook(ctx, id, hook, ip, netns, spec)).await;
        }
        if let Err(e) = ctx.runtime.kill_container(id, libc::SIGTERM).await {
            tracing::warn!(container = %id, error = %e, "cannot send SIGTERM");
        }
        if wait_stopped(ctx, id, deadline).await {
            return;
        }
    }
    if let Err(e) = ctx.runtime.kill_container(id, libc::SIGKILL).await {
        tracing::warn!(container = %id, error = %e, "cannot send SIGKILL");
    }
    wait_stopped(ctx, id, Instant::now() + Duration::from_secs(10)).await;
}

/// Deletes the pod for good (grace 0), only if it is still the same pod (uid precondition).
pub async fn delete_pod(ctx: &NodeContext, pod: &PodRef) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(pod.uid.clone()), resource_version: None }),
        ..DeleteParams::default().grace_period(0)
    };
    for attempt in 0..5u32 {
        match api.delete(&pod.name, &params).await {
            Ok(_) => return,
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => return,
            Err(e) => {
                tracing::warn!(pod = %pod.name, error = %e, "cannot remove the deleted pod; retrying");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}
