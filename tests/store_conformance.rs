//! The same cases against both stores: each case is a function of a new, empty
//! `Arc<dyn Store>` (no instance yet), run once on an embedded store in a directory of its
//! own and once on a PostgreSQL store in a database of its own. What one store does, the
//! other must do alike: the log's numbering and chain, catching up, pages and their filters,
//! tokens with their names and lineage, the default instance's claim.

#[path = "store_conformance/codes.rs"]
mod codes;
mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secretgen::store::{
    Author, COUNT_AHEAD, Change, Event, EventFilter, EventType, GENESIS, MAX_PAGE, NewEvent,
    PostgresOptions, PostgresStore, TokenRecord, page_in_memory, truncate_to_micros,
};
use secretgen::{
    ConfigDraft, GeneratorConfig, GeneratorType, InstanceId, SqliteStore, Store, StoreErrorKind,
};

/// Runs each case on both stores: `sqlite::case` and `postgres::case`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    let dir = super::common::private_dir();
                    let store = secretgen::SqliteStore::open(dir.path()).expect("store opens");
                    super::$case(std::sync::Arc::new(store));
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $case() {
                    let Some(db) = super::common::pg::TestDatabase::create(stringify!($case))
                    else {
                        return;
                    };
                    let store = secretgen::store::PostgresStore::connect(
                        db.url(),
                        secretgen::store::PostgresOptions::default(),
                    )
                    .expect("store connects");
                    super::$case(std::sync::Arc::new(store));
                }
            )*
        }
    };
}

conformance!(
    the_default_instance_is_claimed_once,
    appends_are_numbered_chained_and_leave_out_what_changes_nothing,
    catching_up_follows_the_chain_from_what_was_applied,
    pages_are_the_whole_log_filtered,
    a_filtered_count_stops_at_its_cap,
    tokens_are_stored_found_and_counted,
    names_are_unique_among_live_tokens,
    the_first_token_is_stored_once,
    revoking_a_token_revokes_what_it_made_nearest_first,
    token_changes_need_an_instance,
    a_store_answers_its_check,
    a_code_is_approved_once,
    failures_count_across_codes_and_lock,
    a_fourth_code_retires_the_oldest_and_issues_are_limited,
    an_unlock_is_an_event_of_the_log,
    the_purge_keeps_what_is_pending,
    a_failed_issue_leaves_nothing_behind,
    concurrent_verifications_approve_once,
    concurrent_failures_are_each_counted,
    concurrent_issues_to_a_new_subject_make_one,
);

use codes::*;

#[test]
fn queued_issues_are_committed_when_the_embedded_store_is_dropped() {
    queued_issues_are_committed_when_the_store_is_dropped(common::private_dir().path());
}

/// The instance every case writes to.
fn instance() -> InstanceId {
    InstanceId::new("conformance-1").unwrap()
}

/// `store` with its default instance claimed, and made whole (as `ControlPlane::open`
/// does: a new embedded store becomes `secretgen.db` only then).
fn claimed(store: &dyn Store) -> InstanceId {
    let id = store.claim_default_instance(&instance()).unwrap();
    store.finish_creation().unwrap();
    id
}

/// A digits-only configuration of `t`.
fn config(t: GeneratorType, length: i64) -> GeneratorConfig {
    GeneratorConfig::new(&ConfigDraft {
        length: secretgen::CodeLength::new(length),
        expiry: secretgen::Expiry::new(std::time::Duration::from_secs(60)),
        include_digits: true,
        ..ConfigDraft::new(t)
    })
    .expect("a valid configuration")
}

fn event(event_type: EventType, t: GeneratorType, length: i64) -> NewEvent {
    NewEvent {
        event_type,
        config: config(t, length),
        created_at: truncate_to_micros(SystemTime::now()),
        creator: "alice".into(),
        creator_id: Some("t_alice".into()),
    }
}

fn token(id: &str, name: &str, parent: Option<&str>) -> TokenRecord {
    let now = truncate_to_micros(SystemTime::now());
    let mut hash = [0u8; 32];
    hash[..id.len()].copy_from_slice(id.as_bytes());
    TokenRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        hash,
        permissions: vec!["iam.read".into(), "iam.write".into()],
        created_at: now,
        expires_at: None,
        created_by: parent.map(str::to_owned),
    }
}

