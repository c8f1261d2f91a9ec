//! The local process runtime: `sh -c` in the unpacked release, in its own process group,
//! output appended to a log file (a pipe would break if the agent went away).

use super::{InstanceSpec, RunningInstance, Runtime, RuntimeError, Started};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Runs instances as child processes of the agent.
#[derive(Debug, Default)]
pub struct ProcessRuntime;

/// A port that was free a moment ago. The instance binds it itself, so another
/// process could take it in between; its health check would then fail.
pub fn free_port() -> Result<u16, RuntimeError> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").map_err(RuntimeError::Port)?;
    Ok(socket.local_addr().map_err(RuntimeError::Port)?.port())
}

#[async_trait::async_trait]
impl Runtime for ProcessRuntime {
    async fn start(
        &self,
        spec: &InstanceSpec,
        port: u16,
        log: &Path,
    ) -> Result<Box<dyn RunningInstance>, RuntimeError> {
        let dir = match &spec.workdir {
            Some(sub) => spec.dir.join(sub),
            None => spec.dir.clone(),
        };
        let command = spec.run.replace("{port}", &port.to_string());
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| RuntimeError::Log { path: log.display().to_string(), source })
        };
        let (stdout, stderr) = (open()?, open()?);
        let child = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(&dir)
            .envs(&spec.env)
            .env("PORT", port.to_string())
            .env("MOBIUS_SERVICE", &spec.service)
            .env("MOBIUS_VERSION", &spec.version)
            .env("MOBIUS_INSTANCE", &spec.id)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                command: command.clone(),
                dir: dir.display().to_string(),
                source,
            })?;
        let pid = child.id().unwrap_or_default();
        Ok(Box::new(ProcessInstance {
            child,
            started: Started { pid, addr: SocketAddr::from(([127, 0, 0, 1], port)) },
        }))
    }
}

#[derive(Debug)]
struct ProcessInstance {
    child: Child,
    started: Started,
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "exited".to_string(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

#[async_trait::async_trait]
impl RunningInstance for ProcessInstance {
    fn started(&self) -> &Started {
        &self.started
    }

    async fn wait(&mut self) -> String {
        describe(self.child.wait().await)
    }

    async fn stop(&mut self, grace: Duration) -> String {
        let group = Pid::from_raw(i32::try_from(self.started.pid).unwrap_or(i32::MAX));
        let _ = killpg(group, Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                // The shell is gone; anything it left in the group goes too.
                let _ = killpg(group, Signal::SIGKILL);
                describe(status)
            }
            Err(_) => {
                let _ = killpg(group, Signal::SIGKILL);
                format!("{} after the {} ms grace period", describe(self.child.wait().await), grace.as_millis())
            }
        }
    }
}
