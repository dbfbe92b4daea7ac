//! The one signal handler of orch: SIGINT or SIGTERM cancels a token that every long-running
//! command (server, agent) stops on.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGINT or SIGTERM. Must be called inside the runtime.
pub fn shutdown_token() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}