fn sequences(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

fn token_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.change {
            Change::Token(facts) => facts.token_id.clone(),
            other => panic!("{other:?} among token events"),
        })
        .collect()
}

fn the_default_instance_is_claimed_once(store: Arc<dyn Store>) {
    assert_eq!(store.default_instance().unwrap(), None);
    let first = instance();
    assert_eq!(store.claim_default_instance(&first).unwrap(), first);
    let second = InstanceId::new("conformance-2").unwrap();
    assert_eq!(
        store.claim_default_instance(&second).unwrap(),
        first,
        "the id stored first stays"
    );
    store.finish_creation().unwrap();
    assert_eq!(store.default_instance().unwrap(), Some(first));
}

fn appends_are_numbered_chained_and_leave_out_what_changes_nothing(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    let (sms, email) = (GeneratorType::OtpSms, GeneratorType::OtpEmail);
    let added = store
        .append(
            &id,
            &[
                event(EventType::Added, sms, 6),
                event(EventType::Added, email, 8),
                event(EventType::Added, sms, 7),
            ],
        )
        .unwrap();
    assert_eq!(sequences(&added), [1, 2], "one `added` event a type");
    assert_eq!(added[0].creator_id.as_deref(), Some("t_alice"));
    assert!(
        store
            .append(&id, &[event(EventType::Added, sms, 9)])
            .unwrap()
            .is_empty(),
        "a type has one `added` event"
    );
    assert!(
        store
            .append(&id, &[event(EventType::Changed, email, 8)])
            .unwrap()
            .is_empty(),
        "a change to the configuration there is no change"
    );
    let changed = store
        .append(
            &id,
            &[
                event(EventType::Changed, sms, 9),
                event(EventType::Changed, sms, 9),
                event(EventType::Changed, email, 10),
                event(EventType::Changed, sms, 6),
            ],
        )
        .unwrap();
    assert_eq!(
        sequences(&changed),
        [3, 4, 5],
        "numbered after the last event"
    );
    let all = store.events(&id).unwrap();
    assert_eq!(sequences(&all), [1, 2, 3, 4, 5]);
    assert_eq!(all[..2], added[..]);
    assert_eq!(all[2..], changed[..]);
    assert_eq!(all[4].config(), Some(&config(sms, 6).to_draft()));
    let hashes: std::collections::HashSet<_> = all.iter().map(|e| e.hash).collect();
    assert_eq!(hashes.len(), all.len(), "every event has a hash of its own");
    assert_eq!(store.instances().unwrap(), [id]);
}

fn catching_up_follows_the_chain_from_what_was_applied(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    let types = [GeneratorType::OtpSms, GeneratorType::OtpEmail];
    let batch: Vec<NewEvent> = types
        .iter()
        .map(|&t| event(EventType::Added, t, 6))
        .collect();
    store.append(&id, &batch).unwrap();
    store
        .append(&id, &[event(EventType::Changed, types[0], 7)])
        .unwrap();
    let all = store.events(&id).unwrap();
    assert_eq!(store.events_after(&id, 0, &GENESIS).unwrap(), all);
    assert_eq!(store.events_after(&id, 1, &all[0].hash).unwrap(), all[1..]);
    assert!(store.events_after(&id, 3, &all[2].hash).unwrap().is_empty());
    let rewritten = store.events_after(&id, 2, &all[0].hash).unwrap_err();
    assert_eq!(rewritten.kind(), StoreErrorKind::Corrupt, "{rewritten}");
    let other = InstanceId::new("another").unwrap();
    assert!(store.events(&other).unwrap().is_empty());
}

