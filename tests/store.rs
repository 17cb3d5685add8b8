//! The embedded store against real SQLite files in temporary directories: first start,
//! updates, replay after reopening, refusals, and files that must be left alone.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use secretgen::store::{EventLog, EventType, TokenStore, database_path};
use secretgen::{
    CodeLength, ConfigDraft, ControlPlane, GeneratorConfig, GeneratorType, InstanceId, SqliteStore,
    StoreErrorKind,
};

fn open(dir: &Path) -> ControlPlane {
    let store = open_writer(dir).expect("store opens");
    ControlPlane::open(Arc::new(store), None).expect("control plane opens")
}

/// `SqliteStore::open`, waiting up to 2 s for the directory's lock: a test that drops a
/// writer and opens the directory again can find the lock still held for a moment by a child
/// process that another test thread is starting (`secretgen check`): between its fork and
/// its exec the child shares the lock's open file.
fn open_writer(dir: &Path) -> Result<SqliteStore, secretgen::StoreError> {
    let start = std::time::Instant::now();
    loop {
        match SqliteStore::open(dir) {
            Err(e)
                if e.kind() == StoreErrorKind::Locked
                    && start.elapsed() < std::time::Duration::from_secs(2) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A digits-only configuration of `t`.
fn otp_of(t: GeneratorType, length: i64, expiry: &str) -> GeneratorConfig {
    GeneratorConfig::new(&ConfigDraft {
        length: secretgen::CodeLength::new(length),
        expiry: secretgen::protojson::expiry(expiry),
        include_digits: true,
        ..ConfigDraft::new(t)
    })
    .expect("a valid configuration")
}

/// A digits-only configuration of OTP_SMS.
fn otp(length: i64, expiry: &str) -> GeneratorConfig {
    otp_of(GeneratorType::OtpSms, length, expiry)
}

/// Configuration and details of every type, as served.
fn state(control: &ControlPlane) -> Vec<(GeneratorConfig, secretgen::Version)> {
    GeneratorType::ALL
        .iter()
        .map(|&t| {
            let s = control.get(t);
            (s.config().clone(), s.version())
        })
        .collect()
}

#[test]
fn a_first_start_writes_the_eight_defaults_as_events() {
    let dir = common::private_dir();
    let control = open(dir.path());
    let id = control.instance().id().clone();
    let events = control.store().events(&id).unwrap();
    assert_eq!(events.len(), 8);
    for (i, (event, t)) in events.iter().zip(GeneratorType::ALL).enumerate() {
        assert_eq!(event.sequence, i as u64 + 1);
        assert_eq!(event.event_type, EventType::Added);
        assert_eq!(event.generator_type(), Some(t));
        assert_eq!(event.creator, "system");
        assert_eq!(
            GeneratorConfig::new(event.config().unwrap()).unwrap(),
            GeneratorConfig::default_for(t)
        );
        let live = control.get(t);
        assert_eq!(live.version().sequence, event.sequence);
        assert_eq!(live.version().creation_date, event.created_at);
        assert_eq!(live.version().change_date, event.created_at);
    }
    assert!(
        id.as_str().len() == 18 && id.as_str().bytes().all(|b| b.is_ascii_digit()),
        "instance id {id}"
    );
}

#[test]
fn after_reopening_every_generator_has_its_configuration_and_details() {
    let dir = common::private_dir();
    let before = {
        let control = open(dir.path());
        control.update(otp(10, "120s"), "alice").unwrap();
        control
            .update(otp_of(GeneratorType::OtpEmail, 12, "600s"), "bob")
            .unwrap();
        control.update(otp(9, "60s"), "alice").unwrap();
        (control.instance().id().clone(), state(&control))
    };
    let control = open(dir.path());
    assert_eq!(control.instance().id(), &before.0);
    assert_eq!(state(&control), before.1);
    let sms = control.get(GeneratorType::OtpSms);
    assert_eq!(sms.config().length().get(), 9);
    assert_eq!(sms.version().sequence, 11);
    assert!(sms.version().change_date > sms.version().creation_date);
    let events = control.store().events(control.instance().id()).unwrap();
    assert_eq!(events.last().unwrap().creator, "alice");
    assert_eq!(events.last().unwrap().event_type, EventType::Changed);
}

#[test]
fn sequences_strictly_increase_without_gaps() {
    let dir = common::private_dir();
    let control = open(dir.path());
    for (i, t) in [GeneratorType::OtpSms, GeneratorType::OtpEmail]
        .iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let snapshot = control
            .update(otp_of(*t, 8, &format!("{}s", i + 1)), "ci")
            .unwrap();
        assert_eq!(snapshot.version().sequence, 9 + i as u64);
    }
    let events = control.store().events(control.instance().id()).unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=28).collect::<Vec<u64>>());
}

