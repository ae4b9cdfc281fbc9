//! Starting and stopping moto server on 127.0.0.1 on a free port. Never by name: by pid.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the emulator could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The install script failed or is missing.
    #[error("installing moto with {script}: {reason}")]
    Install {
        /// The script run.
        script: String,
        /// What went wrong.
        reason: String,
    },
    /// The server did not start or answer.
    #[error("starting moto server: {0}")]
    Start(String),
    /// I/O error around the process.
    #[error("moto server: {0}")]
    Io(#[from] std::io::Error),
}

/// A running moto server.
#[derive(Debug)]
pub struct Emulator {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its process id.
    pub pid: u32,
    /// Stop the server when this value is dropped (tests); `curfew local up` leaves it running.
    pub stop_on_drop: bool,
}

/// Finds the project root (the folder holding `scripts/moto-venv.sh`) from `start` upwards.
pub fn project_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|p| p.join("scripts/moto-venv.sh").is_file())
        .map(Path::to_path_buf)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Emulator {
    /// Installs moto into the project's virtualenv if needed and starts it on a free loopback
    /// port, logging to `log`. Waits until it answers.
    ///
    /// With `die_with` set to a process id, a small shell watchdog stops the server when that
    /// process exits (test binaries, whose statics are never dropped). It uses SIGKILL: the
    /// emulator's state is throwaway, and a graceful exit of a large moto heap takes a minute.
    pub fn start(
        root: &Path,
        log: &Path,
        die_with: Option<u32>,
    ) -> Result<Emulator, EmulatorError> {
        let script = root.join("scripts/moto-venv.sh");
        let out = Command::new(&script)
            .output()
            .map_err(|e| EmulatorError::Install {
                script: script.display().to_string(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(EmulatorError::Install {
                script: script.display().to_string(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let port = free_port()?;
        let server = root.join("scripts/moto_server.py").display().to_string();
        let log_file = File::create(log)?;
        let mut command = match die_with {
            None => {
                let mut c = Command::new(&python);
                c.args([server.as_str(), "127.0.0.1", &port.to_string()]);
                c
            }
            Some(parent) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    r#""$0" "$3" 127.0.0.1 "$1" & m=$!
trap 'kill -9 $m 2>/dev/null; exit 0' TERM INT
while kill -0 "$2" 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done
kill -9 $m 2>/dev/null"#,
                    &python,
                    &port.to_string(),
                    &parent.to_string(),
                    &server,
                ]);
                c
            }
        };
        let child = command
            // Never MOTO_ACCOUNT_ID: it would override the accounts of assumed-role credentials,
            // which is how spoke accounts are told apart.
            .env_remove("MOTO_ACCOUNT_ID")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group: it outlives `curfew local up` and is not hit by the
            // terminal's Ctrl-C meant for a test runner.
            .process_group(0)
            .spawn()?;
        let emulator = Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid: child.id(),
            stop_on_drop: true,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(EmulatorError::Start(format!(
                    "no answer on port {port} after 60s; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(emulator)
    }

    /// Stops the server with SIGTERM by its pid.
    pub fn stop(&self) {
        stop_pid(self.pid);
    }
}

/// Stops a process by id (SIGTERM), ignoring one that is already gone.
pub fn stop_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop();
        }
    }
}