/// 1,200 changes over two types (more than a page holds), some by a token with an id: every
/// filter and paging gives the page the whole log gives ([`page_in_memory`], the reference).
fn pages_are_the_whole_log_filtered(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    let now = truncate_to_micros(SystemTime::now());
    let events: Vec<NewEvent> = (0..1200u64)
        .map(|i| {
            let t = if i % 3 == 0 {
                GeneratorType::OtpEmail
            } else {
                GeneratorType::OtpSms
            };
            NewEvent {
                event_type: if i < 2 {
                    EventType::Added
                } else {
                    EventType::Changed
                },
                // Alternating lengths: every event changes something, so every one is kept.
                config: config(t, 6 + (i % 7) as i64),
                created_at: now + Duration::from_millis(i),
                creator: if i % 5 == 0 { "ops" } else { "alice" }.into(),
                creator_id: (i % 5 == 0).then(|| "t_ops".to_owned()),
            }
        })
        .collect();
    store.append(&id, &events).unwrap();
    store
        .add_token(&token("t_page", "page", None), "ops")
        .unwrap();
    let all = store.events(&id).unwrap();
    assert!(all.len() as u64 > MAX_PAGE, "{}", all.len());
    let middle = all[all.len() / 2].created_at;
    let base = EventFilter::default();
    let filters = [
        base.clone(),
        EventFilter {
            limit: 5000,
            ..base.clone()
        },
        EventFilter {
            limit: 7,
            offset: 5,
            ..base.clone()
        },
        EventFilter {
            limit: 100,
            offset: 250,
            ascending: false,
            ..base.clone()
        },
        EventFilter {
            offset: 5000,
            ..base.clone()
        },
        EventFilter {
            from_sequence: 700,
            limit: 50,
            ..base.clone()
        },
        EventFilter {
            from_sequence: 700,
            limit: 50,
            offset: 10,
            ascending: false,
            ..base.clone()
        },
        EventFilter {
            generator_type: Some(GeneratorType::OtpEmail),
            limit: 30,
            offset: 7,
            ..base.clone()
        },
        EventFilter {
            generator_type: Some(GeneratorType::OtpSms),
            ascending: false,
            ..base.clone()
        },
        EventFilter {
            event_types: Some(vec![EventType::Added, EventType::TokenAdded]),
            ..base.clone()
        },
        EventFilter {
            event_types: Some(vec![]),
            ..base.clone()
        },
        EventFilter {
            creator: Some("ops".into()),
            limit: 20,
            offset: 3,
            ascending: false,
            ..base.clone()
        },
        EventFilter {
            creator_id: Some("t_ops".into()),
            limit: 3,
            ..base.clone()
        },
        EventFilter {
            since: Some(middle),
            until: Some(middle + Duration::from_millis(5)),
            ..base.clone()
        },
        EventFilter {
            until: Some(middle),
            ascending: false,
            limit: 10,
            ..base.clone()
        },
        EventFilter {
            since: Some(middle - Duration::from_millis(50)),
            until: Some(middle + Duration::from_nanos(500)),
            generator_type: Some(GeneratorType::OtpSms),
            from_sequence: 3,
            ..base.clone()
        },
    ];
    for filter in &filters {
        let page = store.events_page(&id, filter).unwrap();
        assert_eq!(page, page_in_memory(all.clone(), filter), "{filter:?}");
        assert!(page.entries.len() as u64 <= MAX_PAGE);
    }
    let capped = store
        .events_page(
            &id,
            &EventFilter {
                limit: 5000,
                ..base.clone()
            },
        )
        .unwrap();
    assert_eq!(
        (capped.entries.len() as u64, capped.total),
        (MAX_PAGE, all.len() as u64),
        "a larger limit is capped; the total is not"
    );
    // A change's page shows the configuration it replaced.
    let changes = store
        .events_page(
            &id,
            &EventFilter {
                event_types: Some(vec![EventType::Changed]),
                ..base
            },
        )
        .unwrap();
    assert_eq!(changes.entries.len() as u64, MAX_PAGE);
    assert!(changes.entries.iter().all(|e| e.previous.is_some()));
}

