//! The job sandbox of `mobius serve`: host jobs run as an unprivileged user inside
//! Linux namespaces where the server's data directory, other jobs' workspaces and
//! other projects' caches do not exist, and the server's processes cannot be seen.
//!
//! No `unsafe` is needed because Mobius re-runs itself as a small helper:
//! - `mobius sandbox-init` (one per job) unshares a mount, PID and IPC namespace,
//!   hides the data directory under an empty tmpfs, binds back only the job's own
//!   directory (read-write) and the run's source snapshot (read-only), and starts
//!   itself again as PID 1 of the new PID namespace, which mounts a fresh `/proc`
//!   and reaps orphans until the job ends;
//! - `mobius sandbox-exec` (one per step) joins that init's namespaces, gives the
//!   job's files to the job user, drops to that user (no new privileges), and runs
//!   the step's program as its child, so processes a step leaves in the background
//!   live on until the job ends, as on GitHub's runners.
//!
//! When any of this cannot be done, the job fails and says why: it never runs
//! unsandboxed.

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{Gid, Uid};
use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The user host jobs run as when the server runs as root.
pub const JOB_USER: &str = "mobius-job";

/// Why a job cannot be sandboxed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot create the job user '{JOB_USER}': {0}")]
    User(String),
    #[error("cannot start the job sandbox: {0}")]
    Start(String),
}

/// How the server sandboxes host jobs: which binary is the helper, what to hide,
/// and which user jobs run as.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The `mobius` binary (its `sandbox-init` and `sandbox-exec` commands).
    pub exe: PathBuf,
    /// Directories that do not exist inside the sandbox (the data directory).
    pub hide: Vec<PathBuf>,
    pub user: JobUser,
}

/// Whom a job runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobUser {
    /// A server running as root switches to the job user.
    Switch { uid: u32, gid: u32 },
    /// A server running as an ordinary user is already unprivileged: jobs run as
    /// that user, inside a user namespace of their own that owns the others.
    Mapped { uid: u32, gid: u32 },
}

impl Sandbox {
    /// The sandbox for this server: as root, the job user (created on first use);
    /// otherwise the server's own user in a user namespace, when this kernel allows
    /// unprivileged ones. Anything else is refused with the reason.
    pub fn for_server(exe: PathBuf, hide: Vec<PathBuf>) -> Result<Sandbox, SandboxError> {
        let me = Uid::effective();
        let user = if me.is_root() {
            let (uid, gid) = job_user()?;
            JobUser::Switch { uid, gid }
        } else {
            JobUser::Mapped { uid: me.as_raw(), gid: nix::unistd::Gid::effective().as_raw() }
        };
        let sandbox = Sandbox { exe, hide, user };
        if let JobUser::Mapped { .. } = user {
            sandbox.probe()?;
        }
        Ok(sandbox)
    }

    /// Starts and stops one sandbox, to learn at once whether this host allows it.
    fn probe(&self) -> Result<(), SandboxError> {
        let dir = std::env::temp_dir().join(format!("mobius-sandbox-probe-{}", std::process::id()));
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| SandboxError::Start(format!("{}: {e}", tmp.display())))?;
        let started = JobSandbox::start(self, &dir, &tmp, &[]).map(drop);
        let _ = std::fs::remove_dir_all(&dir);
        started.map_err(|e| match e {
            SandboxError::Start(why) => SandboxError::Start(format!(
                "{why} (without root, host jobs need unprivileged user namespaces, see README)"
            )),
            other => other,
        })
    }
}

/// The job user's uid and gid, creating the user (system, no home, no shell) when missing.
fn job_user() -> Result<(u32, u32), SandboxError> {
    let lookup = || nix::unistd::User::from_name(JOB_USER).map_err(|e| SandboxError::User(e.to_string()));
    if let Some(user) = lookup()? {
        return Ok((user.uid.as_raw(), user.gid.as_raw()));
    }
    let out = std::process::Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"])
        .args(["--shell", "/usr/sbin/nologin", JOB_USER])
        .output()
        .map_err(|e| SandboxError::User(format!("useradd: {e}")))?;
    // Another server may have created it meanwhile; look again either way.
    match lookup()? {
        Some(user) => Ok((user.uid.as_raw(), user.gid.as_raw())),
        None => Err(SandboxError::User(String::from_utf8_lossy(&out.stderr).trim().to_string())),
    }
}

/// One job's sandbox: its init process, alive while the job runs.
pub(crate) struct JobSandbox {
    init: std::process::Child,
    init_pid: u32,
    sandbox: Sandbox,
    /// The job's own directory, handed to the job user before each step.
    writable: PathBuf,
}

