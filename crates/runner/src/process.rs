//! Child processes in their own process group: output streamed line by line to a
//! sink, timeouts and cancellation that kill the whole group (TERM, grace, KILL).

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Receives a child's output: complete lines (each ending in `\n`), in chunks.
pub trait OutputSink: Send + 'static {
    fn lines(&mut self, text: &str);
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment of the child.
    pub env: Vec<(String, String)>,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut,
    Cancelled,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// Process groups started for a job, killed when the job ends so nothing is orphaned.
#[derive(Debug, Clone, Default)]
pub struct ProcessGroups {
    groups: Arc<Mutex<Vec<i32>>>,
}

impl ProcessGroups {
    fn add(&self, pgid: i32) {
        if let Ok(mut g) = self.groups.lock() {
            g.push(pgid);
        }
    }

    /// Sends SIGKILL to every group started so far.
    pub fn kill_all(&self) {
        if let Ok(mut groups) = self.groups.lock() {
            for pgid in groups.drain(..) {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
    }
}

/// Starts the process and waits for it, feeding its merged stdout and stderr to `sink`.
pub async fn run<S: OutputSink>(
    spec: &ProcessSpec,
    sink: Arc<Mutex<S>>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    grace: Duration,
    groups: &ProcessGroups,
) -> std::io::Result<Exit> {
    let (reader, writer) = std::io::pipe()?;
    let writer_err = writer.try_clone()?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command.spawn()?;
    // The parent's copies of the pipe's write end went into `command`; drop them so EOF can arrive.
    drop(command);
    let pid = child.id().map(|p| p as i32);
    tracing::debug!(program = %spec.program, cwd = %spec.cwd.display(), pgid = ?pid, "started step process");
    if let Some(pid) = pid {
        groups.add(pid);
    }
    let idle = Arc::new(AtomicBool::new(false));
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let reader_thread = {
        let idle = idle.clone();
        let sink = sink.clone();
        std::thread::spawn(move || {
            read_lines(reader, sink, idle);
            let _ = done_tx.send(());
        })
    };
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending::<()>().await,
        }
    };
    let exit = tokio::select! {
        status = child.wait() => {
            let status = status?;
            match status.code() {
                Some(code) => Exit::Code(code),
                None => Exit::Signal(status.signal().unwrap_or(0)),
            }
        }
        _ = deadline => {
            tracing::debug!(pgid = ?pid, "step timed out; stopping its process group");
            terminate(&mut child, pid, grace).await;
            Exit::TimedOut
        }
        _ = cancel.cancelled() => {
            tracing::debug!(pgid = ?pid, "cancelled; stopping the step's process group");
            terminate(&mut child, pid, grace).await;
            Exit::Cancelled
        }
    };
    // Wait until the reader has seen EOF, or has drained the pipe and is waiting on
    // a background process that still holds it open (that process is killed when the job ends).
    let mut idle_for = 0;
    let finished = loop {
        tokio::select! {
            _ = &mut done_rx => break true,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                if idle.load(Ordering::Acquire) {
                    idle_for += 1;
                    if idle_for >= 4 {
                        break false;
                    }
                } else {
                    idle_for = 0;
                }
            }
        }
    };
    if finished {
        let _ = reader_thread.join();
    }
    Ok(exit)
}

/// SIGTERM to the group, then SIGKILL after the grace period.
async fn terminate(child: &mut tokio::process::Child, pid: Option<i32>, grace: Duration) {
    let Some(pid) = pid else { return };
    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = child.wait().await;
    } else {
        // The leader exited; make sure the rest of its group follows.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn read_lines<S: OutputSink>(mut reader: std::io::PipeReader, sink: Arc<Mutex<S>>, idle: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 256 * 1024];
    // One byte is kept free for the newline added to an unterminated last line.
    let cap = buf.len() - 1;
    let mut filled = 0;
    loop {
        idle.store(true, Ordering::Release);
        let n = match reader.read(&mut buf[filled..cap]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        idle.store(false, Ordering::Release);
        if n == 0 {
            if filled > 0 {
                buf[filled] = b'\n';
                emit(&sink, &buf[..=filled]);
            }
            break;
        }
        filled += n;
        match memchr::memrchr(b'\n', &buf[..filled]) {
            Some(last) => {
                emit(&sink, &buf[..=last]);
                buf.copy_within(last + 1..filled, 0);
                filled -= last + 1;
            }
            None if filled == cap => {
                // A line longer than the buffer: emit what we have as a line of its own.
                buf[filled] = b'\n';
                emit(&sink, &buf[..=filled]);
                filled = 0;
            }
            None => {}
        }
    }
}

fn emit<S: OutputSink>(sink: &Arc<Mutex<S>>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let mut guard = match sink.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard.lines(&text);
}
