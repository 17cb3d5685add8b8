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

/// `ARGS` with alnum8 codes (8 of the 62 characters `A-Za-z0-9`): 65,536 / 9 = 7,281 lines a
/// chunk.
fn alnum8<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "generate", "OTP_SMS", "--length", "8", "--lower", "--upper", "--digits",
    ];
    all.extend_from_slice(args);
    all
}

/// Lines of a chunk of alnum8 codes.
const PER_CHUNK: u64 = 65_536 / 9;

#[test]
fn count_is_exact_with_any_number_of_threads() {
    let counts = [
        1,
        2,
        1000,
        PER_CHUNK - 1,
        PER_CHUNK,
        PER_CHUNK + 1,
        3 * PER_CHUNK,
        5 * PER_CHUNK + 4321,
    ];
    for threads in ["1", "2", "3", "8"] {
        for count in counts {
            let count_arg = count.to_string();
            let out = output(alnum8(&["--threads", threads, "--count", &count_arg]));
            let codes = lines(&out);
            assert_eq!(codes.len() as u64, count, "--threads {threads}");
            assert_eq!(out.stdout.len() as u64, 9 * count, "--threads {threads}");
            assert!(
                codes
                    .iter()
                    .all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_alphanumeric())),
                "--threads {threads} --count {count}"
            );
        }
    }
}

#[test]
fn threads_draw_from_streams_of_their_own() {
    // 32 alphanumeric characters: 190 bits, so 100,000 codes never repeat unless two workers
    // (or two chunks) drew the same bytes.
    let out = output([
        "generate",
        "APP_SECRET",
        "--length",
        "32",
        "--threads",
        "4",
        "--count",
        "100000",
    ]);
    let codes = lines(&out);
    assert_eq!(codes.len(), 100_000);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), codes.len(), "a code repeated");
}

#[test]
fn require_each_class_holds_with_threads() {
    let codes = lines(&output([
        "generate",
        "INIT_CODE",
        "--length",
        "4",
        "--upper",
        "--digits",
        "--symbols",
        "--require-each-class",
        "--threads",
        "3",
        "--count",
        "50000",
    ]));
    assert_eq!(codes.len(), 50_000);
    for code in &codes {
        assert!(code.chars().any(|c| c.is_ascii_uppercase()), "{code}");
        assert!(code.chars().any(|c| DIGITS.contains(c)), "{code}");
        assert!(code.chars().any(|c| SYMBOLS.contains(c)), "{code}");
    }
}

#[test]
fn a_bad_thread_count_is_one_line_and_exit_2() {
    for value in ["0", "-1", "1025", "two", "1.5", ""] {
        let flag = format!("--threads={value}");
        let out = output(alnum8(&[&flag]));
        assert_eq!(out.status.code(), Some(2), "--threads {value:?}");
        let err = refusal(&out);
        assert!(err.contains("--threads"), "{value:?}: {err}");
    }
}

/// Reads 100 lines of a run of `threads` threads that would never end by itself, closes the
/// pipe, and expects the run to end within 30 s, with status 0 and nothing on standard error.
fn stops_quietly_when_the_reader_does(threads: Option<&str>) {
    let mut args = alnum8(&["--count", "1000000000000"]);
    if let Some(threads) = threads {
        args.extend(["--threads", threads]);
    }
    let mut child = secretgen(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 9 * 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here: the writer must notice, and every worker stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("--threads {threads:?}: still running 30 s after its reader left");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "--threads {threads:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "--threads {threads:?}");
    assert!(
        first
            .chunks(9)
            .all(|l| { l[..8].iter().all(u8::is_ascii_alphanumeric) && l[8] == b'\n' })
    );
}

#[test]
fn a_closed_pipe_ends_every_thread_quietly() {
    for threads in [None, Some("1"), Some("2"), Some("4")] {
        stops_quietly_when_the_reader_does(threads);
    }
}
