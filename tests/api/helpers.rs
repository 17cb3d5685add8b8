//! Two kinds of test server, both on port 0 with a fresh data directory, and one typed
//! helper per endpoint that works with either:
//!
//! - `spawn_app()` / `spawn_app_configured(..)`: the library's `Application` on a thread of
//!   the test process, in its own actix system (zero2prod's `spawn_app`). Every test of what
//!   the API answers uses it.
//! - `spawn_app_process()` / `spawn_app_in(..)` / `spawn_app_with(..)`: the real
//!   `secretgen serve` as a child process, for what only a process has: its command line and
//!   environment, its log lines on standard error, signals, being killed or restarted, the
//!   data directory's lock against a second process.
//!
//! The process is `common::server`'s and the client `common::http`'s, as in every test
//! binary that starts a server; what is here is the in-process server and the endpoints.
//!
//! The in-process server installs no tracing subscriber (the binary's `cli` does, not
//! `Application::build`) and reads no environment variable: it logs nothing, and
//! [`TestApp::logs`] refuses to answer for it rather than answer "nothing logged".

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use secretgen::server::{Application, DEFAULT_MAX_CONNECTIONS, Settings, StoreSettings};
use serde_json::Value;

use crate::common::cli::{run, secretgen, stdout};
pub use crate::common::http::Answer;
use crate::common::http::Client;
pub use crate::common::server::StderrTo;
use crate::common::server::{Serve, ServerProcess};

/// A running server.
pub struct TestApp {
    pub base: String,
    /// The gRPC endpoint, `http://ADDR` (tonic's form), when gRPC is served.
    pub grpc: Option<String>,
    /// The admin token printed on the first start (or given).
    pub token: String,
    pub data_dir: PathBuf,
    server: Server,
    client: Client,
    /// Whether dropping the app runs `secretgen check` on its store (see [`Drop`]).
    check_on_drop: bool,
    _temp: Option<tempfile::TempDir>,
}

/// Where a test's server runs.
enum Server {
    /// `secretgen serve`, a child process.
    Process(ServerProcess),
    /// `Application` serving on its own thread, in its own actix system, until stopped
    /// through `handle` (`thread` is `None` once joined).
    InProcess {
        handle: ServerHandle,
        thread: Option<JoinHandle<std::io::Result<()>>>,
    },
}

/// The server in this process, with what `secretgen serve` uses when given no option but
/// `--listen 127.0.0.1:0 --workers 2` (as [`spawn_app_process`]'s).
pub fn spawn_app() -> TestApp {
    spawn_app_configured(|_| {})
}

/// The server in this process, with `configure`'s changes to [`spawn_app`]'s settings.
pub fn spawn_app_configured(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut settings = Settings {
        listen: "127.0.0.1:0".to_owned(),
        grpc_listen: Some("127.0.0.1:0".to_owned()),
        store: StoreSettings::Embedded(data_dir.clone()),
        instance_id: None,
        bootstrap_token: None,
        workers: Some(2),
        rate_limit: None,
        tls: None,
        metrics: true,
        // `serve`'s default (`--body-timeout`); the test of the timeout runs `serve`.
        body_timeout: Duration::from_secs(10),
        max_connections: NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS).unwrap(),
        timeouts: secretgen::net::conn::Timeouts::default(),
        codes: secretgen::server::CodeKeys::default(),
    };
    configure(&mut settings);
    // `Application::build` must run inside an actix system: the server's thread builds it
    // and sends back what the test needs, or why it could not start.
    let (started, start) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("test-server".to_owned())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let mut app = match Application::build(settings) {
                    Ok(app) => app,
                    Err(e) => {
                        let _ = started.send(Err(e.to_string()));
                        return Ok(());
                    }
                };
                let token = app
                    .take_new_admin_token()
                    .map(|t| t.expose().to_owned())
                    .unwrap_or_default();
                let grpc = app.grpc_addr().map(|addr| format!("http://{addr}"));
                let _ = started.send(Ok((app.url(), grpc, token, app.handle())));
                app.run_until_stopped().await
            })
        })
        .expect("a thread for the server");
    let (base, grpc, token, handle) = match start.recv() {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => panic!("the server did not start: {e}"),
        Err(_) => {
            let panic = thread
                .join()
                .expect_err("a server thread that sent nothing panicked");
            std::panic::resume_unwind(panic)
        }
    };
    TestApp {
        client: Client::new(&base),
        base,
        grpc,
        token,
        data_dir,
        server: Server::InProcess {
            handle,
            thread: Some(thread),
        },
        check_on_drop: true,
        _temp: Some(temp),
    }
}

