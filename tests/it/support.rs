//! Test helpers: the library's child-process cluster kit, bound to this build's `orch` binary.

use std::path::Path;

pub use orch::testkit::{free_port, wait_for, ServerProc};

pub fn orch_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_orch"))
}

pub fn start_server(data_dir: &Path, extra: &[String]) -> ServerProc {
    ServerProc::start(orch_binary(), data_dir, extra)
}

pub async fn start_cluster(root: &Path, n: usize, extra: &[String]) -> Vec<ServerProc> {
    orch::testkit::start_cluster(orch_binary(), root, n, extra).await
}
