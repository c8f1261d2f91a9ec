//! The `mobius` binary: argument parsing and wiring of the stages, nothing more.
#![forbid(unsafe_code)]

// Every module below prints through `out`, so a closed pipe ends `mobius` quietly.
mod out;
macro_rules! println {
    () => { $crate::out::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}

mod agent_cmd;
mod backfill_cmd;
mod client;
mod deploy_client;
mod monitor_client;
mod render;
mod run_cmd;
mod sandbox_cmd;
mod serve_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Mobius: the whole DevOps loop in one binary.
#[derive(Debug, Parser)]
#[command(name = "mobius", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    connection: client::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run GitHub Actions workflows on this host, offline, like the server would.
    Run(run_cmd::RunArgs),
    /// Serve the platform: watch projects, run their workflows, answer the API.
    Serve(serve_cmd::ServeArgs),
    /// The host agent: routers and service instances that outlive `mobius serve`
    /// (started by the server; run by hand to control its threads or address).
    Agent(agent_cmd::AgentArgs),
    /// Load an OpenMetrics file with timestamps into the monitor's store as blocks.
    Backfill(backfill_cmd::BackfillArgs),
    /// The job sandbox's init (run by `mobius serve` itself, once per job).
    #[command(name = "sandbox-init", hide = true)]
    SandboxInit(sandbox_cmd::InitArgs),
    /// One step inside a job's sandbox (run by `mobius serve` itself).
    #[command(name = "sandbox-exec", hide = true)]
    SandboxExec(sandbox_cmd::ExecArgs),
    #[command(flatten)]
    Client(client::ClientCmd),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MOBIUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_cmd::main(args),
        Command::Serve(args) => serve_cmd::main(args),
        Command::Agent(args) => agent_cmd::main(args),
        Command::Backfill(args) => backfill_cmd::main(args),
        Command::SandboxInit(args) => sandbox_cmd::init(args),
        Command::SandboxExec(args) => sandbox_cmd::exec(args),
        Command::Client(command) => client::main(cli.connection, command),
    }
}
