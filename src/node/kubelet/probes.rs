//! Container probes: running one check (exec in the container; tcpSocket and httpGet connect
//! from the node into the pod's address, inside the node's network namespace when it has its
//! own) and the per-probe bookkeeping of thresholds and timing ([`ProbeTracker`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::net::netns::NetnsError;
use crate::node::runtime::{ContainerRuntime, RuntimeError};

/// Why a probe (or a lifecycle hook) failed: the message of the Unhealthy event.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid port {0}")]
    InvalidPort(i32),
    #[error("no port named {0:?}")]
    NoNamedPort(String),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    #[error("dial tcp {addr}: {source}")]
    Dial { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not an HTTP answer: {0:?}")]
    NotHttp(Option<String>),
    #[error("HTTP probe failed with statuscode: {0}")]
    HttpStatus(u16),
    #[error(transparent)]
    Exec(#[from] RuntimeError),
    #[error("command {command:?} exited with {code}: {output}")]
    Exit { command: Vec<String>, code: i32, output: String },
    #[error("the probe has no handler")]
    NoHandler,
    #[error("probe timed out after {0:?}")]
    Timeout(Duration),
}

/// Where probes go.
pub struct ProbeTarget<'a> {
    pub runtime: &'a dyn ContainerRuntime,
    pub container_id: &'a str,
    pub container: &'a Container,
    pub pod_ip: IpAddr,
    /// The namespace node-side connections are made from (`None`: this process's).
    pub netns: Option<PathBuf>,
}

fn port(p: &IntOrString, container: &Container) -> Result<u16, ProbeError> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| ProbeError::InvalidPort(*n)),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| ProbeError::NoNamedPort(name.clone())),
    }
}

/// Connects to `addr` from inside `netns` (the socket stays in that namespace).
pub async fn connect(netns: Option<PathBuf>, addr: SocketAddr, timeout: Duration) -> Result<tokio::net::TcpStream, ProbeError> {
    let std = tokio::task::spawn_blocking(move || {
        crate::net::netns::run_in(netns.as_deref(), || std::net::TcpStream::connect_timeout(&addr, timeout))
    })
    .await??
    .map_err(|source| ProbeError::Dial { addr, source })?;
    std.set_nonblocking(true)?;
    Ok(tokio::net::TcpStream::from_std(std)?)
}

async fn http_status<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, ProbeError> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 || buf[..got + n].contains(&b'\n') {
            got += n;
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| ProbeError::NotHttp(line.lines().next().map(str::to_string)))
}

/// Runs `probe` once; `Ok(())` is success, `Err` says why it failed.
pub async fn check(probe: &Probe, target: &ProbeTarget<'_>) -> Result<(), ProbeError> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let out = target.runtime.exec(target.container_id, &command, timeout).await?;
        return match out.exit_code {
            0 => Ok(()),
            code => Err(ProbeError::Exit { command, code, output: String::from_utf8_lossy(&out.stdout).trim().to_string() }),
        };
    }
    let attempt = async {
        if let Some(tcp) = &probe.tcp_socket {
            let ip = tcp.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(target.pod_ip);
            connect(target.netns.clone(), SocketAddr::new(ip, port(&tcp.port, target.container)?), timeout).await?;
            return Ok(());
        }
        if let Some(http) = &probe.http_get {
            let ip = http.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(target.pod_ip);
            let addr = SocketAddr::new(ip, port(&http.port, target.container)?);
            let path = http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
            let stream = connect(target.netns.clone(), addr, timeout).await?;
            let code = if http.scheme.as_deref() == Some("HTTPS") {
                let tls = tokio_rustls::TlsConnector::from(Arc::new(crate::pki::insecure_client_config()));
                let name = rustls::pki_types::ServerName::IpAddress(ip.into());
                let stream = tls.connect(name, stream).await?;
                http_status(stream, &addr.to_string(), &path, &headers).await?
            } else {
                http_status(stream, &addr.to_string(), &path, &headers).await?
            };
            return if (200..400).contains(&code) { Ok(()) } else { Err(ProbeError::HttpStatus(code)) };
        }
        Err(ProbeError::NoHandler)
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| ProbeError::Timeout(timeout))?
}

/// The state of one probe of one running container.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    pub probe: Probe,
    /// When the probe runs next.
    pub due: Instant,
    successes: i32,
    failures: i32,
    /// The current verdict; `None` until the thresholds decide.
    pub result: Option<bool>,
}

/// What a probe run changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    Succeeded,
    Failed,
}

impl ProbeTracker {
    /// A tracker for a container that started at `started`.
    pub fn new(probe: &Probe, started: Instant) -> Self {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Self { probe: probe.clone(), due: started + delay, successes: 0, failures: 0, result: None }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    /// Records one outcome and schedules the next run; says when the verdict flipped.
    pub fn record(&mut self, ok: bool, now: Instant) -> Verdict {
        self.due = now + self.period();
        let (success_threshold, failure_threshold) =
            (self.probe.success_threshold.unwrap_or(1).max(1), self.probe.failure_threshold.unwrap_or(3).max(1));
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= success_threshold && self.result != Some(true) {
                self.result = Some(true);
                return Verdict::Succeeded;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= failure_threshold && self.result != Some(false) {
                self.result = Some(false);
                return Verdict::Failed;
            }
        }
        Verdict::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::runtime::fake::FakeRuntime;
    use crate::node::runtime::{ContainerConfig, ExecOutput};
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn thresholds_decide_the_verdict() {
        let now = Instant::now();
        let mut t = ProbeTracker::new(
            &probe(json!({"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2, "successThreshold": 2})),
            now,
        );
        assert_eq!(t.due, now + Duration::from_secs(5));
        assert_eq!(t.record(true, now), Verdict::Unchanged);
        assert_eq!(t.record(true, now), Verdict::Succeeded);
        assert_eq!(t.due, now + Duration::from_secs(2));
        assert_eq!(t.record(false, now), Verdict::Unchanged);
        assert_eq!(t.record(false, now), Verdict::Failed);
        assert_eq!(t.record(false, now), Verdict::Unchanged);
        assert_eq!(t.result, Some(false));
    }

    #[tokio::test]
    async fn exec_tcp_and_http_checks() {
        let rt =
            FakeRuntime::new().with_exec(|_, cmd| ExecOutput { exit_code: if cmd[0] == "true" { 0 } else { 1 }, ..Default::default() });
        rt.add_image("busybox");
        rt.create_container(&ContainerConfig { id: "c".into(), image: "busybox".into(), ..Default::default() }).await.unwrap();
        rt.start_container("c").await.unwrap();
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = server.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let code = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz ") { 200 } else { 500 };
                let _ = s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
            }
        });
        let container: Container =
            serde_json::from_value(json!({"name": "c", "ports": [{"name": "http", "containerPort": port}]})).unwrap();
        let target =
            ProbeTarget { runtime: &rt, container_id: "c", container: &container, pod_ip: "127.0.0.1".parse().unwrap(), netns: None };
        assert!(check(&probe(json!({"exec": {"command": ["true"]}})), &target).await.is_ok());
        assert!(check(&probe(json!({"exec": {"command": ["false"]}})), &target).await.is_err());
        assert!(check(&probe(json!({"tcpSocket": {"port": port}})), &target).await.is_ok());
        assert!(check(&probe(json!({"httpGet": {"path": "/healthz", "port": "http"}})), &target).await.is_ok());
        let err = check(&probe(json!({"httpGet": {"path": "/other", "port": port}})), &target).await.unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(check(&probe(json!({"tcpSocket": {"port": closed}})), &target).await.is_err());
    }
}