impl JobSandbox {
    /// Starts the job's init: `writable` stays read-write (the job's directory),
    /// `read_only` stays readable (the run's source snapshot); everything else under
    /// the hidden directories is gone.
    pub(crate) fn start(
        sandbox: &Sandbox,
        writable: &Path,
        tmp: &Path,
        read_only: &[PathBuf],
    ) -> Result<JobSandbox, SandboxError> {
        let mut command = std::process::Command::new(&sandbox.exe);
        command.arg("sandbox-init");
        for hide in &sandbox.hide {
            command.arg("--hide").arg(hide);
        }
        command.arg("--rw").arg(writable).arg("--tmp").arg(tmp);
        if let JobUser::Mapped { uid, gid } = sandbox.user {
            command.arg("--map-uid").arg(uid.to_string()).arg("--map-gid").arg(gid.to_string());
        }
        for path in read_only {
            command.arg("--ro").arg(path);
        }
        let mut init = command
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| SandboxError::Start(format!("{}: {e}", sandbox.exe.display())))?;
        let stdout = init.stdout.take().ok_or_else(|| SandboxError::Start("no pipe from the helper".into()))?;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let Some(pid) = line.strip_prefix("ready ").and_then(|p| p.trim().parse::<u32>().ok()) else {
            let _ = init.kill();
            let output = init.wait_with_output().map(|o| o.stderr).unwrap_or_default();
            let why = String::from_utf8_lossy(&output).trim().to_string();
            return Err(SandboxError::Start(if why.is_empty() { "the helper stopped".into() } else { why }));
        };
        Ok(JobSandbox { init, init_pid: pid, sandbox: sandbox.clone(), writable: writable.to_path_buf() })
    }

    /// The step's command, run inside this sandbox as the job user.
    pub(crate) fn wrap(&self, spec: crate::process::ProcessSpec) -> crate::process::ProcessSpec {
        let mut args = vec!["sandbox-exec".to_string(), "--join".into(), self.init_pid.to_string()];
        match self.sandbox.user {
            JobUser::Switch { uid, gid } => args.extend([
                "--uid".into(),
                uid.to_string(),
                "--gid".into(),
                gid.to_string(),
                "--own".into(),
                self.writable.display().to_string(),
            ]),
            JobUser::Mapped { .. } => args.push("--userns".into()),
        }
        args.extend(["--cwd".into(), spec.cwd.display().to_string(), "--".into(), spec.program]);
        args.extend(spec.args);
        crate::process::ProcessSpec {
            program: self.sandbox.exe.display().to_string(),
            args,
            cwd: spec.cwd,
            env: spec.env,
        }
    }
}

impl Drop for JobSandbox {
    fn drop(&mut self) {
        // Closing its stdin ends the init; killing it ends every process of the job.
        drop(self.init.stdin.take());
        let _ = self.init.kill();
        let _ = self.init.wait();
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "mobius sandbox: {message}");
    ExitCode::from(125)
}

/// `mobius sandbox-init`: see the module's documentation. `tmp` becomes the job's
/// private `/tmp`.
///
/// With `map` (the server's uid and gid, when it is not root), a user namespace
/// comes first, mapping that user to root inside it, which owns the others.
pub fn init_main(
    hide: &[PathBuf],
    rw: &[PathBuf],
    ro: &[PathBuf],
    tmp: Option<&Path>,
    map: Option<(u32, u32)>,
    stage2: bool,
) -> ExitCode {
    if stage2 {
        return init_stage2();
    }
    match init_stage1(hide, rw, ro, tmp, map) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn init_stage1(
    hide: &[PathBuf],
    rw: &[PathBuf],
    ro: &[PathBuf],
    tmp: Option<&Path>,
    map: Option<(u32, u32)>,
) -> Result<ExitCode, String> {
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC;
    if map.is_some() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    if let Some((uid, gid)) = map {
        let write = |file: &str, text: String| {
            std::fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("writing {file}: {e}"))
        };
        write("setgroups", "deny".into())?;
        write("uid_map", format!("0 {uid} 1"))?;
        write("gid_map", format!("0 {gid} 1"))?;
    }
    // Nothing mounted here propagates back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("making mounts private: {e}"))?;
    // The kept directories are held open first: the tmpfs hides their paths, and
    // they are bound back from their descriptors (`/proc/self/fd/N`).
    let open = |path: &Path| std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()));
    let kept: Vec<(&PathBuf, bool, std::fs::File)> = rw
        .iter()
        .map(|p| (p, true))
        .chain(ro.iter().map(|p| (p, false)))
        .map(|(p, writable)| open(p).map(|f| (p, writable, f)))
        .collect::<Result<_, _>>()?;
    let by_fd = |file: &std::fs::File| {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    // Its own /tmp: nothing another job left there, nothing it leaves for the next.
    if let Some(tmp) = tmp {
        std::fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        bind(tmp, Path::new("/tmp"))?;
    }
    for dir in hide {
        // Under the new /tmp (a data directory in /tmp), the path is made again first.
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755,size=1m"))
            .map_err(|e| format!("hiding {}: {e}", dir.display()))?;
    }
    // The Docker socket is root on the host: a job never gets it (it builds images
    // through the executor's `mobius/docker-build`). /dev/null is bound over it.
    for socket in docker_sockets() {
        bind(Path::new("/dev/null"), &socket)?;
    }
    for (path, writable, file) in &kept {
        std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        bind(&by_fd(file), path)?;
        if !writable {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
            mount(None::<&str>, path.as_path(), None::<&str>, flags, None::<&str>)
                .map_err(|e| format!("making {} read-only: {e}", path.display()))?;
        }
    }
    drop(kept);
    // The first child is PID 1 of the new PID namespace. The helper's own binary
    // may now be hidden (under the data directory or /tmp): run it through
    // /proc/self/exe, which names the same file whatever its path.
    let mut init = std::process::Command::new("/proc/self/exe")
        .args(["sandbox-init", "--stage2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the sandbox's init: {e}"))?;
    let mut ready = String::new();
    if let Some(out) = init.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut ready);
    }
    if ready.trim() != "ready" {
        let _ = init.kill();
        return Err("the sandbox's init did not start".into());
    }
    println!("ready {}", init.id());
    let _ = std::io::stdout().flush();
    // Until the runner closes our stdin (the job ended, or the runner died).
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    let _ = init.kill();
    let _ = init.wait();
    Ok(ExitCode::SUCCESS)
}

