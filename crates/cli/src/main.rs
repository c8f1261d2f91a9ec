//! The `mobius` binary: argument parsing and wiring of the stages, nothing more.
#![forbid(unsafe_code)]

mod render;
mod run_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Mobius: the whole DevOps loop in one binary.
#[derive(Debug, Parser)]
#[command(name = "mobius", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run GitHub Actions workflows on this host, offline, like the server would.
    Run(run_cmd::RunArgs),
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
    }
}