#[test]
fn an_update_that_changes_nothing_writes_nothing() {
    let dir = common::private_dir();
    let control = open(dir.path());
    let first = control.update(otp(10, "120s"), "ci").unwrap();
    // The same configuration, written differently ("120.000s", the type by number).
    let again = control.update(otp(10, "120.000s"), "someone else").unwrap();
    assert_eq!(again.version(), first.version());
    let events = control.store().events(control.instance().id()).unwrap();
    assert_eq!(events.len(), 9);
    // The default, unchanged since the first start, also writes nothing.
    let default = GeneratorConfig::default_for(GeneratorType::InitCode);
    let same = control.update(default, "ci").unwrap();
    assert_eq!(same.version().sequence, 1);
    assert_eq!(
        control
            .store()
            .events(control.instance().id())
            .unwrap()
            .len(),
        9
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_directory() {
    let dir = common::private_dir();
    let first = SqliteStore::open(dir.path()).unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Locked);
    let message = err.to_string();
    assert!(
        message.contains("in use by another secretgen process"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    drop(first);
    open_writer(dir.path()).expect("the lock goes with the writer");
}

#[test]
fn readers_and_token_writers_work_beside_the_writer() {
    let dir = common::private_dir();
    let control = open(dir.path());
    control.update(otp(10, "120s"), "ci").unwrap();
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    let events = reader.events(control.instance().id()).unwrap();
    assert_eq!(events.len(), 9);
    let err = reader.add_token(&sample_token(1), "test").unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Refused);

    let shared = SqliteStore::open_shared(dir.path()).unwrap();
    shared.add_token(&sample_token(2), "test").unwrap();
    let found = control.store().token_by_hash(&[2; 32]).unwrap().unwrap();
    assert_eq!(found.name, "token 2");
    assert_eq!(found.permissions, ["iam.read", "codes.generate"]);
    let new = secretgen::store::NewEvent {
        event_type: EventType::Changed,
        config: GeneratorConfig::default_for(GeneratorType::OtpSms),
        created_at: std::time::SystemTime::now(),
        creator: "intruder".into(),
        creator_id: None,
    };
    let err = shared.append(control.instance().id(), &[new]).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Refused);
}

fn sample_token(n: u8) -> secretgen::store::TokenRecord {
    secretgen::store::TokenRecord {
        id: format!("tok_{n}"),
        name: format!("token {n}"),
        hash: [n; 32],
        permissions: vec!["iam.read".into(), "codes.generate".into()],
        created_at: secretgen::store::truncate_to_micros(std::time::SystemTime::now()),
        // Every other token expires, so that expiry is read back both ways.
        expires_at: (n % 2 == 1).then(|| {
            secretgen::store::truncate_to_micros(std::time::SystemTime::now())
                + std::time::Duration::from_secs(3600)
        }),
        created_by: None,
    }
}

#[test]
fn token_hashes_are_kept_and_found() {
    let dir = common::private_dir();
    let token = sample_token(7);
    {
        let control = open(dir.path());
        let store = control.store();
        assert_eq!(store.token_count().unwrap(), 0);
        store.add_token(&token, "test").unwrap();
        let again = store.add_token(&token, "test").unwrap_err();
        assert_eq!(again.kind(), StoreErrorKind::Refused);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.token_count().unwrap(), 1);
    assert_eq!(store.token_by_hash(&[7; 32]).unwrap(), Some(token.clone()));
    assert_eq!(store.token_by_hash(&[8; 32]).unwrap(), None);
    let never = sample_token(8);
    store.add_token(&never, "test").unwrap();
    assert_eq!(store.tokens().unwrap().len(), 2);
    let test = secretgen::store::Author::named("test");
    assert_eq!(store.remove_token(&token.id, &test).unwrap().len(), 1);
    assert!(
        store.remove_token(&token.id, &test).unwrap().is_empty(),
        "gone once revoked"
    );
    assert_eq!(store.tokens().unwrap(), [never]);
}

#[test]
fn a_store_of_schema_version_2_gets_token_expiry_from_its_writer() {
    let dir = common::private_dir();
    let token = sample_token(4);
    {
        let control = open(dir.path());
        control.store().add_token(&token, "test").unwrap();
    }
    edit(
        dir.path(),
        "ALTER TABLE tokens DROP COLUMN expires_at; \
         UPDATE meta SET value = '2' WHERE key = 'schema_version';",
    );
    let err = SqliteStore::open_read_only(dir.path()).unwrap_err();
    assert!(err.to_string().contains("schema version 2"), "{err}");
    drop(open(dir.path()));
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    let tokens = reader.tokens().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].id, token.id);
    assert_eq!(
        tokens[0].expires_at, None,
        "a version 2 token never expires"
    );
    common::assert_check_passes(dir.path());
}

