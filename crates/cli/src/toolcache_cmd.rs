//! `mobius toolcache add TOOL`: the host's toolchain into the runner's tool cache, so
//! `actions/setup-python` (and node, go, java) find the version without downloading.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ToolcacheArgs {
    #[command(subcommand)]
    command: ToolcacheCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ToolcacheCommand {
    /// Add the host's python, node, go or java (found on PATH) to the tool cache.
    Add {
        /// python, node, go or java.
        tool: mobius_runner::toolcache::Tool,
        /// Take the toolchain from this folder (its bin/) instead of PATH.
        #[arg(long = "path", value_name = "DIR")]
        path: Option<PathBuf>,
    },
    /// Print where the tool cache is.
    Dir,
}

pub fn main(args: ToolcacheArgs) -> ExitCode {
    let cache = crate::run_cmd::state_dir().join("tool-cache");
    match args.command {
        ToolcacheCommand::Dir => {
            println!("{}", cache.display());
            ExitCode::SUCCESS
        }
        ToolcacheCommand::Add { tool, path } => match mobius_runner::toolcache::add(&cache, tool, path.as_deref()) {
            Ok(added) => {
                println!("added {tool:?} {} at {}", added.version, added.dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
