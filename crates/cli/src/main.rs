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
mod events_client;
mod monitor_client;
mod render;
mod run_cmd;
mod sandbox_cmd;
mod serve_cmd;
mod table;
mod toolcache_cmd;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
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
    /// The tool cache of `mobius run`'s jobs: add the host's toolchains to it.
    Toolcache(toolcache_cmd::ToolcacheArgs),
    /// The job sandbox's init (run by `mobius serve` itself, once per job).
    #[command(name = "sandbox-init", hide = true)]
    SandboxInit(sandbox_cmd::InitArgs),
    /// One step inside a job's sandbox (run by `mobius serve` itself).
    #[command(name = "sandbox-exec", hide = true)]
    SandboxExec(sandbox_cmd::ExecArgs),
    #[command(flatten)]
    Client(client::ClientCmd),
}

/// Commands that never talk to a server: `--server` and `--token` are not theirs.
const LOCAL_COMMANDS: [&str; 5] = ["run", "serve", "agent", "backfill", "toolcache"];

/// The command line: the client options are global (before or after a client command),
/// but hidden from the help of the commands that run here and never use them.
fn command() -> clap::Command {
    let mut command = Cli::command();
    // clap copies a global option into every subcommand that has none of that name, so
    // the local commands get a hidden copy of their own first.
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .map(|arg| arg.clone().global(false).hide(true))
        .collect();
    for name in LOCAL_COMMANDS {
        command = command.mut_subcommand(name, |sub| sub.args(hidden.clone()));
    }
    command
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
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Run(args) => run_cmd::main(args),
        Command::Serve(args) => serve_cmd::main(args),
        Command::Agent(args) => agent_cmd::main(args),
        Command::Backfill(args) => backfill_cmd::main(args),
        Command::Toolcache(args) => toolcache_cmd::main(args),
        Command::SandboxInit(args) => sandbox_cmd::init(args),
        Command::SandboxExec(args) => sandbox_cmd::exec(args),
        Command::Client(command) => client::main(cli.connection, command),
    }
}

#[cfg(test)]
mod tests {
    use super::{command, LOCAL_COMMANDS};

    /// Every visible option, argument and command without a help line, by its path.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_hide_set() || id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(path.clone());
            }
            undocumented(sub, &path, missing);
        }
    }

    #[test]
    fn every_option_argument_and_command_has_a_help_line() {
        let mut missing = Vec::new();
        undocumented(&command(), "mobius", &mut missing);
        assert!(missing.is_empty(), "without a help line: {missing:#?}");
    }

    fn help(args: &[&str]) -> String {
        match command().try_get_matches_from(args) {
            Err(e) => e.render().to_string(),
            Ok(_) => panic!("{args:?} printed no help"),
        }
    }

    #[test]
    fn client_options_stay_out_of_the_help_of_local_commands() {
        for name in LOCAL_COMMANDS {
            let text = help(&["mobius", name, "--help"]);
            assert!(!text.contains("--server") && !text.contains("--token"), "{name}: {text}");
        }
        let text = help(&["mobius", "runs", "--help"]);
        assert!(text.contains("--server") && text.contains("--token"), "{text}");
        assert!(!text.contains("MOBIUS_SERVER="), "no empty env value: {text}");
    }

    #[test]
    fn client_options_work_before_and_after_the_command() {
        for args in [
            &["mobius", "--server", "10.0.0.1:7300", "--token", "T", "runs"][..],
            &["mobius", "runs", "--server", "10.0.0.1:7300", "--token", "T"][..],
            &["mobius", "project", "list", "--server", "10.0.0.1:7300", "--token", "T"][..],
        ] {
            let matches = command().try_get_matches_from(args).expect("parses");
            assert_eq!(
                matches.get_one::<String>("server").map(String::as_str),
                Some("http://10.0.0.1:7300"),
                "{args:?}"
            );
            assert_eq!(matches.get_one::<String>("token").map(String::as_str), Some("T"), "{args:?}");
        }
    }
}