#[test]
fn a_data_directory_belongs_to_one_instance() {
    let dir = common::private_dir();
    let chosen = InstanceId::new("tenant-1").unwrap();
    {
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let control = ControlPlane::open(store, Some(chosen.clone())).unwrap();
        assert_eq!(control.instance().id(), &chosen);
    }
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let err = ControlPlane::open(store, Some(InstanceId::new("tenant-2").unwrap())).unwrap_err();
    let secretgen::OpenError::InstanceMismatch { stored, requested } = &err else {
        panic!("expected an instance mismatch, got {err:?}");
    };
    assert_eq!(
        (stored.as_str(), requested.as_str()),
        ("tenant-1", "tenant-2")
    );
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let control = ControlPlane::open(store, None).unwrap();
    assert_eq!(control.instance().id(), &chosen);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_as_it_was() {
    let dir = common::private_dir();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    fs::write(database_path(dir.path()), &garbage).unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.to_string().contains("left as it is"), "{err}");
    assert_eq!(fs::read(database_path(dir.path())).unwrap(), garbage);
    assert!(!dir.path().join("secretgen.db-wal").exists());
}

#[test]
fn a_damaged_store_is_refused_and_left_as_it_was() {
    let dir = common::private_dir();
    drop(open(dir.path()));
    // Overwrite the middle of the second page (the first table's root page) with noise.
    let path = database_path(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    assert!(bytes.len() >= 8192, "the store has several pages");
    for (i, b) in bytes[4096 + 8..4096 + 2048].iter_mut().enumerate() {
        *b = (i * 31 % 256) as u8;
    }
    fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(dir.path())
        .and_then(|s| {
            ControlPlane::open(Arc::new(s), None).map_err(|e| match e {
                secretgen::OpenError::Store(e) => e,
                other => panic!("unexpected {other}"),
            })
        })
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_database_of_another_program_is_refused_and_left_as_it_was() {
    let dir = common::private_dir();
    let path = database_path(dir.path());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    let before = fs::read(&path).unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.to_string().contains("no secretgen tables"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

/// Recomputes every event's hash, as a writer that meant the log to hold these rows would
/// have: what a newer build, or a forger who knows the scheme, could write.
fn rechain(conn: &rusqlite::Connection) {
    use secretgen::store::{EventRow, GENESIS, chain_hash};
    let rows: Vec<(String, i64, String, String, String, i64, String)> = conn
        .prepare(
            "SELECT instance_id, sequence, event_type, generator_type, payload, created_at, \
             creator FROM events ORDER BY instance_id, sequence",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut previous = GENESIS;
    for (instance_id, sequence, event_type, generator_type, payload, created_at, creator) in &rows {
        let hash = chain_hash(
            &previous,
            &EventRow {
                instance_id,
                sequence: *sequence,
                event_type,
                generator_type,
                payload,
                created_at: *created_at,
                creator,
                creator_id: "",
            },
        );
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        conn.execute(
            "UPDATE events SET hash = ?1 WHERE instance_id = ?2 AND sequence = ?3",
            rusqlite::params![hex, instance_id, sequence],
        )
        .unwrap();
        previous = hash;
    }
}

/// Edits the store's database directly, as an intruder or a damaged disk would.
fn edit(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(database_path(dir)).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[test]
fn an_event_with_a_configuration_this_build_refuses_stops_the_replay() {
    let dir = common::private_dir();
    let id = {
        let control = open(dir.path());
        control.instance().id().clone()
    };
    let path = database_path(dir.path());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE events SET payload = replace(payload, '\"length\":8', '\"length\":2') \
             WHERE sequence = 7",
            [],
        )
        .unwrap();
        rechain(&conn);
    }
    let before = fs::read(&path).unwrap();
    let err =
        ControlPlane::open(Arc::new(SqliteStore::open(dir.path()).unwrap()), None).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!("event 7 of instance {id}")),
        "{message}"
    );
    assert!(message.contains("entropyBits"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn an_edited_or_dropped_event_breaks_the_chain_and_is_never_served() {
    let edits = [
        // A valid configuration, put in place of the one written: length 8 to 9.
        (
            "UPDATE events SET payload = replace(payload, '\"length\":8', '\"length\":9') \
             WHERE sequence = 7",
            "event 7 of instance",
        ),
        (
            "UPDATE events SET creator = 'mallory' WHERE sequence = 9",
            "event 9 of instance",
        ),
        (
            "UPDATE events SET created_at = created_at + 1 WHERE sequence = 3",
            "event 3 of instance",
        ),
        (
            "DELETE FROM events WHERE sequence = 9",
            "event 10 of instance",
        ),
    ];
    for (sql, at) in edits {
        let dir = common::private_dir();
        {
            let control = open(dir.path());
            control.update(otp(10, "120s"), "alice").unwrap();
            control
                .update(otp_of(GeneratorType::OtpEmail, 10, "120s"), "alice")
                .unwrap();
        }
        edit(dir.path(), sql);
        let path = database_path(dir.path());
        let before = fs::read(&path).unwrap();
        let err = SqliteStore::open(dir.path())
            .map_err(secretgen::OpenError::Store)
            .and_then(|s| ControlPlane::open(Arc::new(s), None))
            .err()
            .unwrap_or_else(|| panic!("{sql}: the edited log was served"));
        let message = err.to_string();
        assert!(message.contains(at), "{sql}: {message}");
        assert!(
            message.contains("does not match its hash") || message.contains("gap"),
            "{sql}: {message}"
        );
        let reader = SqliteStore::open_read_only(dir.path()).unwrap();
        let id = reader.default_instance().unwrap().unwrap();
        assert_eq!(
            reader.events(&id).unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
        assert_eq!(fs::read(&path).unwrap(), before, "{sql}");
    }
}

/// A store in `dir` whose OTP_SMS was changed once (event 9: length 10).
fn store_with_one_change(dir: &Path) -> (ControlPlane, InstanceId) {
    let control = open(dir);
    control.update(otp(10, "120s"), "alice").unwrap();
    let id = control.instance().id().clone();
    (control, id)
}

#[test]
fn a_new_store_is_whole_in_its_database_file_alone() {
    let dir = common::private_dir();
    let (_control, id) = store_with_one_change(dir.path());
    // While the writer runs, the database file alone (no WAL: as if it were lost) already
    // holds the instance, the defaults and every acknowledged change.
    let copy = common::private_dir();
    fs::copy(database_path(dir.path()), database_path(copy.path())).unwrap();
    let reader = SqliteStore::open_read_only(copy.path()).unwrap();
    assert_eq!(reader.default_instance().unwrap(), Some(id.clone()));
    let events = reader.events(&id).unwrap();
    assert_eq!(events.len(), 9);
    assert_eq!(events[8].config().unwrap().length, CodeLength::new(10));
    common::assert_check_passes(copy.path());
    common::assert_check_passes(dir.path());
}

/// The files of `dir`, a crash image: copied while the writer still has them open.
fn crash_image(dir: &Path) -> tempfile::TempDir {
    let image = common::private_dir();
    for name in ["secretgen.db", "secretgen.db-wal"] {
        if dir.join(name).exists() {
            fs::copy(dir.join(name), image.path().join(name)).unwrap();
        }
    }
    image
}

#[test]
fn a_damaged_wal_after_a_crash_never_makes_the_store_start_over() {
    let dir = common::private_dir();
    let (control, id) = store_with_one_change(dir.path());
    let acknowledged = state(&control);
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 3] = [
        ("a header of noise", |wal| {
            wal.resize(wal.len().max(32), 0);
            for (i, b) in wal[..32].iter_mut().enumerate() {
                *b = (i * 37 % 251) as u8;
            }
        }),
        ("a log cut inside its header", |wal| {
            wal.resize(wal.len().max(32), 0x5a);
            wal.truncate(20);
        }),
        ("a flipped bit in the header", |wal| {
            wal.resize(wal.len().max(32), 0);
            wal[17] ^= 1;
        }),
    ];
    for (what, damage) in damages {
        let image = crash_image(dir.path());
        let wal_path = image.path().join("secretgen.db-wal");
        let mut wal = fs::read(&wal_path).unwrap_or_default();
        damage(&mut wal);
        fs::write(&wal_path, &wal).unwrap();
        let db_before = fs::read(database_path(image.path())).unwrap();
        match SqliteStore::open(image.path()) {
            Err(e) => {
                assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{what}: {e}");
                assert!(e.to_string().contains("write-ahead log"), "{what}: {e}");
                assert_eq!(fs::read(&wal_path).unwrap(), wal, "{what}");
                assert_eq!(fs::read(database_path(image.path())).unwrap(), db_before);
            }
            Ok(store) => {
                let reopened = ControlPlane::open(Arc::new(store), None).unwrap();
                assert_eq!(reopened.instance().id(), &id, "{what}: started over");
                assert_eq!(state(&reopened), acknowledged, "{what}");
            }
        }
    }
}

#[test]
fn a_wal_damaged_before_intact_frames_is_refused_not_rolled_back() {
    let dir = common::private_dir();
    drop(open(dir.path()));
    // Three committed transactions that live in the WAL only, as with any writer before
    // its checkpoint.
    let wal = {
        let conn = rusqlite::Connection::open(database_path(dir.path())).unwrap();
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        for n in 1..=3u8 {
            conn.execute(
                "INSERT INTO tokens (id, name, hash, permissions, created_at) \
                 VALUES (?1, 'raw', ?2, 'iam.read', 0)",
                rusqlite::params![format!("tok_raw{n}"), format!("{n:064x}")],
            )
            .unwrap();
        }
        fs::read(dir.path().join("secretgen.db-wal")).unwrap()
    };
    let frame = 24 + 4096;
    assert!(wal.len() >= 32 + 3 * frame, "three frames at least");
    let mut damaged = wal.clone();
    damaged[32 + 24 + 1000] ^= 0x10; // inside the first frame's page
    fs::write(dir.path().join("secretgen.db-wal"), &damaged).unwrap();
    let _ = fs::remove_file(dir.path().join("secretgen.db-shm"));
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.to_string().contains("frame 1 of"), "{err}");
    let err = SqliteStore::open_read_only(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert_eq!(
        fs::read(dir.path().join("secretgen.db-wal")).unwrap(),
        damaged
    );
}

#[test]
fn an_empty_database_file_is_refused_and_left_as_it_was() {
    let dir = common::private_dir();
    fs::write(database_path(dir.path()), b"").unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.to_string().contains("empty"), "{err}");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secretgen.db"]);
    assert_eq!(fs::metadata(database_path(dir.path())).unwrap().len(), 0);
}

#[test]
fn remains_of_a_store_without_its_database_are_refused() {
    for name in ["secretgen.db-wal", "secretgen.db-shm", "secretgen.lock"] {
        let dir = common::private_dir();
        fs::write(dir.path().join(name), b"remains").unwrap();
        for err in [
            SqliteStore::open(dir.path()).unwrap_err(),
            SqliteStore::open_read_only(dir.path()).unwrap_err(),
        ] {
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{name}");
            assert!(err.to_string().contains(name), "{name}: {err}");
            assert!(err.to_string().contains("no secretgen.db"), "{err}");
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [name], "nothing was added");
    }
}

#[test]
fn a_deleted_lock_file_lets_no_second_writer_in() {
    let dir = common::private_dir();
    let first = open(dir.path());
    for entry in fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "lock") {
            fs::remove_file(path).unwrap();
        }
    }
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Locked, "{err}");
    first.update(otp(10, "120s"), "ci").unwrap();
}

#[test]
fn a_database_deleted_or_replaced_under_the_writer_refuses_every_write() {
    for replace in [false, true] {
        let dir = common::private_dir();
        let control = open(dir.path());
        let before = state(&control);
        let path = database_path(dir.path());
        if replace {
            let copy = dir.path().join("copy.db");
            fs::copy(&path, &copy).unwrap();
            fs::rename(&copy, &path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
        let err = control.update(otp(10, "120s"), "ci").unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        let how = if replace { "replaced" } else { "deleted" };
        assert!(err.to_string().contains(how), "{err}");
        assert_eq!(state(&control), before, "nothing was swapped in");
        assert!(control.store().check().is_err(), "readiness sees it");
        let token = control
            .store()
            .add_token(&sample_token(3), "test")
            .unwrap_err();
        assert_eq!(token.kind(), StoreErrorKind::Unavailable);
    }
}

#[test]
fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = common::private_dir();
    let dir = parent.path().join("data");
    let control = open(&dir);
    control.update(otp(10, "120s"), "ci").unwrap();
    assert_eq!(mode(&dir), 0o700);
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    drop(control);
    // Group read is allowed, as PostgreSQL allows it; anything more is refused.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    drop(open(&dir));
    for open_to_others in [0o755, 0o770, 0o701, 0o704] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(open_to_others)).unwrap();
        for err in [
            SqliteStore::open(&dir).unwrap_err(),
            SqliteStore::open_read_only(&dir).unwrap_err(),
            SqliteStore::open_shared(&dir).unwrap_err(),
        ] {
            assert_eq!(err.kind(), StoreErrorKind::Refused, "{open_to_others:o}");
            assert!(err.to_string().contains("chmod 700"), "{err}");
        }
    }
}

