//! The command line as the tests run it: one runner, [`secretgen`], and the two ways a run
//! can end that the tests read ([`stdout`] of a success, [`refusal`] of a failure).

use std::ffi::OsStr;
use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_secretgen");

/// A data directory that does not exist, for a command that must not find a store.
pub const NO_DATA_DIR: &str = "/nonexistent/secretgen-test";

/// `secretgen ARGS`, with none of the test runner's `SECRETGEN_*` variables (a developer's
/// `SECRETGEN_DATABASE_URL` must not reach a test) and `SECRETGEN_DATA_DIR` at
/// [`NO_DATA_DIR`]: without it the command would use `./data`, the repository's own folder.
/// A test gives the store it means with `SECRETGEN_DATA_DIR`, `--data-dir` or
/// `--database-url`.
pub fn secretgen<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SECRETGEN_") {
            command.env_remove(name);
        }
    }
    command.env("SECRETGEN_DATA_DIR", NO_DATA_DIR).args(args);
    command
}

/// `command` run through `wrapper` (`setpriv …`, `sh -c …`): `wrapper`, then `command`'s
/// program and arguments, with `command`'s environment.
pub fn wrapped(wrapper: &[&str], command: &Command) -> Command {
    let mut outer = Command::new(wrapper[0]);
    outer
        .args(&wrapper[1..])
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    outer
}

/// `secretgen ARGS` (see [`secretgen`]), run to its end.
pub fn output<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    run(&mut secretgen(args))
}

/// Runs `command` to its end.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

/// The standard output of a run that must succeed.
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 on standard output")
}

/// The reason of a run that must fail: nothing on standard output, one line on standard
/// error that starts with `secretgen: `, and no panic.
pub fn refusal(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    assert!(
        out.stdout.is_empty(),
        "a refusal printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8(out.stderr.clone()).expect("UTF-8 on standard error");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("secretgen: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}
