//! The process helper: `secretgen serve` as a child process on free ports (HTTP and gRPC on
//! 127.0.0.1:0), on an embedded store in a data directory or on a PostgreSQL database. It
//! waits for the `listening on` lines, collects what the server logs, and stops (SIGTERM)
//! or kills it; dropping it kills it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cli::{secretgen, wrapped};

/// Where a server's standard error goes.
pub enum StderrTo {
    /// A pipe the test reads: [`ServerProcess::logs`].
    Collected,
    /// A pipe whose reading end the test closes once the server listens: every later write
    /// fails with EPIPE.
    PipeClosedAfterStart,
    /// The server starts with standard error closed (`2>&-`).
    Closed,
    /// This file (e.g. `/dev/full`).
    File(std::fs::File),
}

/// A `secretgen serve` to start: its command line, environment and standard error.
pub struct Serve {
    command: Command,
    stderr: StderrTo,
    /// The admin token it is given, if any (a first start prints one otherwise).
    bootstrap_token: Option<String>,
    /// Whether it serves gRPC (and so prints a second `listening on` line).
    grpc: bool,
    /// Whether the command line sets `--workers` (two otherwise).
    workers: bool,
}

impl Serve {
    /// `secretgen serve` on the embedded store in `data_dir`.
    pub fn embedded(data_dir: &Path) -> Serve {
        let mut serve = Serve::new();
        serve.command.env("SECRETGEN_DATA_DIR", data_dir);
        serve
    }

    /// `secretgen serve` on the PostgreSQL database at `url`, with the key file every
    /// replica of that database shares ([`key_file_for`]).
    pub fn database(url: &str) -> Serve {
        let keys = key_file_for(url);
        Serve::new().args(&[
            "--database-url",
            url,
            "--verify-key-file",
            keys.to_str().unwrap(),
        ])
    }