#[test]
fn a_store_of_schema_version_1_is_chained_by_its_writer() {
    let dir = common::private_dir();
    let (id, before) = {
        let control = open(dir.path());
        control.update(otp(10, "120s"), "alice").unwrap();
        (control.instance().id().clone(), state(&control))
    };
    // What version 1 wrote: the same rows without hashes.
    edit(
        dir.path(),
        "ALTER TABLE events DROP COLUMN hash; \
         UPDATE meta SET value = '1' WHERE key = 'schema_version';",
    );
    let err = SqliteStore::open_read_only(dir.path()).unwrap_err();
    assert!(err.to_string().contains("schema version 1"), "{err}");
    let control = open(dir.path());
    assert_eq!(control.instance().id(), &id);
    assert_eq!(state(&control), before);
    drop(control);
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.events(&id).unwrap().len(), 9);
    common::assert_check_passes(dir.path());
    // From now on the chain holds: an edit is caught.
    edit(
        dir.path(),
        "UPDATE events SET creator = 'mallory' WHERE sequence = 9",
    );
    assert!(reader.events(&id).is_err());
}

#[test]
fn a_store_of_schema_version_3_gets_token_lineage_and_the_audit_indexes_from_its_writer() {
    let dir = common::private_dir();
    let token = sample_token(5);
    let (id, before) = {
        let control = open(dir.path());
        control.store().add_token(&token, "test").unwrap();
        control.update(otp(10, "120s"), "alice").unwrap();
        (control.instance().id().clone(), state(&control))
    };
    // What version 3 wrote: no creator ids, no creating token, no indexes.
    edit(
        dir.path(),
        "DROP INDEX events_by_time; DROP INDEX events_by_type; \
         DROP INDEX events_by_creator; DROP INDEX events_by_creator_id; \
         ALTER TABLE events DROP COLUMN creator_id; \
         ALTER TABLE tokens DROP COLUMN created_by; \
         UPDATE meta SET value = '3' WHERE key = 'schema_version';",
    );
    let err = SqliteStore::open_read_only(dir.path()).unwrap_err();
    assert!(err.to_string().contains("schema version 3"), "{err}");
    let control = open(dir.path());
    assert_eq!(state(&control), before);
    drop(control);
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(
        reader.tokens().unwrap(),
        [token],
        "left as it was: no creator"
    );
    let events = reader.events(&id).unwrap();
    assert_eq!(events.len(), 10, "every hash still holds");
    assert!(events.iter().all(|e| e.creator_id.is_none()));
    drop(reader);
    let conn = rusqlite::Connection::open(database_path(dir.path())).unwrap();
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'events_by_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        indexes,
        [
            "events_by_creator",
            "events_by_creator_id",
            "events_by_time",
            "events_by_type"
        ]
    );
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, secretgen::store::SCHEMA_VERSION);
    drop(conn);
    common::assert_check_passes(dir.path());
}

