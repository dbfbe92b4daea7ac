//! The `orch` binary: command-line glue around the library.

use anyhow::Context;
use orch::cli::{self, Command};

mod allocator;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(debug: bool) {
    let default = if debug { "debug,openraft=info,sled=info,hyper=info,h2=info" } else { "info,openraft=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Runs a wrapped program in place of orch; returns only to exit with its failure.
fn wrap(tool: cli::wrappers::Tool, data_dir: &std::path::Path, wrapped: cli::Wrapped) -> ! {
    eprintln!("orch: {}", cli::wrappers::exec(tool, data_dir, wrapped.args));
    std::process::exit(1);
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os();
    if let Some(tool) = args.next().as_deref().and_then(cli::wrappers::Tool::invoked_as) {
        // Invoked as kubectl, ctr or crictl through a symlink (k3s's multicall).
        wrap(tool, &cli::default_data_dir(), cli::Wrapped { args: args.collect() });
    }
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("orch: {e}");
            std::process::exit(2);
        }
    };
    init_logging(cli.debug);
    orch::api::panics::install_hook();
    let default_data_dir = cli.data_dir.is_none();
    let data_dir = cli.data_dir.clone().unwrap_or_else(cli::default_data_dir);
    match cli.command {
        Command::Certificate(args) => cli::certificate::run(&data_dir, args),
        Command::CheckConfig => {
            if !cli::check_config::run(&data_dir) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Kubectl(w) => wrap(cli::wrappers::Tool::Kubectl, &data_dir, w),
        Command::Ctr(w) => wrap(cli::wrappers::Tool::Ctr, &data_dir, w),
        Command::Crictl(w) => wrap(cli::wrappers::Tool::Crictl, &data_dir, w),
        Command::Version => {
            println!("orch version v{}", orch::k8s::version::ORCH_VERSION);
            println!("kubernetes api {}", orch::k8s::version::KUBERNETES_VERSION);
            Ok(())
        }
        Command::Server(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(cli::server::run(&data_dir, default_data_dir, args)).context("orch server failed")
        }
        Command::Token(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(cli::token::run(&data_dir, args))
        }
        Command::SecretsEncrypt(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(cli::secrets_encrypt::run(&data_dir, args))
        }
        Command::Snapshot(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(cli::snapshot::run(&data_dir, args))
        }
        Command::Images(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(cli::images::run(&data_dir, args))
        }
        Command::Agent(args) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            if let Err(e) = rt.block_on(cli::agent::run(&data_dir, args)) {
                eprintln!("orch: agent failed: {e}");
                std::process::exit(e.exit_code());
            }
            Ok(())
        }
    }
}
