//! Replays every input of the fuzz crate's seed corpus (`fuzz/corpus/<target>/`) and every
//! crash the fuzzers ever found (`fuzz/regressions/<target>/`) through the targets' own checks,
//! as an ordinary test on the stable toolchain. The checks and input types are
//! `fuzz/src/lib.rs`, included here as a module: one source, compiled into both the fuzz
//! targets and this test, without making the library expose fuzzing code.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("a readable directory entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs every input of `kind` through its target; returns how many were checked, and fails
/// naming each input that broke an invariant.
fn replay(kind: &str) -> usize {
    let mut failed = Vec::new();
    let mut checked = 0;
    for target in checks::TARGETS {
        for path in inputs(kind, target) {
            let data = fs::read(&path).expect("a readable input");
            match panic::catch_unwind(|| checks::run(target, &data)) {
                Ok(true) => checked += 1,
                Ok(false) => {}
                Err(_) => failed.push(path.display().to_string()),
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that break an invariant: {failed:#?}"
    );
    checked
}

#[test]
fn every_seed_of_the_corpus_passes_its_target() {
    let checked = replay("corpus");
    assert!(checked > 0, "the seed corpus is empty");
}

#[test]
fn every_crash_ever_found_stays_fixed() {
    replay("regressions");
}

#[test]
fn every_target_has_seeds() {
    for target in checks::TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "fuzz/corpus/{target}/ has no seed"
        );
    }
}
