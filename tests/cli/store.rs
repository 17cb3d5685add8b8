//! The commands that use the data directory, run as real processes: `generate` with a
//! stored configuration, `token create`, and the clear refusals of stores that cannot be used.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use crate::common;
use crate::common::cli::{refusal, run, stdout, wrapped};
use secretgen::store::{EventLog, TokenStore, database_path};
use secretgen::{ConfigDraft, ControlPlane, GeneratorConfig, GeneratorType, SqliteStore, Store};

/// `secretgen ARGS` on the store in `data_dir`.
fn in_store(args: &[&str], data_dir: &Path) -> Command {
    let mut command = common::cli::secretgen(args);
    command.env("SECRETGEN_DATA_DIR", data_dir);
    command
}

/// `secretgen ARGS` on the store in `data_dir`, run to its end.
fn run_in(args: &[&str], data_dir: &Path) -> Output {
    run(&mut in_store(args, data_dir))
}

#[test]
fn generate_uses_the_stored_configuration() {
    let dir = common::private_dir();
    {
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let control = ControlPlane::open(store, None).unwrap();
        let draft = ConfigDraft {
            length: secretgen::CodeLength::new(12),
            expiry: secretgen::Expiry::from_secs(60),
            include_upper_letters: true,
            ..ConfigDraft::new(GeneratorType::OtpSms)
        };
        control
            .update(GeneratorConfig::new(&draft).unwrap(), "ci")
            .unwrap();
    }
    let codes = stdout(&run_in(
        &["generate", "otp_sms", "--count", "50"],
        dir.path(),
    ));
    assert_eq!(codes.lines().count(), 50);
    assert!(
        codes
            .lines()
            .all(|c| c.len() == 12 && c.bytes().all(|b| b.is_ascii_uppercase())),
        "{codes}"
    );
    // Flags still override the stored configuration for one run.
    let codes = stdout(&run_in(
        &["generate", "otp_sms", "--length", "20"],
        dir.path(),
    ));
    assert!(
        codes.trim_end().len() == 20 && codes.bytes().all(|b| b.is_ascii_uppercase() || b == b'\n')
    );
    // A type left at its default keeps it.
    let codes = stdout(&run_in(&["generate", "otp_email"], dir.path()));
    assert!(codes.trim_end().len() == 8 && codes.trim_end().bytes().all(|b| b.is_ascii_digit()));
}

#[test]
fn generate_reads_the_store_while_a_writer_holds_it() {
    let dir = common::private_dir();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let control = ControlPlane::open(store, None).unwrap();
    let draft = ConfigDraft {
        length: secretgen::CodeLength::new(7),
        expiry: secretgen::Expiry::from_secs(60),
        include_digits: true,
        ..ConfigDraft::new(GeneratorType::OtpSms)
    };
    control
        .update(GeneratorConfig::new(&draft).unwrap(), "ci")
        .unwrap();
    let codes = stdout(&run_in(&["generate", "7"], dir.path()));
    assert_eq!(codes.trim_end().len(), 7);
}

#[test]
fn token_create_prints_a_token_and_stores_only_its_hash() {
    let dir = common::private_dir();
    let data = dir.path().join("new");
    let out = stdout(&run_in(
        &[
            "token",
            "create",
            "--name",
            "deploy bot",
            "--permissions",
            "iam.read,codes.generate",
        ],
        &data,
    ));
    let token = out.strip_suffix('\n').unwrap();
    assert!(token.starts_with("sg_") && token.len() == 46, "{token}");
    let db = fs::read(database_path(&data)).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token itself is in the file"
    );
    let store = SqliteStore::open_read_only(&data).unwrap();
    let record = store
        .token_by_hash(&secretgen::token::hash(token))
        .unwrap()
        .expect("its hash is stored");
    assert_eq!(record.name, "deploy bot");
    assert_eq!(record.permissions, ["iam.read", "codes.generate"]);
    // The first use of the directory wrote the defaults too, then the token's event.
    let id = store.default_instance().unwrap().unwrap();
    let events = store.events(&id).unwrap();
    assert_eq!(events.len(), 9);
    assert_eq!(
        events[8].event_type,
        secretgen::store::EventType::TokenAdded
    );
    assert_eq!(events[8].creator, "command line");
    let facts = format!("{:?}", events[8].change);
    assert!(
        facts.contains("deploy bot") && !facts.contains(token),
        "{facts}"
    );
}

