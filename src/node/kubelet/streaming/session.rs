//! Running an exec or attach session between a client and the runtime, whatever the transport:
//! the client's stdin and resizes go to the process, its output to the client, and the
//! session ends when the process has exited and its output has been passed on (an attach
//! session also ends when the client leaves).

use bytes::Bytes;
use tokio::sync::mpsc;

use super::channel::Outcome;
use crate::node::runtime::{StreamSession, TermSize};

/// The client's side of a session, as channels its transport feeds and drains.
#[derive(Default)]
pub struct ClientStreams {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    pub stderr: Option<mpsc::Sender<Bytes>>,
}

/// Whether the session runs a command (its exit code is the outcome) or attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

/// Passes chunks from `from` to `to` until either side ends.
async fn pump(mut from: mpsc::Receiver<Bytes>, to: mpsc::Sender<Bytes>) {
    while let Some(chunk) = from.recv().await {
        if to.send(chunk).await.is_err() {
            return;
        }
    }
}

/// Runs `session` for `client` to its end.
pub async fn run(session: StreamSession, client: ClientStreams, kind: Kind) -> Outcome {
    let StreamSession { stdin, stdout, stderr, control } = session;
    let input = match (client.stdin, stdin) {
        // Ends (closing the process's stdin) when the client closes its stdin.
        (Some(from), Some(to)) => Some(tokio::spawn(pump(from, to))),
        _ => None,
    };
    let outputs = async {
        let out = async {
            if let (Some(from), Some(to)) = (stdout, client.stdout) {
                pump(from, to).await;
            }
        };
        let err = async {
            if let (Some(from), Some(to)) = (stderr, client.stderr) {
                pump(from, to).await;
            }
        };
        tokio::join!(out, err);
    };
    let resizes = async {
        if let Some(mut rx) = client.resize {
            while let Some(size) = rx.recv().await {
                if let Err(e) = control.resize(size).await {
                    tracing::debug!(error = %e, "cannot resize a session's terminal");
                }
            }
        }
        std::future::pending::<()>().await
    };
    let finished = async {
        let (code, ()) = tokio::join!(control.wait(), outputs);
        code
    };
    let outcome = tokio::select! {
        code = finished => match (kind, code) {
            (Kind::Exec, Ok(code)) => Outcome::of_exit(code),
            (Kind::Attach, Ok(_)) => Outcome::Success,
            (_, Err(e)) => Outcome::Error(e.to_string()),
        },
        _ = resizes => unreachable!("the resize loop never ends"),
    };
    if let Some(input) = input {
        input.abort();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::runtime::fake::FakeRuntime;
    use crate::node::runtime::{ContainerConfig, ContainerRuntime, ExecOutput, StreamRequest};

    async fn runtime() -> FakeRuntime {
        let rt = FakeRuntime::new().with_exec(|_, cmd| ExecOutput {
            exit_code: 3,
            stdout: b"out\n".to_vec(),
            stderr: cmd.join(" ").into_bytes(),
        });
        rt.add_image("busybox");
        rt.create_container(&ContainerConfig { id: "c".into(), image: "busybox".into(), ..Default::default() }).await.unwrap();
        rt.start_container("c").await.unwrap();
        rt
    }

    #[tokio::test]
    async fn an_exec_passes_stdin_output_resizes_and_its_exit_code() {
        let rt = runtime().await;
        let req = StreamRequest { stdin: true, stdout: true, stderr: true, tty: false };
        let session = rt.exec_stream("c", &["sh".into()], req).await.unwrap();
        let (stdin_tx, stdin) = mpsc::channel(4);
        let (resize_tx, resize) = mpsc::channel(4);
        let (stdout, mut out_rx) = mpsc::channel(4);
        let (stderr, mut err_rx) = mpsc::channel(4);
        let client = ClientStreams { stdin: Some(stdin), resize: Some(resize), stdout: Some(stdout), stderr: Some(stderr) };
        let run = tokio::spawn(run(session, client, Kind::Exec));
        assert_eq!(out_rx.recv().await.unwrap(), "out\n");
        assert_eq!(err_rx.recv().await.unwrap(), "sh");
        resize_tx.send(TermSize { width: 80, height: 24 }).await.unwrap();
        stdin_tx.send(Bytes::from_static(b"typed")).await.unwrap();
        assert_eq!(out_rx.recv().await.unwrap(), "typed");
        drop(stdin_tx);
        assert_eq!(run.await.unwrap(), Outcome::ExitCode(3));
        assert!(out_rx.recv().await.is_none());
        assert!(rt.calls().contains(&"resize c 80x24".to_string()));
    }

    #[tokio::test]
    async fn an_attach_ends_in_success() {
        let rt = runtime().await;
        let session = rt.attach("c", StreamRequest { stdout: true, ..Default::default() }).await.unwrap();
        let (stdout, _out) = mpsc::channel(4);
        let client = ClientStreams { stdout: Some(stdout), ..Default::default() };
        assert_eq!(run(session, client, Kind::Attach).await, Outcome::Success);
    }
}
