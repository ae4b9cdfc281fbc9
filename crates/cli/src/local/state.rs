//! What `curfew local up` leaves behind for later commands: the emulator's pid, its log and
//! the shell exports, in `.curfew/local/` (or `CURFEW_LOCAL_DIR`).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The state folder.
pub struct LocalState {
    dir: PathBuf,
}

/// Whether the recorded emulator is running.
pub enum Status {
    /// Nothing recorded, or the recorded process is gone.
    Stopped,
    /// Running and answering on its endpoint.
    Running {
        /// Its pid.
        pid: u32,
        /// The exports `local up` printed.
        exports: String,
    },
    /// The recorded moto process exists but does not answer.
    Unresponsive {
        /// Its pid.
        pid: u32,
    },
}

impl LocalState {
    /// The state in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        LocalState { dir }
    }

    /// The emulator's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("moto.log")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("pid")
    }

    fn env_path(&self) -> PathBuf {
        self.dir.join("env")
    }

    /// Records a running emulator.
    pub fn record(&self, pid: u32, exports: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        std::fs::write(self.env_path(), exports)
            .with_context(|| format!("writing {}", self.env_path().display()))?;
        std::fs::write(self.pid_path(), format!("{pid}\n"))
            .with_context(|| format!("writing {}", self.pid_path().display()))
    }

    /// Removes the state folder (nothing to remove is fine).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.dir.display()))
            }
            _ => Ok(()),
        }
    }

    /// The pid `local up` recorded, running or not.
    pub fn recorded_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
    }

    /// The recorded emulator's status.
    pub fn status(&self) -> Status {
        let Some(pid) = self.recorded_pid() else {
            return Status::Stopped;
        };
        if !alive(pid) || !is_moto(pid) {
            return Status::Stopped;
        }
        let exports = std::fs::read_to_string(self.env_path()).unwrap_or_default();
        if answers(&exports) {
            Status::Running { pid, exports }
        } else {
            Status::Unresponsive { pid }
        }
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// True while a process with this pid exists.
fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The process's arguments (empty when it is gone): from /proc where there is one, else `ps`.
fn command_line(pid: u32) -> Vec<String> {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => raw
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
        Err(_) if Path::new("/proc/self").exists() => Vec::new(),
        Err(_) => Command::new("ps")
            .args(["-o", "args=", "-p", &pid.to_string()])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Guards against a recycled pid: the process must be the moto server `local up` started.
fn is_moto(pid: u32) -> bool {
    command_line(pid)
        .iter()
        .any(|arg| arg.ends_with("moto_server.py"))
}

/// Guards against a recycled pid: the process must be a `curfew local run`.
pub fn is_poller(pid: u32) -> bool {
    let args = command_line(pid);
    // Not `ends_with`: after a rebuild the running binary's path reads `... (deleted)`.
    args.first().is_some_and(|exe| exe.contains("curfew"))
        && args.get(1..3) == Some(&["local".to_string(), "run".to_string()][..])
}

/// True when the exported endpoint accepts a connection.
fn answers(exports: &str) -> bool {
    let Some(endpoint) = exports
        .lines()
        .find_map(|l| l.strip_prefix("export AWS_ENDPOINT_URL="))
    else {
        return false;
    };
    let address = endpoint.trim().trim_start_matches("http://");
    address
        .parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// Stops the emulator by pid: SIGTERM, then SIGKILL if it is still there after 10 seconds.
/// A pid that is no longer a moto server (reused since) is left alone: returns false.
pub fn stop(pid: u32) -> bool {
    if !is_moto(pid) {
        return false;
    }
    curfew_aws::local::emulator::stop_pid(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && is_moto(pid) {
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