/// `secretgen serve` as a child process (see [`spawn_app_with`]) with a fresh data
/// directory: for a test that needs the process (its logs, a signal, a restart).
pub fn spawn_app_process() -> TestApp {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    spawn_app_in(&dir, &[]).keeping(temp)
}

/// A server on `data_dir`, with extra environment variables.
pub fn spawn_app_in(data_dir: &Path, env: &[(&str, &str)]) -> TestApp {
    spawn_app_with(data_dir, &[], env, StderrTo::Collected)
}

/// A server on `data_dir`, with extra `serve` flags, extra environment variables and its
/// standard error sent to `stderr`.
pub fn spawn_app_with(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stderr: StderrTo,
) -> TestApp {
    let process = Serve::embedded(data_dir)
        .args(args)
        .envs(env)
        .stderr(stderr)
        .start();
    TestApp {
        client: Client::new(&process.base),
        base: process.base.clone(),
        grpc: process.grpc.clone(),
        token: process.token.clone(),
        data_dir: data_dir.to_owned(),
        server: Server::Process(process),
        check_on_drop: true,
        _temp: None,
    }
}

/// Starts `secretgen serve` without waiting for it.
pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Child {
    Serve::embedded(data_dir).envs(env).spawn()
}

impl TestApp {
    /// The same server through another client (one that trusts a test CA, say).
    pub fn with_agent(mut self, agent: ureq::Agent) -> TestApp {
        self.client = self.client.with_agent(agent);
        self
    }

    pub fn url(&self, path: &str) -> String {
        self.client.url(path)
    }

    /// Any request: `method`, `path`, an optional token and an optional raw body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        self.client.request(method, path, token, body)
    }

    /// [`TestApp::request`], giving back transport errors (a stopped server) instead of
    /// panicking.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<Answer, ureq::Error> {
        self.client.try_request(method, path, token, body)
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        self.base
            .strip_prefix("http://")
            .or_else(|| self.base.strip_prefix("https://"))
            .unwrap()
    }

    /// A raw HTTP/1.1 exchange on a new connection: sends `request` as is and reads until
    /// the server closes the connection (send `Connection: close`) or 10 s pass. Returns the
    /// bytes read, whether the server closed the connection, and how long it took.
    pub fn raw(&self, request: &[u8]) -> (Vec<u8>, bool, Duration) {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(self.addr()).unwrap();
        stream.write_all(request).unwrap();
        read_until_closed(&mut stream, Duration::from_secs(10))
    }

    pub fn get_generator(&self, t: &str) -> Answer {
        self.request(
            "GET",
            &format!("/admin/v1/secretgenerators/{t}"),
            Some(&self.token),
            None,
        )
    }

    /// `POST /admin/v1/secretgenerators/{t}/_preview` with `body`, as `token`.
    pub fn preview(&self, t: &str, token: &str, body: &Value) -> Answer {
        self.request(
            "POST",
            &format!("/admin/v1/secretgenerators/{t}/_preview"),
            Some(token),
            Some(&body.to_string()),
        )
    }

    pub fn put_generator(&self, t: &str, body: &Value) -> Answer {
        self.request(
            "PUT",
            &format!("/admin/v1/secretgenerators/{t}"),
            Some(&self.token),
            Some(&body.to_string()),
        )
    }

    pub fn search(&self, body: &Value) -> Answer {
        self.request(
            "POST",
            "/admin/v1/secretgenerators/_search",
            Some(&self.token),
            Some(&body.to_string()),
        )
    }

    pub fn generate(&self, t: &str, count: u32) -> Answer {
        self.request(
            "POST",
            &format!("/v1/codes/{t}/_generate"),
            Some(&self.token),
            Some(&format!("{{\"count\": {count}}}")),
        )
    }

    /// `POST /v1/codes/{t}/_issue` for `subject`, as `token`.
    pub fn issue(&self, t: &str, token: &str, subject: &str) -> Answer {
        self.request(
            "POST",
            &format!("/v1/codes/{t}/_issue"),
            Some(token),
            Some(&serde_json::json!({ "subject": subject }).to_string()),
        )
    }

    /// `POST /v1/codes/{t}/_verify` of `code` for `subject`, as `token`.
    pub fn verify(&self, t: &str, token: &str, subject: &str, code: &str) -> Answer {
        self.request(
            "POST",
            &format!("/v1/codes/{t}/_verify"),
            Some(token),
            Some(&serde_json::json!({ "subject": subject, "code": code }).to_string()),
        )
    }

    /// The status of a `_generate` of one OTP_SMS code with `token`.
    pub fn generate_with(&self, token: &str) -> u16 {
        self.request(
            "POST",
            "/v1/codes/OTP_SMS/_generate",
            Some(token),
            Some("{}"),
        )
        .status
    }

    /// A new token with `permissions`, made by `secretgen token create` beside the server.
    pub fn create_token(&self, name: &str, permissions: &str) -> String {
        let out = self.command(&[
            "token",
            "create",
            "--name",
            name,
            "--permissions",
            permissions,
        ]);
        stdout(&out).trim_end().to_owned()
    }

    /// `secretgen ARGS` on the server's store, beside it, run to its end.
    pub fn command(&self, args: &[&str]) -> Output {
        run(secretgen(args).env("SECRETGEN_DATA_DIR", &self.data_dir))
    }

    /// Everything the server logged so far. Only a server process logs (to standard error,
    /// collected): an in-process app refuses, so that no test reads "nothing logged" there.
    pub fn logs(&self) -> String {
        self.process().logs()
    }

    /// The server process of a process app; panics for an in-process one.
    fn process(&self) -> &ServerProcess {
        match &self.server {
            Server::Process(process) => process,
            Server::InProcess { .. } => {
                panic!("an in-process server has no process of its own: spawn the process")
            }
        }
    }

    fn process_mut(&mut self) -> &mut ServerProcess {
        match &mut self.server {
            Server::Process(process) => process,
            Server::InProcess { .. } => {
                panic!("an in-process server has no process of its own: spawn the process")
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process().pid()
    }

    /// Sends SIGTERM and waits for the server to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.process_mut().stop()
    }

    /// Waits for the server to exit (after a signal); returns its exit status.
    pub fn wait(&mut self) -> ExitStatus {
        self.process_mut().wait()
    }
}

