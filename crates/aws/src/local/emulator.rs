//! Starting and stopping moto server on 127.0.0.1 on a free port. Never by name: by pid.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
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
    /// Its process id: the watchdog that stops the server with its parent process, when it has
    /// one; else the server's.
    pub pid: u32,
    /// The moto server's own process id (what its CPU time is read from).
    pub server_pid: u32,
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

/// The environment variable naming a moto zygote's Unix socket (`scripts/moto_server.py
/// --zygote`, started by `scripts/with-moto-zygote.sh` for `make test`).
pub const ZYGOTE_ENV: &str = "CURFEW_MOTO_ZYGOTE";

/// Asks the zygote listening on `socket` to fork a server on 127.0.0.1:`port` logging to
/// `log`; the server's process id.
fn fork_from_zygote(socket: &Path, port: u16, log: &Path) -> std::io::Result<u32> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    writeln!(stream, "127.0.0.1\t{port}\t{}", log.display())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    answer.trim().parse().map_err(|_| {
        std::io::Error::other(format!("answered {:?}, not a process id", answer.trim()))
    })
}

/// A shell watchdog that kills `server` (SIGKILL) once `parent` has exited, or when the
/// watchdog itself is told to stop; its process id.
fn watch(server: u32, parent: u32) -> std::io::Result<u32> {
    let child = Command::new("sh")
        .args([
            "-c",
            r#"trap 'kill -9 "$0" 2>/dev/null; exit 0' TERM INT
while kill -0 "$1" 2>/dev/null && kill -0 "$0" 2>/dev/null; do sleep 1; done
kill -9 "$0" 2>/dev/null"#,
            &server.to_string(),
            &parent.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(child.id())
}

/// Installs moto if needed and starts a server of its own on `port`; its process id.
fn spawn(root: &Path, log: &Path, port: u16) -> Result<u32, EmulatorError> {
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
    let log_file = File::create(log)?;
    let child = Command::new(&python)
        .arg(root.join("scripts/moto_server.py"))
        .args(["127.0.0.1", &port.to_string()])
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
    Ok(child.id())
}

impl Emulator {
    /// Installs moto into the project's virtualenv if needed and starts it on a free loopback
    /// port, logging to `log`. Waits until it answers.
    ///
    /// With `die_with` set to a process id, a small shell watchdog stops the server when that
    /// process exits (test binaries, whose statics are never dropped). It uses SIGKILL: the
    /// emulator's state is throwaway, and a graceful exit of a large moto heap takes a minute.
    ///
    /// Where [`ZYGOTE_ENV`] names a moto zygote's socket (`make test`), the server is forked
    /// from it, ready in a fraction of the time; if the zygote does not answer, it is started
    /// afresh as without one.
    pub fn start(
        root: &Path,
        log: &Path,
        die_with: Option<u32>,
    ) -> Result<Emulator, EmulatorError> {
        let zygote = std::env::var_os(ZYGOTE_ENV).map(PathBuf::from);
        Emulator::start_from(root, log, die_with, zygote.as_deref())
    }

    /// [`Emulator::start`] with the zygote's socket given (`None`: moto starts afresh).
    pub fn start_from(
        root: &Path,
        log: &Path,
        die_with: Option<u32>,
        zygote: Option<&Path>,
    ) -> Result<Emulator, EmulatorError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let port = free_port()?;
        let log = std::path::absolute(log)?;
        let log = log.as_path();
        let forked = zygote.and_then(|socket| {
            fork_from_zygote(socket, port, log)
                .map_err(|e| {
                    eprintln!(
                        "moto zygote {}: {e}; starting moto afresh",
                        socket.display()
                    )
                })
                .ok()
        });
        let server = match forked {
            Some(server) => server,
            None => spawn(root, log, port)?,
        };
        let pid = match die_with {
            None => server,
            Some(parent) => watch(server, parent)?,
        };
        let emulator = Emulator {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid,
            server_pid: server,
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
            std::thread::sleep(Duration::from_millis(25));
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The parent of a running process, from `/proc`.
    fn parent_of(pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    fn gone(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// A DynamoDB ListTables over plain HTTP: moto answers it without checking signatures.
    fn list_tables(endpoint: &str) -> String {
        let address = endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        let body = "{}";
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {address}\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Content-Type: application/x-amz-json-1.0\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=x/20270101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, \
             Signature=x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("curfew-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn root() -> PathBuf {
        project_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("the project root")
    }

    #[test]
    fn a_server_forked_from_the_zygote_answers_and_stops_by_its_own_pid() {
        let root = root();
        let scratch = Scratch::new("zygote");
        let python = Command::new(root.join("scripts/moto-venv.sh"))
            .output()
            .expect("moto installed");
        let socket = scratch.0.join("zygote.sock");
        let mut zygote = Command::new(String::from_utf8_lossy(&python.stdout).trim())
            .arg(root.join("scripts/moto_server.py"))
            .arg("--zygote")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the zygote listens within a minute"
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        let first = Emulator::start_from(&root, &scratch.0.join("a.log"), None, Some(&socket))
            .expect("forked");
        let second = Emulator::start_from(&root, &scratch.0.join("b.log"), None, Some(&socket))
            .expect("forked");
        for emulator in [&first, &second] {
            assert_eq!(
                parent_of(emulator.pid),
                Some(zygote.id()),
                "forked by the zygote"
            );
            let answer = list_tables(&emulator.endpoint);
            assert!(answer.contains("\"TableNames\": []"), "{answer}");
        }
        first.stop();
        assert!(gone(first.pid), "stopped by its pid, and reaped");
        assert!(
            list_tables(&second.endpoint).contains("TableNames"),
            "the other server still answers"
        );
        second.stop();
        assert!(gone(second.pid));
        zygote.kill().unwrap();
        zygote.wait().unwrap();
    }

    #[test]
    fn without_a_zygote_answering_moto_starts_afresh() {
        let root = root();
        let scratch = Scratch::new("no-zygote");
        let missing = scratch.0.join("no.sock");
        let emulator =
            Emulator::start_from(&root, &scratch.0.join("moto.log"), None, Some(&missing))
                .expect("started afresh");
        assert_eq!(parent_of(emulator.pid), Some(std::process::id()));
        assert!(list_tables(&emulator.endpoint).contains("TableNames"));
        emulator.stop();
    }
}
