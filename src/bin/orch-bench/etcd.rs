//! The etcd peer: starting Debian's `etcd` (1 or 3 members on loopback, default durability,
//! mutual TLS for clients and peers as k3s runs it, with certificates from a CA made by
//! `orch::pki`) and a minimal gRPC client for `etcdserverpb.KV/Put`, with the messages declared
//! by hand (prost derive) so no .proto files or protoc are needed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orch::pki::{CertSpec, ClusterCa, PemPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// A KV client on one gRPC channel (HTTP/2, multiplexed), as etcd's clientv3 uses.
#[derive(Clone)]
pub struct EtcdKv {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdKv {
    /// Connects to `url` over TLS, trusting `ca` and presenting `client`.
    pub async fn connect(url: &str, ca: &str, client: &PemPair) -> anyhow::Result<Self> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(&client.cert, &client.key))
            .domain_name("localhost");
        let channel = Channel::from_shared(url.to_string())?
            .tls_config(tls)?
            .connect()
            .await
            .with_context(|| format!("connecting to etcd at {url}"))?;
        Ok(Self { grpc: tonic::client::Grpc::new(channel) })
    }

    pub async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<i64> {
        let mut grpc = self.grpc.clone();
        grpc.ready().await?;
        let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
        let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
        let resp = grpc.unary(tonic::Request::new(PutRequest { key, value }), path, codec).await?;
        Ok(resp.into_inner().header.map_or(0, |h| h.revision))
    }
}

/// An etcd cluster of child processes, killed on drop.
pub struct EtcdCluster {
    children: Vec<Child>,
    pub client_urls: Vec<String>,
    /// The CA certificate and a client certificate it accepts.
    pub ca: String,
    pub client: PemPair,
}

impl EtcdCluster {
    pub async fn start(root: &Path, members: usize, ports: &mut impl FnMut() -> u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let names: Vec<String> = (0..members).map(|i| format!("e{i}")).collect();
        let peer: Vec<String> = (0..members).map(|_| format!("https://127.0.0.1:{}", ports())).collect();
        let client: Vec<String> = (0..members).map(|_| format!("https://127.0.0.1:{}", ports())).collect();
        let ca = ClusterCa::create("etcd-bench-ca")?;
        let member = ca.sign(&CertSpec {
            common_name: "etcd".into(),
            dns_names: vec!["localhost".into()],
            ips: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            server_auth: true,
            client_auth: true,
            ..Default::default()
        })?;
        let client_cert = ca.sign(&CertSpec { common_name: "bench".into(), client_auth: true, ..Default::default() })?;
        let tls = root.join("tls");
        member.write(&tls, "member")?;
        std::fs::write(tls.join("ca.crt"), &ca.pem().cert)?;
        let path = |name: &str| tls.join(name).display().to_string();
        let initial: Vec<String> = names.iter().zip(&peer).map(|(n, p)| format!("{n}={p}")).collect();
        let mut children = Vec::new();
        for i in 0..members {
            let dir = root.join(&names[i]);
            let log = std::fs::File::create(root.join(format!("{}.log", names[i])))?;
            let child = Command::new("etcd")
                .args(["--name", &names[i], "--data-dir"])
                .arg(&dir)
                .args(["--listen-client-urls", &client[i], "--advertise-client-urls", &client[i]])
                .args(["--listen-peer-urls", &peer[i], "--initial-advertise-peer-urls", &peer[i]])
                .args(["--initial-cluster", &initial.join(","), "--initial-cluster-state", "new"])
                .args(["--cert-file", &path("member.crt"), "--key-file", &path("member.key")])
                .args(["--client-cert-auth", "--trusted-ca-file", &path("ca.crt")])
                .args(["--peer-cert-file", &path("member.crt"), "--peer-key-file", &path("member.key")])
                .args(["--peer-client-cert-auth", "--peer-trusted-ca-file", &path("ca.crt")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting etcd (install Debian's etcd-server: make deps)")?;
            children.push(child);
        }
        let cluster = Self { children, client_urls: client, ca: ca.pem().cert.clone(), client: client_cert };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        for url in &self.client_urls {
            loop {
                if let Ok(kv) = EtcdKv::connect(url, &self.ca, &self.client).await {
                    if kv.put(b"/ready".to_vec(), b"1".to_vec()).await.is_ok() {
                        break;
                    }
                }
                if Instant::now() > until {
                    bail!("etcd at {url} did not become ready in 30 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
