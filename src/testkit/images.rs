//! Test images built from the host's static busybox (Debian's busybox-static): one layer with
//! /bin/busybox and a symlink per applet, written as an OCI image layout tarball, a
//! `docker save` archive, or pushed to a registry over the v2 API.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::node::runtime::images::manifest::{sha256_digest, OCI_CONFIG, OCI_MANIFEST};

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// The blobs of one single-layer image.
pub struct TestImage {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

fn append_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_size(0);
    b.append_data(&mut h, path, std::io::empty())
}

fn append_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data)
}

/// The busybox image (needs `/bin/busybox`, statically linked).
pub fn busybox_image() -> std::io::Result<TestImage> {
    let busybox = std::fs::read("/bin/busybox")?;
    let applets = std::process::Command::new("/bin/busybox").arg("--list").output()?.stdout;
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777)] {
        append_dir(&mut b, dir, mode)?;
    }
    append_file(&mut b, "bin/busybox", 0o755, &busybox)?;
    append_file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")?;
    append_file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    for applet in String::from_utf8_lossy(&applets).lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox") {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let layer = b.into_inner()?;
    let diff_id = sha256_digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": crate::host::kube_arch(),
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": diff_id, "size": layer.len()}],
    }))?;
    Ok(TestImage { layer, config, manifest })
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// Writes `image` as an OCI image layout tarball naming it `name` (e.g.
/// `docker.io/library/busybox:latest`).
pub fn write_oci_tar(image: &TestImage, name: &str, path: &Path) -> std::io::Result<()> {
    let manifest_digest = sha256_digest(&image.manifest);
    let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": image.manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
        }],
    }))?;
    let mut b = tar::Builder::new(Vec::new());
    append_file(&mut b, "oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_file(&mut b, "index.json", 0o644, &index)?;
    for blob in [&image.layer, &image.config, &image.manifest] {
        append_file(&mut b, &format!("blobs/sha256/{}", hex(&sha256_digest(blob))), 0o644, blob)?;
    }
    std::fs::write(path, b.into_inner()?)
}

/// Writes `image` as a `docker save` archive tagged `tag` (e.g. `busybox:docker`).
pub fn write_docker_tar(image: &TestImage, tag: &str, path: &Path) -> std::io::Result<()> {
    let layer_dir = hex(&sha256_digest(&image.layer)).to_string();
    let config_name = format!("{}.json", hex(&sha256_digest(&image.config)));
    let manifest = serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": [tag], "Layers": [format!("{layer_dir}/layer.tar")]}]))?;
    let mut b = tar::Builder::new(Vec::new());
    append_file(&mut b, &format!("{layer_dir}/layer.tar"), 0o644, &image.layer)?;
    append_file(&mut b, &config_name, 0o644, &image.config)?;
    append_file(&mut b, "manifest.json", 0o644, &manifest)?;
    std::fs::write(path, b.into_inner()?)
}

/// busybox as an OCI layout tarball named `docker.io/library/busybox:latest`.
pub fn busybox_oci_tar(path: &Path) -> std::io::Result<()> {
    write_oci_tar(&busybox_image()?, "docker.io/library/busybox:latest", path)
}

/// Pushes `image` to the plain-HTTP registry at `base` (e.g. `http://127.0.0.1:5000`) as
/// `repository:tag`.
pub async fn push(image: &TestImage, base: &str, repository: &str, tag: &str) -> Result<(), String> {
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let send = |method: &str, url: String, content_type: Option<&str>, body: Vec<u8>| {
        let mut req = http::Request::builder().method(method).uri(url);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("a valid request");
        let http = http.clone();
        async move {
            let resp = http.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let location = resp.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_string);
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok(location)
        }
    };
    for blob in [&image.layer, &image.config] {
        let location = send("POST", format!("{base}/v2/{repository}/blobs/uploads/"), None, vec![]).await?.ok_or("no upload location")?;
        let location = if location.starts_with('/') { format!("{base}{location}") } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        send("PUT", format!("{location}{sep}digest={}", sha256_digest(blob)), Some("application/octet-stream"), blob.clone()).await?;
    }
    send("PUT", format!("{base}/v2/{repository}/manifests/{tag}"), Some(OCI_MANIFEST), image.manifest.clone()).await?;
    Ok(())
}