#[test]
fn token_create_works_beside_a_running_writer() {
    let dir = common::private_dir();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let _control = ControlPlane::open(Arc::clone(&store) as Arc<dyn Store>, None).unwrap();
    let out = stdout(&run_in(
        &[
            "token",
            "create",
            "--name",
            "n",
            "--permissions",
            "iam.write",
        ],
        dir.path(),
    ));
    let hash = secretgen::token::hash(out.trim_end());
    assert!(store.token_by_hash(&hash).unwrap().is_some());
}

#[test]
fn token_create_refuses_bad_arguments_and_writes_nothing() {
    let dir = common::private_dir();
    let data = dir.path().join("d");
    let err = refusal(&run_in(
        &[
            "token",
            "create",
            "--name",
            "x",
            "--permissions",
            "iam.read,root",
        ],
        &data,
    ));
    assert!(err.contains("unknown permission \"root\""), "{err}");
    let err = refusal(&run_in(
        &["token", "create", "--name", "", "--permissions", "iam.read"],
        &data,
    ));
    assert!(err.contains("token name"), "{err}");
    assert!(
        !data.exists(),
        "a refused command created the data directory"
    );
}

#[test]
fn a_corrupt_store_stops_every_command_and_is_left_as_it_was() {
    let dir = common::private_dir();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 131 % 253) as u8).collect();
    fs::write(database_path(dir.path()), &garbage).unwrap();
    for args in [
        &["generate", "otp_sms"][..],
        &[
            "token",
            "create",
            "--name",
            "x",
            "--permissions",
            "iam.read",
        ][..],
    ] {
        let err = refusal(&run_in(args, dir.path()));
        assert!(err.contains("not a usable secretgen store"), "{err}");
        assert!(err.contains("left as it is"), "{err}");
        assert_eq!(fs::read(database_path(dir.path())).unwrap(), garbage);
    }
}

/// A command run without the capabilities that let root ignore file permissions, so that
/// a read-only directory is read-only for it even when the tests run as root.
fn without_override(args: &[&str], data_dir: &Path) -> Output {
    let probe = data_dir.join(".probe");
    if fs::write(&probe, b"").is_err() {
        return run_in(args, data_dir); // permissions already apply to us
    }
    let _ = fs::remove_file(&probe);
    run(&mut wrapped(
        &[
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search,-fowner",
            "--",
        ],
        &in_store(args, data_dir),
    ))
}

