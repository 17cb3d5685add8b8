//! The `secretgen generate` command, run as a real process.

use std::io::Read;
use std::process::{Output, Stdio};

use crate::common::cli::{output, refusal, run, secretgen, stdout};
use secretgen::alphabet::{AMBIGUOUS, DIGITS, SYMBOLS};

/// The lines of a run that must succeed and say nothing on standard error.
fn lines(out: &Output) -> Vec<String> {
    let text = stdout(out);
    assert!(out.stderr.is_empty());
    text.lines().map(str::to_owned).collect()
}

#[test]
fn prints_count_codes_of_the_default_configuration() {
    let codes = lines(&output(["generate", "otp_sms", "--count", "1000"]));
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
        let codes = lines(&output(["generate", t]));
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].len(), 64);
        assert!(codes[0].bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}

#[test]
fn flags_override_the_configuration_for_one_run() {
    let codes = lines(&output([
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
        let err = refusal(&output(*args));
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}

#[test]
fn help_succeeds() {
    let help = stdout(&output(["generate", "--help"]));
    assert!(help.contains("--require-each-class"));
}

#[test]
fn a_reader_that_stops_early_ends_the_run_quietly() {
    let mut child = secretgen(["generate", "OTP_SMS", "--count", "1000000000000"])
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
        let out = output(["serve", &format!("--body-timeout={value}")]);
        assert_eq!(out.status.code(), Some(2), "--body-timeout {value:?}");
        let err = refusal(&out);
        assert!(err.contains("--body-timeout"), "{value:?}: {err}");
        if value.is_empty() {
            // An empty variable is as good as none: the server would start.
            continue;
        }
        // The same through the environment.
        let out = run(secretgen(["serve"]).env("SECRETGEN_BODY_TIMEOUT", value));
        assert_eq!(
            out.status.code(),
            Some(2),
            "SECRETGEN_BODY_TIMEOUT={value:?}"
        );
        refusal(&out);
    }
}
