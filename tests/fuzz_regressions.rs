//! Replays every input of the fuzz crate's seed corpus (`fuzz/corpus/<target>/`) and every
//! crash the fuzzers ever found (`fuzz/regressions/<target>/`) through the targets' own checks
//! (`secretgen_oracle::targets`, the code the fuzz targets run), as an ordinary test on the
//! stable toolchain. Every file must decode the way `fuzz_target!` decodes it: a file that no
//! longer decodes would be skipped by the fuzzer too, and would guard nothing.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use secretgen_oracle::{TARGETS, run};

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

/// Runs every input of `kind` through its target. Fails naming each input that does not
/// decode or breaks an invariant; returns, per target, how many inputs were decoded and
/// checked and how many files the folder holds.
fn replay(kind: &str) -> Vec<(&'static str, usize, usize)> {
    let mut failed = Vec::new();
    let mut counts = Vec::new();
    for target in TARGETS {
        let files = inputs(kind, target);
        let mut decoded = 0;
        for path in &files {
            let data = fs::read(path).expect("a readable input");
            match panic::catch_unwind(|| run(target, &data)) {
                Ok(Ok(())) => decoded += 1,
                Ok(Err(e)) => failed.push(format!("{}: does not decode: {e}", path.display())),
                Err(_) => failed.push(format!("{}: breaks an invariant", path.display())),
            }
        }
        counts.push((target, decoded, files.len()));
    }
    assert!(failed.is_empty(), "{failed:#?}");
    eprintln!("fuzz/{kind}: (target, decoded, files) {counts:?}");
    counts
}

#[test]
fn every_seed_of_the_corpus_decodes_and_passes_its_target() {
    let counts = replay("corpus");
    for (target, decoded, files) in counts {
        assert!(files > 0, "fuzz/corpus/{target}/ has no seed");
        assert_eq!(decoded, files, "fuzz/corpus/{target}/");
    }
}

#[test]
fn every_crash_ever_found_decodes_and_stays_fixed() {
    let counts = replay("regressions");
    for &(target, decoded, files) in &counts {
        assert_eq!(decoded, files, "fuzz/regressions/{target}/");
    }
    // The folder is found and not empty: `generate` keeps one crash (fuzz/README.md).
    let total: usize = counts.iter().map(|(_, decoded, _)| decoded).sum();
    assert!(total > 0, "no regression replayed: {counts:?}");
}
