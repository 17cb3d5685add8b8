//! A log line that cannot be written is dropped and counted; serving goes on.

use crate::helpers::{StderrTo, TestApp, spawn_app_with};

const TOKEN: &str = "sg_logging-test-token-0123456789abcdefghijkl";

fn spawn(stderr: StderrTo) -> TestApp {
    let temp = tempfile::tempdir().unwrap();
    let app = spawn_app_with(
        &temp.path().join("data"),
        &[],
        &[("SECRETGEN_BOOTSTRAP_TOKEN", TOKEN)],
        stderr,
    );
    app.keeping(temp)
}

/// Every request logs a line; each of these must still be answered.
fn assert_serves(app: &TestApp) {
    for _ in 0..3 {
        assert_eq!(app.request("GET", "/healthz", None, None).status, 200);
        let read = app.get_generator("OTP_SMS");
        assert_eq!(read.status, 200, "{:?}", read.body);
        let made = app.generate("OTP_SMS", 5);
        assert_eq!(made.status, 200, "{:?}", made.body);
        assert_eq!(made.body["codes"].as_array().unwrap().len(), 5);
    }
}

fn lines_dropped(app: &TestApp) -> u64 {
    let answer = app.request("GET", "/metrics", None, None);
    assert_eq!(answer.status, 200);
    let text = answer.body.as_str().unwrap().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("secretgen_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no secretgen_log_lines_dropped_total in {text}"))
        .parse()
        .unwrap()
}

/// Standard error is a pipe whose reader has gone (a log shipper restarting): every write
/// fails with EPIPE, which must neither kill the process (SIGPIPE) nor panic the request.
#[test]
fn a_closed_log_pipe_drops_lines_and_serving_goes_on() {
    let app = spawn(StderrTo::PipeClosedAfterStart);
    assert_serves(&app);
    assert!(lines_dropped(&app) >= 9);
    // Rust ignores SIGPIPE before `main`, so the writes fail instead of killing the process.
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
        .unwrap();
    assert_ne!(ignored & (1 << (13 - 1)), 0, "SIGPIPE is not ignored");
}

/// A full disk: every write to standard error fails with ENOSPC.
#[test]
fn a_full_disk_drops_log_lines_and_serving_goes_on() {
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let app = spawn(StderrTo::File(full));
    assert_serves(&app);
    assert!(lines_dropped(&app) >= 9);
}

/// Started with standard error closed (`2>&-`): Rust's runtime opens /dev/null in its place
/// before `main` (so no file the server opens later can become descriptor 2 and take log
/// lines); the server serves and its log lines go nowhere.
#[test]
fn a_server_started_with_stderr_closed_serves() {
    let app = spawn(StderrTo::Closed);
    assert_serves(&app);
    let target = std::fs::read_link(format!("/proc/{}/fd/2", app.pid())).unwrap();
    assert_eq!(target, std::path::Path::new("/dev/null"));
    lines_dropped(&app);
}
