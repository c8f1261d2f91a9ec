//! `mobius sandbox-init` and `mobius sandbox-exec`: the helper that `mobius serve`
//! runs to sandbox host jobs (see `mobius_runner::sandbox`). Hidden from `--help`.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A directory that does not exist inside the sandbox (an empty tmpfs instead).
    #[arg(long = "hide")]
    hide: Vec<PathBuf>,
    /// A directory under a hidden one that stays, read-write.
    #[arg(long = "rw")]
    rw: Vec<PathBuf>,
    /// A directory under a hidden one that stays, read-only.
    #[arg(long = "ro")]
    ro: Vec<PathBuf>,
    /// The directory that becomes the sandbox's `/tmp`.
    #[arg(long = "tmp")]
    tmp: Option<PathBuf>,
    /// The second stage: PID 1 of the new PID namespace.
    #[arg(long = "stage2")]
    stage2: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The host PID of the job's init, whose namespaces the step joins.
    #[arg(long = "join")]
    join: u32,
    #[arg(long = "uid")]
    uid: u32,
    #[arg(long = "gid")]
    gid: u32,
    /// A directory whose files are given to the job user before the step.
    #[arg(long = "own")]
    own: Vec<PathBuf>,
    #[arg(long = "cwd")]
    cwd: PathBuf,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    program: Vec<String>,
}

pub fn init(args: InitArgs) -> ExitCode {
    mobius_runner::sandbox::init_main(&args.hide, &args.rw, &args.ro, args.tmp.as_deref(), args.stage2)
}

pub fn exec(args: ExecArgs) -> ExitCode {
    mobius_runner::sandbox::exec_main(args.join, args.uid, args.gid, &args.own, &args.cwd, &args.program)
}