impl TestApp {
    /// Keeps `temp` (which holds the data directory) until the app is dropped and its store
    /// checked.
    pub fn keeping(mut self, temp: tempfile::TempDir) -> TestApp {
        self._temp = Some(temp);
        self
    }

    /// The test damages the store on purpose: dropping the app does not check it.
    pub fn leaves_a_damaged_store(&mut self) {
        self.check_on_drop = false;
    }
}

/// Stops the server (a process with SIGKILL, an in-process one without waiting for the
/// requests in flight), then checks that `secretgen check` finds its store whole: every
/// store a test leaves behind, killed or stopped, must be.
impl Drop for TestApp {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Process(process) => process.kill(),
            Server::InProcess { handle, thread } => {
                // The command is sent at once; the thread's end says that it was obeyed.
                drop(handle.stop(false));
                if let Some(thread) = thread.take() {
                    let result = thread.join();
                    if !std::thread::panicking() {
                        match result {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => panic!("the in-process server failed: {e}"),
                            Err(panic) => std::panic::resume_unwind(panic),
                        }
                    }
                }
            }
        }
        if self.check_on_drop && !std::thread::panicking() {
            crate::common::assert_check_passes(&self.data_dir);
        }
    }
}

/// The field names of a 400's field violations.
pub fn violated_fields(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    assert_error_shape(answer, 3);
    answer.body["details"][0]["fieldViolations"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| v["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The SPEC's one error body, with gRPC code `code`.
pub fn assert_error_shape(answer: &Answer, code: u64) {
    let body = answer
        .body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {:?}", answer.body));
    assert_eq!(body.len(), 3, "{body:?}");
    assert_eq!(body["code"], code, "{body:?}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body:?}"
    );
    assert!(body["details"].is_array(), "{body:?}");
    for detail in body["details"].as_array().unwrap() {
        assert_eq!(detail["@type"], "type.googleapis.com/google.rpc.BadRequest");
    }
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
}

/// Reads `stream` until the peer closes it (or resets it) or `limit` passes. Returns the
/// bytes read, whether the peer closed the connection, and the time it took.
pub fn read_until_closed(
    stream: &mut std::net::TcpStream,
    limit: Duration,
) -> (Vec<u8>, bool, Duration) {
    use std::io::Read;
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (got, false, start.elapsed());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true, start.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (got, false, start.elapsed());
            }
            // A reset after the answer: the server closed a connection with unread input.
            Err(_) => return (got, true, start.elapsed()),
        }
    }
}

/// A raw HTTP/1.1 response: status, headers (names in lower case) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses the first response in `bytes`.
    pub fn parse(bytes: &[u8]) -> RawResponse {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete response head: {text:?}"));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        RawResponse {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    /// The value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as an [`Answer`], to check its error shape.
    pub fn answer(&self) -> Answer {
        Answer {
            status: self.status,
            body: serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body))
            }),
            allow: self.header("allow").map(str::to_owned),
            content_type: self.header("content-type").map(str::to_owned),
            retry_after: self.header("retry-after").map(str::to_owned),
            cache_control: self.header("cache-control").map(str::to_owned),
        }
    }
}