/// The Docker Engine's sockets on this host: the usual paths and `DOCKER_HOST`'s.
fn docker_sockets() -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut paths = vec![PathBuf::from("/run/docker.sock"), PathBuf::from("/var/run/docker.sock")];
    if let Some(path) = std::env::var("DOCKER_HOST").ok().and_then(|h| h.strip_prefix("unix://").map(PathBuf::from)) {
        paths.push(path);
    }
    let mut sockets: Vec<PathBuf> = Vec::new();
    for path in paths {
        let real = std::fs::canonicalize(&path).unwrap_or(path);
        if std::fs::metadata(&real).is_ok_and(|m| m.file_type().is_socket()) && !sockets.contains(&real) {
            sockets.push(real);
        }
    }
    sockets
}

fn bind(from: &Path, to: &Path) -> Result<(), String> {
    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("binding {} to {}: {e}", from.display(), to.display()))
}

/// PID 1 of the job's namespace: a fresh `/proc` (this namespace's processes only),
/// then reaping orphans until stdin closes.
fn init_stage2() -> ExitCode {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>) {
        return fail(format!("mounting /proc: {e}"));
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::spawn(|| loop {
        // Orphans of the job's steps are reparented here; reap them (none yet: wait a little).
        if nix::sys::wait::wait().is_err() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    ExitCode::SUCCESS
}

/// How `sandbox-exec` becomes the job's user.
#[derive(Debug, Clone, Copy)]
pub enum ExecUser {
    /// Switch to this uid and gid (the server runs as root).
    Switch { uid: u32, gid: u32 },
    /// Join the job's user namespace (the server runs as an ordinary user).
    Namespace,
}

/// `mobius sandbox-exec`: see the module's documentation.
pub fn exec_main(join: u32, user: ExecUser, own: &[PathBuf], cwd: &Path, program: &[String]) -> ExitCode {
    match exec(join, user, own, cwd, program) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn exec(join: u32, user: ExecUser, own: &[PathBuf], cwd: &Path, program: &[String]) -> Result<ExitCode, String> {
    let Some((name, args)) = program.split_first() else { return Err("no program to run".into()) };
    let namespace = |kind: &str| {
        std::fs::File::open(format!("/proc/{join}/ns/{kind}")).map_err(|e| format!("the job's {kind} namespace: {e}"))
    };
    let (pid_ns, mnt_ns) = (namespace("pid")?, namespace("mnt")?);
    if let ExecUser::Namespace = user {
        let user_ns = namespace("user")?;
        setns(&user_ns, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("joining the job's user namespace: {e}"))?;
    }
    setns(&pid_ns, CloneFlags::CLONE_NEWPID).map_err(|e| format!("joining the job's PID namespace: {e}"))?;
    setns(&mnt_ns, CloneFlags::CLONE_NEWNS).map_err(|e| format!("joining the job's mount namespace: {e}"))?;
    if let ExecUser::Switch { uid, gid } = user {
        // What the server wrote since the last step (checkout, downloads) becomes the job user's.
        for dir in own {
            give(dir, uid, gid);
        }
    }
    std::env::set_current_dir(cwd).map_err(|e| format!("{}: {e}", cwd.display()))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    if let ExecUser::Switch { uid, gid } = user {
        nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| format!("setgid {gid}: {e}"))?;
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| format!("setuid {uid}: {e}"))?;
    }
    let status = std::process::Command::new(name).args(args).status().map_err(|e| format!("{name}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    })
}

/// Hands every file under `dir` not yet the job user's to it (symlinks themselves),
/// without crossing into other file systems.
fn give(dir: &Path, uid: u32, gid: u32) {
    let Ok(device) = std::fs::symlink_metadata(dir).map(|m| m.dev()) else { return };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.dev() != device {
            continue;
        }
        if meta.uid() != uid || meta.gid() != gid {
            let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
    }
}