/// What both stores must do alike is in `tests/store_conformance.rs`; this is PostgreSQL's
/// upgrade from schema version 3, as the embedded store's is above.
#[test]
fn a_postgresql_store_of_schema_version_3_is_upgraded_and_left_as_it_was() {
    use secretgen::store::{PostgresOptions, PostgresStore};
    let Some(db) = common::pg::TestDatabase::create("store_upgrade_3") else {
        return;
    };
    let (id, token_before) = {
        let store = Arc::new(PostgresStore::connect(db.url(), PostgresOptions::default()).unwrap());
        let control = ControlPlane::open(store.clone(), None).unwrap();
        store.add_token(&sample_token(3), "admin").unwrap();
        (
            control.instance().id().clone(),
            store.token("tok_3").unwrap().unwrap(),
        )
    };
    let mut client = db.client();
    client
        .batch_execute(
            "DROP INDEX events_by_time; DROP INDEX events_by_type; \
             DROP INDEX events_by_creator; DROP INDEX events_by_creator_id; \
             ALTER TABLE events DROP COLUMN creator_id; \
             ALTER TABLE tokens DROP COLUMN created_by; \
             UPDATE meta SET value = '3' WHERE key = 'schema_version'",
        )
        .unwrap();
    let store = PostgresStore::connect(db.url(), PostgresOptions::default()).unwrap();
    assert_eq!(store.token("tok_3").unwrap().unwrap(), token_before);
    assert_eq!(
        store.events(&id).unwrap().len(),
        9,
        "every hash still holds"
    );
    let version: String = client
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, secretgen::store::SCHEMA_VERSION);
    let indexes: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname LIKE 'events\\_by\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, 4);
}
