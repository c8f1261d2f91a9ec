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
    /// Not root: map this uid to root in a user namespace first.
    #[arg(long = "map-uid", requires = "map_gid")]
    map_uid: Option<u32>,
    #[arg(long = "map-gid", requires = "map_uid")]
    map_gid: Option<u32>,
    /// The second stage: PID 1 of the new PID namespace.
    #[arg(long = "stage2")]
    stage2: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The host PID of the job's init, whose namespaces the step joins.
    #[arg(long = "join")]
    join: u32,
    /// The job user to switch to (the server runs as root).
    #[arg(long = "uid", requires = "gid", conflicts_with = "userns")]
    uid: Option<u32>,
    #[arg(long = "gid", requires = "uid")]
    gid: Option<u32>,
    /// Join the job's user namespace instead (the server runs as an ordinary user).
    #[arg(long = "userns")]
    userns: bool,
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
    let map = args.map_uid.zip(args.map_gid);
    mobius_runner::sandbox::init_main(&args.hide, &args.rw, &args.ro, args.tmp.as_deref(), map, args.stage2)
}

pub fn exec(args: ExecArgs) -> ExitCode {
    use mobius_runner::sandbox::ExecUser;
    let user = match (args.uid.zip(args.gid), args.userns) {
        (Some((uid, gid)), false) => ExecUser::Switch { uid, gid },
        (None, true) => ExecUser::Namespace,
        _ => {
            eprintln!("mobius sandbox-exec: give --uid and --gid, or --userns");
            return ExitCode::from(125);
        }
    };
    mobius_runner::sandbox::exec_main(args.join, user, &args.own, &args.cwd, &args.program)
}
