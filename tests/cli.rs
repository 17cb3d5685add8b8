//! The `secretgen generate` command, run as a real process.

use std::io::Read;
use std::process::{Command, Output, Stdio};

use secretgen::alphabet::{AMBIGUOUS, DIGITS, SYMBOLS};

fn secretgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secretgen"))
        .args(args)
        // Never a store that happens to be in the working directory: the defaults.
        .env("SECRETGEN_DATA_DIR", "/nonexistent/secretgen-cli-test")
        .output()
        .expect("the binary runs")
}

fn lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn prints_count_codes_of_the_default_configuration() {
    let codes = lines(&secretgen(&["generate", "otp_sms", "--count", "1000"]));
    assert_eq!(codes.len(), 1000);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit()))
    );
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert!(
        distinct.len() > 990,
        "10^8 codes, so 1000 draws barely collide"
    );
}

#[test]
fn one_code_by_default_for_every_spelling_of_the_type() {
    for t in ["SECRET_GENERATOR_TYPE_APP_SECRET", "app_secret", "6"] {
        let codes = lines(&secretgen(&["generate", t]));
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].len(), 64);
        assert!(codes[0].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}

#[test]
fn flags_override_the_configuration_for_one_run() {
    let codes = lines(&secretgen(&[
        "generate",
        "INIT_CODE",
        "--count",
        "300",
        "--length",
        "10",
        "--digits",
        "--symbols",
        "--require-each-class",
        "--exclude-ambiguous",
    ]));
    assert_eq!(codes.len(), 300);
    for code in &codes {
        assert_eq!(code.len(), 10);
        assert!(
            code.chars()
                .all(|c| DIGITS.contains(c) || SYMBOLS.contains(c))
        );
        assert!(code.chars().any(|c| DIGITS.contains(c)));
        assert!(code.chars().any(|c| SYMBOLS.contains(c)));
        assert!(!code.chars().any(|c| AMBIGUOUS.contains(c)));
    }
}

#[test]
fn bad_arguments_give_one_line_and_a_failure() {
    let cases: &[(&[&str], &str)] = &[
        (&["generate", "nope"], "unknown generator type"),
        (&["generate", "UNSPECIFIED"], "UNSPECIFIED"),
        (&["generate", "0"], "UNSPECIFIED"),
        (&["generate", "OTP_SMS", "--count", "0"], "--count"),
        (&["generate", "OTP_SMS", "--count", "many"], "--count"),
        (&["generate", "OTP_SMS", "--length", "5"], "entropyBits"),
        (
            &["generate", "OTP_SMS", "--length", "2000"],
            "length must be between 1 and 1024",
        ),
        (
            &["generate", "APP_SECRET", "--digits", "--length", "30"],
            "at least 128",
        ),
        (&["generate", "OTP_SMS", "--bogus"], "--bogus"),
        (&["generate"], "<TYPE>"),
        (&["launch"], "launch"),
        (&[], "subcommand"),
    ];
    for (args, needle) in cases {
        let out = secretgen(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?} printed codes");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("secretgen: "), "{err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}

#[test]
fn help_succeeds() {
    let out = secretgen(&["generate", "--help"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("--require-each-class")
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_run_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secretgen"))
        .args(["generate", "OTP_SMS", "--count", "1000000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 9 * 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here; the writer must notice and stop.
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    assert!(
        first
            .chunks(9)
            .all(|l| l[..8].iter().all(u8::is_ascii_digit) && l[8] == b'\n')
    );
}

#[test]
fn a_bad_body_timeout_is_one_line_and_exit_2() {
    for value in ["0", "3601", "1.5", "ten", "-1", ""] {
        let out = secretgen(&["serve", &format!("--body-timeout={value}")]);
        assert_eq!(out.status.code(), Some(2), "--body-timeout {value:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{value:?}: {err}");
        assert!(err.contains("--body-timeout"), "{value:?}: {err}");
        if value.is_empty() {
            // An empty variable is as good as none: the server would start.
            continue;
        }
        // The same through the environment.
        let out = Command::new(env!("CARGO_BIN_EXE_secretgen"))
            .arg("serve")
            .env("SECRETGEN_DATA_DIR", "/nonexistent/secretgen-cli-test")
            .env("SECRETGEN_BODY_TIMEOUT", value)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "SECRETGEN_BODY_TIMEOUT={value:?}"
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{value:?}: {err}");
    }
}
