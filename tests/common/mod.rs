//! What several test binaries share. Each binary uses some of it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;

/// A scratch directory that only its owner may enter, as the store requires of its data
/// directory (it refuses one that others may read or write).
pub fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("a temporary directory")
}

/// Runs `secretgen check` on `data_dir` and fails the test unless it finds the store whole.
pub fn assert_check_passes(data_dir: &std::path::Path) {
    let out = cli::run(cli::secretgen(["check", "--data-dir"]).arg(data_dir));
    assert!(
        out.status.success(),
        "secretgen check failed on {}: {}",
        data_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub mod cli;
pub mod http;
pub mod pg;
pub mod proxy;
pub mod server;