/// A filtered search counts at most [`COUNT_AHEAD`] matches past its offset (it costs what it
/// returns, not what the log holds) and says when there are more; a search by the sequence
/// alone knows its total without counting, however long the log.
fn a_filtered_count_stops_at_its_cap(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    let now = truncate_to_micros(SystemTime::now());
    let more = 50;
    let events: Vec<NewEvent> = (0..COUNT_AHEAD + more)
        .map(|i| NewEvent {
            event_type: if i == 0 {
                EventType::Added
            } else {
                EventType::Changed
            },
            // Alternating lengths: every event changes something, so every one is kept.
            config: config(GeneratorType::OtpSms, 8 + (i % 2) as i64),
            created_at: now + Duration::from_micros(i),
            creator: "alice".into(),
            creator_id: None,
        })
        .collect();
    assert_eq!(
        store.append(&id, &events).unwrap().len() as u64,
        COUNT_AHEAD + more
    );
    let all = store.events(&id).unwrap();
    let by_creator = |offset| EventFilter {
        creator: Some("alice".into()),
        offset,
        limit: 5,
        ..EventFilter::default()
    };
    let cases = [
        // (filter, total, whether more match)
        (by_creator(0), COUNT_AHEAD, true),
        (by_creator(more - 1), COUNT_AHEAD + more - 1, true),
        (by_creator(more), COUNT_AHEAD + more, false),
        (by_creator(more + 1), COUNT_AHEAD + more, false),
        (
            EventFilter {
                limit: 5,
                ..EventFilter::default()
            },
            all.len() as u64,
            false,
        ),
    ];
    for (filter, total, lower_bound) in cases {
        let page = store.events_page(&id, &filter).unwrap();
        assert_eq!(
            (page.total, page.total_is_lower_bound),
            (total, lower_bound),
            "{filter:?}"
        );
        assert_eq!(page, page_in_memory(all.clone(), &filter), "{filter:?}");
    }
}

fn tokens_are_stored_found_and_counted(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    store
        .append(&id, &[event(EventType::Added, GeneratorType::OtpSms, 6)])
        .unwrap();
    assert_eq!(store.token_count().unwrap(), 0);
    let root = token("t_root", "root", None);
    let added = store.add_token(&root, "command line").unwrap();
    assert_eq!(
        (added.sequence, added.event_type),
        (2, EventType::TokenAdded)
    );
    assert_eq!(added.creator, "command line");
    assert_eq!(added.creator_id, None);
    let child = token("t_child", "child", Some("t_root"));
    let added = store.add_token(&child, "root").unwrap();
    assert_eq!(added.sequence, 3);
    assert_eq!(added.creator_id.as_deref(), Some("t_root"));
    assert_eq!(store.token_count().unwrap(), 2);
    assert_eq!(
        store.token_by_hash(&child.hash).unwrap(),
        Some(child.clone())
    );
    assert_eq!(store.token_by_hash(&[9; 32]).unwrap(), None);
    assert_eq!(store.token("t_root").unwrap(), Some(root.clone()));
    let mut all = store.tokens().unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, [child.clone(), root.clone()]);
    for again in [
        root.clone(),
        TokenRecord {
            id: "t_other".into(),
            name: "other".into(),
            ..root
        },
    ] {
        let refused = store.add_token(&again, "x").unwrap_err();
        assert_eq!(refused.kind(), StoreErrorKind::Refused, "{refused}");
    }
    assert_eq!(store.token_count().unwrap(), 2);
    assert_eq!(
        store.events(&id).unwrap().len(),
        3,
        "nothing written when refused"
    );
}

fn names_are_unique_among_live_tokens(store: Arc<dyn Store>) {
    claimed(store.as_ref());
    store.add_token(&token("t_a", "name", None), "x").unwrap();
    let taken = store
        .add_token(&token("t_b", "name", None), "x")
        .unwrap_err();
    assert_eq!(taken.kind(), StoreErrorKind::NameTaken, "{taken}");
    let mut expired = token("t_old", "reused", None);
    expired.created_at -= Duration::from_secs(10);
    expired.expires_at = Some(expired.created_at + Duration::from_secs(1));
    store.add_token(&expired, "x").unwrap();
    store
        .add_token(&token("t_new", "reused", None), "x")
        .unwrap();
    store.remove_token("t_a", &Author::named("x")).unwrap();
    store.add_token(&token("t_c", "name", None), "x").unwrap();
}

