//! The embedded store against real SQLite files in temporary directories: first start,
//! updates, replay after reopening, refusals, and files that must be left alone.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use secretgen::store::{EventType, database_path};
use secretgen::{
    ConfigDraft, ControlPlane, GeneratorConfig, GeneratorType, InstanceId, SqliteStore, Store,
    StoreErrorKind, UpdateError,
};

fn open(dir: &Path) -> ControlPlane {
    let store = SqliteStore::open(dir).expect("store opens");
    ControlPlane::open(Arc::new(store), None).expect("control plane opens")
}

fn otp(length: i64, expiry: &str) -> ConfigDraft {
    ConfigDraft {
        length,
        expiry: expiry.into(),
        include_digits: true,
        ..ConfigDraft::default()
    }
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
    let dir = tempfile::tempdir().unwrap();
    let control = open(dir.path());
    let id = control.instance().id().clone();
    let events = control.store().events(&id).unwrap();
    assert_eq!(events.len(), 8);
    for (i, (event, t)) in events.iter().zip(GeneratorType::ALL).enumerate() {
        assert_eq!(event.sequence, i as u64 + 1);
        assert_eq!(event.event_type, EventType::Added);
        assert_eq!(event.generator_type, t);
        assert_eq!(event.creator, "system");
        assert_eq!(
            GeneratorConfig::new(&event.config).unwrap(),
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
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let control = open(dir.path());
        control
            .update(GeneratorType::OtpSms, &otp(10, "120s"), "alice")
            .unwrap();
        control
            .update(GeneratorType::OtpEmail, &otp(12, "600s"), "bob")
            .unwrap();
        control
            .update(GeneratorType::OtpSms, &otp(9, "60s"), "alice")
            .unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let control = open(dir.path());
    for (i, t) in [GeneratorType::OtpSms, GeneratorType::OtpEmail]
        .iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let snapshot = control
            .update(*t, &otp(8, &format!("{}s", i + 1)), "ci")
            .unwrap();
        assert_eq!(snapshot.version().sequence, 9 + i as u64);
    }
    let events = control.store().events(control.instance().id()).unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=28).collect::<Vec<u64>>());
}

#[test]
fn an_update_that_changes_nothing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let control = open(dir.path());
    let first = control
        .update(GeneratorType::OtpSms, &otp(10, "120s"), "ci")
        .unwrap();
    // The same configuration, written differently ("120.000s", the type by number).
    let again = control
        .update(
            GeneratorType::OtpSms,
            &ConfigDraft {
                generator_type: "7".into(),
                ..otp(10, "120.000s")
            },
            "someone else",
        )
        .unwrap();
    assert_eq!(again.version(), first.version());
    let events = control.store().events(control.instance().id()).unwrap();
    assert_eq!(events.len(), 9);
    // The default, unchanged since the first start, also writes nothing.
    let default = GeneratorConfig::default_for(GeneratorType::InitCode).to_draft();
    let same = control
        .update(GeneratorType::InitCode, &default, "ci")
        .unwrap();
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
fn a_refused_update_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let control = open(dir.path());
    let before = state(&control);
    let err = control
        .update(GeneratorType::OtpSms, &otp(0, "-1s"), "ci")
        .unwrap_err();
    let UpdateError::Invalid(violations) = err else {
        panic!("expected a validation error, got {err:?}");
    };
    let fields: Vec<&str> = violations.violations().iter().map(|v| v.field).collect();
    assert!(
        fields.contains(&"length") && fields.contains(&"expiry"),
        "{fields:?}"
    );
    assert_eq!(state(&control), before);
    assert_eq!(
        control
            .store()
            .events(control.instance().id())
            .unwrap()
            .len(),
        8
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
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
    SqliteStore::open(dir.path()).expect("the lock goes with the writer");
}

#[test]
fn readers_and_token_writers_work_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let control = open(dir.path());
    control
        .update(GeneratorType::OtpSms, &otp(10, "120s"), "ci")
        .unwrap();
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    let events = reader.events(control.instance().id()).unwrap();
    assert_eq!(events.len(), 9);
    let err = reader.add_token(&sample_token(1)).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Refused);

    let shared = SqliteStore::open_shared(dir.path()).unwrap();
    shared.add_token(&sample_token(2)).unwrap();
    let found = control.store().token_by_hash(&[2; 32]).unwrap().unwrap();
    assert_eq!(found.name, "token 2");
    assert_eq!(found.permissions, ["iam.read", "codes.generate"]);
    let new = secretgen::store::NewEvent {
        event_type: EventType::Changed,
        config: GeneratorConfig::default_for(GeneratorType::OtpSms),
        created_at: std::time::SystemTime::now(),
        creator: "intruder".into(),
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
    }
}

#[test]
fn token_hashes_are_kept_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let token = sample_token(7);
    {
        let control = open(dir.path());
        let store = control.store();
        assert_eq!(store.token_count().unwrap(), 0);
        store.add_token(&token).unwrap();
        let again = store.add_token(&token).unwrap_err();
        assert_eq!(again.kind(), StoreErrorKind::Refused);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.token_count().unwrap(), 1);
    assert_eq!(store.token_by_hash(&[7; 32]).unwrap(), Some(token));
    assert_eq!(store.token_by_hash(&[8; 32]).unwrap(), None);
}

#[test]
fn a_data_directory_belongs_to_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let chosen = InstanceId::new("tenant-1").unwrap();
    {
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let control = ControlPlane::open(store, Some(chosen.clone())).unwrap();
        assert_eq!(control.instance().id(), &chosen);
    }
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let err = ControlPlane::open(store, Some(InstanceId::new("tenant-2").unwrap())).unwrap_err();
    assert!(
        err.to_string().contains("belongs to instance tenant-1"),
        "{err}"
    );
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let control = ControlPlane::open(store, None).unwrap();
    assert_eq!(control.instance().id(), &chosen);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
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

#[test]
fn an_event_with_a_configuration_this_build_refuses_stops_the_replay() {
    let dir = tempfile::tempdir().unwrap();
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