    fn new() -> Serve {
        let mut command = secretgen(["serve", "--listen", "127.0.0.1:0"]);
        command
            .env("SECRETGEN_GRPC_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped());
        Serve {
            command,
            stderr: StderrTo::Collected,
            bootstrap_token: None,
            grpc: true,
            workers: false,
        }
    }

    /// More flags (`--grpc-listen off` turns gRPC off; `--workers N` replaces the two
    /// workers a test server has otherwise).
    pub fn args(mut self, args: &[&str]) -> Serve {
        for (i, arg) in args.iter().enumerate() {
            if *arg == "--grpc-listen=off"
                || (*arg == "--grpc-listen" && args.get(i + 1) == Some(&"off"))
            {
                self.grpc = false;
            }
            self.workers |= *arg == "--workers" || arg.starts_with("--workers=");
        }
        self.command.args(args);
        self
    }

    /// An environment variable (`SECRETGEN_GRPC_LISTEN=off` turns gRPC off;
    /// `SECRETGEN_BOOTSTRAP_TOKEN` is the admin token).
    pub fn env(mut self, name: &str, value: &str) -> Serve {
        match name {
            "SECRETGEN_GRPC_LISTEN" => self.grpc = value != "off",
            "SECRETGEN_BOOTSTRAP_TOKEN" => self.bootstrap_token = Some(value.to_owned()),
            _ => {}
        }
        self.command.env(name, value);
        self
    }

    /// Extra environment variables.
    pub fn envs(self, env: &[(&str, &str)]) -> Serve {
        env.iter().fold(self, |serve, (k, v)| serve.env(k, v))
    }

    /// The admin token of a first start, instead of one the server makes and prints.
    pub fn bootstrap_token(self, token: &str) -> Serve {
        self.env("SECRETGEN_BOOTSTRAP_TOKEN", token)
    }

    /// Where standard error goes ([`StderrTo::Collected`] unless told).
    pub fn stderr(mut self, stderr: StderrTo) -> Serve {
        self.stderr = stderr;
        self
    }

    /// Two workers unless the command line sets them.
    fn default_workers(&mut self) {
        if !self.workers {
            self.command.args(["--workers", "2"]);
            self.workers = true;
        }
    }

    /// Starts the server without waiting for it (standard output and error piped).
    pub fn spawn(mut self) -> Child {
        self.default_workers();
        self.command
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts")
    }

    /// Starts the server and waits until it listens; panics with its logs if it stops first.
    pub fn start(mut self) -> ServerProcess {
        self.default_workers();
        let Serve {
            mut command,
            stderr,
            bootstrap_token,
            grpc,
            ..
        } = self;
        let collect = matches!(stderr, StderrTo::Collected);
        match stderr {
            StderrTo::Collected | StderrTo::PipeClosedAfterStart => {
                command.stderr(Stdio::piped());
            }
            StderrTo::File(file) => {
                command.stderr(Stdio::from(file));
            }
            StderrTo::Closed => command = with_stderr_closed(&command),
        }
        let mut child = command.spawn().expect("the server starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (stderr_reader, unread_stderr) = match stderr {
            Some(stderr) if collect => {
                let sink = Arc::clone(&logs);
                let reader = std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        sink.lock().unwrap().push(line);
                    }
                });
                (Some(reader), None)
            }
            other => (None, other),
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut token = bootstrap_token.unwrap_or_default();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(reader) = stderr_reader {
                    let _ = reader.join();
                }
                panic!(
                    "the server stopped before listening: {}",
                    logs.lock().unwrap().join("\n")
                );
            };
            if line.starts_with("sg_") {
                token = line;
            } else if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_owned();
            }
        };
        // gRPC's line follows the HTTP one.
        let grpc = if grpc {
            lines
                .next()
                .and_then(Result::ok)
                .and_then(|line| line.strip_prefix("listening on grpc://").map(str::to_owned))
                .map(|addr| format!("http://{addr}"))
        } else {
            None
        };
        // The only reading end: from here on, the server's writes to standard error fail.
        drop(unread_stderr);
        // Keep reading standard output so that the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            base,
            grpc,
            token,
            child: Some(child),
            stderr_reader,
            logs,
        }
    }
}

/// `command` run by `sh -c 'exec … 2>&-'`: the same process (`exec` keeps the pid), with
/// standard error closed.
fn with_stderr_closed(command: &Command) -> Command {
    let mut sh = wrapped(&["sh", "-c", "exec \"$0\" \"$@\" 2>&-"], command);
    sh.stdout(Stdio::piped()).stderr(Stdio::null());
    sh
}

/// A running `secretgen serve`.
pub struct ServerProcess {
    /// `http://ADDR` (or `https://ADDR` with TLS).
    pub base: String,
    /// The gRPC endpoint, `http://ADDR` (tonic's form), when gRPC is served.
    pub grpc: Option<String>,
    /// The admin token printed on the first start, or given; empty when neither.
    pub token: String,
    /// `None` once it has exited.
    child: Option<Child>,
    /// The thread that collects standard error (with [`StderrTo::Collected`]).
    stderr_reader: Option<JoinHandle<()>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Everything the server logged so far (with [`StderrTo::Collected`]).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait()
    }

    /// Waits up to 40 s for the server to exit (after a signal); returns its exit status.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().unwrap();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A key file for issued codes that every replica of the database at `url` shares: its key
/// derived from the URL (each test makes a database of its own), written once, atomically.
pub fn key_file_for(url: &str) -> std::path::PathBuf {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let path = std::env::temp_dir().join(format!("secretgen-test-{name}.key"));
    if !path.exists() {
        let text = format!(
            "t1:{}\n",
            base64::engine::general_purpose::STANDARD.encode(digest)
        );
        // A scratch file of this call's own: replicas started together from several
        // threads of one test write it at the same time.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
        std::fs::write(&scratch, text).unwrap();
        std::fs::rename(&scratch, &path).unwrap();
    }
    path
}