fn the_first_token_is_stored_once(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    assert!(
        store
            .add_first_token(&token("t_1", "first", None), "system")
            .unwrap()
    );
    assert!(
        !store
            .add_first_token(&token("t_2", "second", None), "system")
            .unwrap()
    );
    assert_eq!(store.token_count().unwrap(), 1);
    assert!(store.token("t_2").unwrap().is_none());
    let log = store.events(&id).unwrap();
    assert_eq!(token_ids(&log), ["t_1"]);
    assert_eq!(log[0].creator, "system");
}

fn revoking_a_token_revokes_what_it_made_nearest_first(store: Arc<dyn Store>) {
    let id = claimed(store.as_ref());
    let add = |t: TokenRecord| store.add_token(&t, "admin").unwrap();
    add(token("t_root", "root", None));
    // Stored after its sibling and named after it, made before it: a generation is in the
    // order of creation, neither of storing nor of ids.
    add(token("t_a_child", "child a", Some("t_root")));
    let mut first_child = token("t_z_child", "child z", Some("t_root"));
    first_child.created_at -= Duration::from_secs(5);
    add(first_child);
    add(token("t_grand", "grand", Some("t_z_child")));
    add(token("t_great", "great", Some("t_grand")));
    add(token("t_other", "other", None));
    let before = store.events(&id).unwrap().len() as u64;
    let by = Author {
        name: "admin".into(),
        token_id: Some("t_admin".into()),
    };
    let revoked = store.remove_token("t_root", &by).unwrap();
    assert_eq!(
        token_ids(&revoked),
        ["t_root", "t_z_child", "t_a_child", "t_grand", "t_great"],
        "the token, then each generation by creation time"
    );
    assert_eq!(
        sequences(&revoked),
        (before + 1..=before + 5).collect::<Vec<_>>()
    );
    assert!(
        revoked
            .iter()
            .all(|e| e.event_type == EventType::TokenRemoved
                && e.creator == "admin"
                && e.creator_id.as_deref() == Some("t_admin"))
    );
    let left: Vec<String> = store.tokens().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(left, ["t_other"]);
    assert!(store.remove_token("t_root", &by).unwrap().is_empty());
    assert_eq!(
        store.events(&id).unwrap().len() as u64,
        before + 5,
        "revoking no token writes nothing"
    );
}

fn token_changes_need_an_instance(store: Arc<dyn Store>) {
    for result in [
        store.add_token(&token("t_1", "one", None), "x").map(|_| ()),
        store
            .add_first_token(&token("t_1", "one", None), "x")
            .map(|_| ()),
        store.remove_token("t_1", &Author::named("x")).map(|_| ()),
    ] {
        let refused = result.unwrap_err();
        assert_eq!(refused.kind(), StoreErrorKind::Refused, "{refused}");
        assert!(
            refused.to_string().contains("holds no instance yet"),
            "{refused}"
        );
    }
    assert_eq!(store.token_count().unwrap(), 0);
}

fn a_store_answers_its_check(store: Arc<dyn Store>) {
    claimed(store.as_ref());
    store.check().unwrap();
}

#[test]
fn a_sqlite_error_keeps_the_drivers_error_as_its_source() {
    let dir = common::private_dir();
    std::fs::write(dir.path().join("secretgen.db"), vec![7u8; 8192]).unwrap();
    let refused = SqliteStore::open(dir.path()).unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Corrupt, "{refused}");
    let source = refused.source().expect("the driver's error");
    assert!(
        source.downcast_ref::<rusqlite::Error>().is_some(),
        "{source:?}"
    );
}

#[test]
fn a_postgresql_error_keeps_the_drivers_error_as_its_source() {
    // Nothing listens on port 1.
    let options = PostgresOptions {
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_secs(1),
        ..PostgresOptions::default()
    };
    let refused =
        PostgresStore::connect("postgres://root@127.0.0.1:1/postgres", options).unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable, "{refused}");
    assert!(
        refused
            .to_string()
            .starts_with("cannot set up the store in"),
        "{refused}"
    );
    assert!(refused.source().is_some(), "{refused:?}");
}