fn make_read_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o500)).unwrap();
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn an_unwritable_directory_gives_a_clear_error_and_leaves_the_store_as_it_was() {
    let dir = common::private_dir();
    // An empty directory nobody may write in: no store can be made there.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    make_read_only(&empty);
    let args = [
        "token",
        "create",
        "--name",
        "x",
        "--permissions",
        "iam.read",
    ];
    let err = refusal(&without_override(&args, &empty));
    assert!(
        err.contains(&empty.display().to_string()) && err.contains("ermission denied"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    make_writable(&empty);

    // A directory with a store in it, made read-only afterwards.
    let full = dir.path().join("full");
    drop(ControlPlane::open(Arc::new(SqliteStore::open(&full).unwrap()), None).unwrap());
    let before = fs::read(database_path(&full)).unwrap();
    let listing = |d: &Path| {
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let files = listing(&full);
    // The store's files stay open to writes while their directory is read-only (SQLite
    // keeps its WAL and index files between runs): make them read-only too.
    for name in &files {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(full.join(name), fs::Permissions::from_mode(0o400)).unwrap();
    }
    make_read_only(&full);
    let err = refusal(&without_override(&args, &full));
    assert!(err.contains(&full.display().to_string()), "{err}");
    assert!(err.contains("must be writable"), "{err}");
    assert_eq!(fs::read(database_path(&full)).unwrap(), before);
    assert_eq!(listing(&full), files);
    make_writable(&full);
}

#[test]
fn backup_copies_the_store_while_its_writer_runs_and_the_copy_is_a_working_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::private_dir();
    let control = ControlPlane::open(Arc::new(SqliteStore::open(dir.path()).unwrap()), None)
        .expect("the writer opens");
    let draft = ConfigDraft {
        length: secretgen::CodeLength::new(11),
        expiry: secretgen::Expiry::from_secs(90),
        include_digits: true,
        ..ConfigDraft::new(GeneratorType::OtpSms)
    };
    control
        .update(GeneratorConfig::new(&draft).unwrap(), "ci")
        .unwrap();
    let target = common::private_dir();
    let copy = target.path().join("secretgen-backup.db");
    let copy_arg = copy.to_str().unwrap();
    let out = stdout(&run_in(&["backup", "--to", copy_arg], dir.path()));
    assert!(out.contains("9 events"), "{out}");
    assert_eq!(
        fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let names: Vec<_> = fs::read_dir(target.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secretgen-backup.db"], "no scratch file is left");

    // A backup never overwrites.
    let before = fs::read(&copy).unwrap();
    let err = refusal(&run_in(&["backup", "--to", copy_arg], dir.path()));
    assert!(err.contains("exists"), "{err}");
    assert_eq!(fs::read(&copy).unwrap(), before);

    // Restored: a data directory that holds the copy as secretgen.db is a working store.
    let restored = common::private_dir();
    fs::copy(&copy, database_path(restored.path())).unwrap();
    common::assert_check_passes(restored.path());
    let codes = stdout(&run_in(&["generate", "otp_sms"], restored.path()));
    assert_eq!(codes.trim_end().len(), 11);
    let restarted =
        ControlPlane::open(Arc::new(SqliteStore::open(restored.path()).unwrap()), None).unwrap();
    assert_eq!(restarted.instance().id(), control.instance().id());
    assert_eq!(
        restarted.get(GeneratorType::OtpSms).version(),
        control.get(GeneratorType::OtpSms).version()
    );
}

#[test]
fn check_reports_a_whole_store_and_refuses_a_damaged_one_without_changing_it() {
    let dir = common::private_dir();
    let id = {
        let control =
            ControlPlane::open(Arc::new(SqliteStore::open(dir.path()).unwrap()), None).unwrap();
        let draft = ConfigDraft {
            length: secretgen::CodeLength::new(9),
            expiry: secretgen::Expiry::from_secs(90),
            include_digits: true,
            ..ConfigDraft::new(GeneratorType::OtpSms)
        };
        control
            .update(GeneratorConfig::new(&draft).unwrap(), "ci")
            .unwrap();
        control.instance().id().clone()
    };
    stdout(&run_in(
        &[
            "token",
            "create",
            "--name",
            "n",
            "--permissions",
            "iam.read",
        ],
        dir.path(),
    ));
    let report = stdout(&run_in(&["check"], dir.path()));
    assert!(
        report.contains(&format!(
            "instance {id} (default): 10 events, last sequence 10, hash chain intact"
        )),
        "{report}"
    );
    assert!(report.contains("tokens: 1"), "{report}");

    {
        let conn = rusqlite::Connection::open(database_path(dir.path())).unwrap();
        conn.execute("UPDATE events SET payload = replace(payload, '\"length\":9', '\"length\":10') WHERE sequence = 9", [])
            .unwrap();
    }
    // The database and its WAL, byte for byte; an absent WAL reads as an empty one (a
    // reader may create the empty WAL and the shared-memory index SQLite needs to read).
    let contents = || {
        ["secretgen.db", "secretgen.db-wal"]
            .map(|name| fs::read(dir.path().join(name)).unwrap_or_default())
    };
    let before = contents();
    let err = refusal(&run_in(&["check"], dir.path()));
    assert!(err.contains("event 9 of instance"), "{err}");
    assert!(err.contains("does not match its hash"), "{err}");
    assert!(before == contents(), "check changed the store's files");
    let empty = common::private_dir();
    let err = refusal(&run_in(&["check"], empty.path()));
    assert!(err.contains("holds no store"), "{err}");
}
