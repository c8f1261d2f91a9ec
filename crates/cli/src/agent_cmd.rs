//! `mobius agent`: the per-host process holding the router's listeners and the service instances.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The agent's directory (the server uses DATA/agent): agent.json, logs of instances.
    #[arg(long = "dir", value_name = "DIR")]
    dir: PathBuf,
    /// Where the control API listens (loopback; port 0 picks one, written to agent.json).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Worker threads for the router and the control API.
    #[arg(long = "threads", value_name = "N")]
    threads: Option<usize>,
}

pub fn main(args: AgentArgs) -> ExitCode {
    // One thread: a current-thread runtime, which spares the router the hand-offs
    // between a worker and the I/O driver.
    let mut builder = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mobius agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mobius_deploy::agent::run_agent(&args.dir, args.listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mobius agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
