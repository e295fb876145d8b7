//! The state stores against a `BTreeMap` model: random sequences of
//! journalled writes, commits and drops; the redb store is closed and
//! reopened between steps — after a checkpoint into redb, cleanly (its
//! commits in the journal), or as a crash leaves it — so what it answers
//! is what reached the disk.

use std::collections::BTreeMap;

use muster::plan::Action;
use muster::profile::ObjectKind;
use muster::store::{FieldHash, Prior};
use muster::store::{MemoryStore, PendingOp, RedbStore, StateStore, StoredObject};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Close {
    /// Dropped: its commits synced in its journal.
    Clean,
    /// A checkpoint into redb first.
    Checkpoint,
    /// As a crash leaves it: no sync, no checkpoint.
    Crash,
}

#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Journal writes of these (key, delete?, value) and commit the first `acked` of them.
    Write {
        ops: Vec<(u8, bool, u8)>,
        acked: usize,
        drop_rest: bool,
        /// How the store is then closed.
        close: Close,
    },
    Records(u64),
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (proptest::collection::vec((0u8..12, proptest::bool::weighted(0.2), any::<u8>()), 0..8), 0usize..9, any::<bool>(), prop_oneof![Just(Close::Clean), Just(Close::Checkpoint), Just(Close::Crash)])
            .prop_map(|(ops, acked, drop_rest, close)| Step::Write { ops, acked, drop_rest, close }),
        1 => (0u64..1000).prop_map(Step::Records),
    ]
}

pub(crate) fn object(v: u8) -> StoredObject {
    StoredObject {
        fingerprint: u128::from(v) << 70 | u128::from(v),
        active: !v.is_multiple_of(3),
        invited: v.is_multiple_of(2),
        lms_id: (!v.is_multiple_of(4)).then(|| format!("lms-{v}")),
        parent: v.is_multiple_of(5).then(|| format!("g{}", v / 5)),
        // One to four fields whose names vary with `v`, so the store's
        // list of field names grows across steps and reopens.
        fields: (0..1 + v % 4)
            .map(|i| FieldHash {
                field: muster::model::field_name(
                    ["email", "first_name", "custom.café", "groups", "title"]
                        [usize::from(v / 3 + i) % 5],
                ),
                hash: u64::from(v) << i,
            })
            .collect(),
        // The lifecycle marks of SPEC §11, on some objects.
        since: v
            .is_multiple_of(7)
            .then(|| muster::profile::Date::new(2026, 1 + v % 12, 1 + v % 28).unwrap()),
        invite_due: v % 6 == 1,
    }
}

pub(crate) fn run_steps<S: StateStore>(
    steps: &[Step],
    mut store: S,
    reopen: &mut dyn FnMut(S, Close) -> S,
) -> Result<(), TestCaseError> {
    let kind = ObjectKind::User;
    let mut model: BTreeMap<String, StoredObject> = BTreeMap::new();
    let mut journal: BTreeMap<u64, PendingOp> = BTreeMap::new();
    let mut records = None;
    for step in steps {
        let mut close = Close::Clean;
        match step {
            Step::Write {
                ops,
                acked,
                drop_rest,
                close: how,
            } => {
                close = *how;
                let ops: Vec<PendingOp> = ops
                    .iter()
                    .map(|&(k, delete, v)| PendingOp {
                        id: store.next_op_id().unwrap(),
                        kind,
                        key: format!("k{k}"),
                        action: if delete {
                            Action::Delete
                        } else {
                            Action::Update
                        },
                        // The journal keeps the mark of a write that invites.
                        invite: v % 2 == 1,
                        object: object(v),
                    })
                    .collect();
                store.begin(&ops).unwrap();
                for op in &ops {
                    journal.insert(op.id, op.clone());
                }
                // The sink gives every other acknowledged write an id of
                // its own, as an LMS does on a create.
                let acked: Vec<PendingOp> = ops[..(*acked).min(ops.len())]
                    .iter()
                    .map(|op| {
                        let mut op = op.clone();
                        if op.id % 2 == 0 {
                            op.object.lms_id = Some(format!("lms-new-{}", op.id));
                        }
                        op
                    })
                    .collect();
                let acked = &acked[..];
                let rest: Vec<u64> = if *drop_rest {
                    ops[acked.len()..].iter().map(|o| o.id).collect()
                } else {
                    vec![]
                };
                store.commit(acked, &rest).unwrap();
                for op in acked {
                    journal.remove(&op.id);
                    if op.action == Action::Delete {
                        model.remove(&op.key);
                    } else {
                        model.insert(op.key.clone(), op.object.clone());
                    }
                }
                for id in rest {
                    journal.remove(&id);
                }
            }
            Step::Records(n) => {
                store.set_last_records(kind, *n).unwrap();
                records = Some(*n);
            }
        }
        store = reopen(store, close);
        prop_assert_eq!(store.last_records(kind).unwrap(), records);
        let prior = store.prior(kind).unwrap();
        prop_assert_eq!(prior.len(), model.len());
        for (key, o) in &model {
            let stored = store.get(kind, key).unwrap();
            prop_assert_eq!(stored.as_ref(), Some(o));
            let p = prior.get(key).unwrap();
            prop_assert_eq!(p, o.prior_entry());
        }
        prop_assert_eq!(
            store.get(ObjectKind::Group, "k1").unwrap(),
            None,
            "kinds are apart"
        );
        let pending: BTreeMap<u64, PendingOp> = store
            .pending()
            .unwrap()
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        prop_assert_eq!(&pending, &journal);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 24 } else { 96 }))]

    #[test]
    fn stores_match_a_btreemap_model(steps in proptest::collection::vec(step(), 1..12)) {
        run_steps(&steps, MemoryStore::new(), &mut |s, _| s)?;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        run_steps(&steps, RedbStore::open(&path).unwrap(), &mut |mut store, close| {
            // Close the database, then open the file again.
            match close {
                Close::Clean => drop(store),
                Close::Checkpoint => {
                    store.checkpoint().unwrap();
                    drop(store);
                }
                Close::Crash => store.abandon(),
            }
            RedbStore::open(&path).unwrap()
        })?;
    }
}

/// A crash mid-append tears the journal's last record: it is cut off when
/// the store opens (its operation is pending again, for recovery to
/// settle), and what is appended next is read back after it.
#[test]
fn a_torn_journal_record_is_cut_off_and_later_writes_survive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let journal = dir.path().join("s.redb.journal");
    let kind = ObjectKind::User;
    let op = |store: &mut RedbStore, key: &str, v: u8| PendingOp {
        id: store.next_op_id().unwrap(),
        kind,
        key: key.into(),
        action: Action::Create,
        invite: false,
        object: object(v),
    };
    let mut store = RedbStore::open(&path).unwrap();
    let (a, b) = (op(&mut store, "a", 1), op(&mut store, "b", 2));
    store.begin(&[a.clone(), b.clone()]).unwrap();
    store.commit(std::slice::from_ref(&a), &[]).unwrap();
    store.abandon();
    // The crash took the last bytes of a's commit record.
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    let mut store = RedbStore::open(&path).unwrap();
    let ids = |s: &RedbStore| -> Vec<u64> { s.pending().unwrap().iter().map(|p| p.id).collect() };
    assert_eq!(ids(&store), vec![a.id, b.id], "a's commit was torn off");
    assert_eq!(store.get(kind, "a").unwrap(), None);
    let c = op(&mut store, "c", 3);
    store.begin(std::slice::from_ref(&c)).unwrap();
    store.commit(std::slice::from_ref(&c), &[b.id]).unwrap();
    store.abandon();

    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.get(kind, "c").unwrap(), Some(object(3)));
    assert_eq!(ids(&store), vec![a.id], "b was dropped after the cut");
    assert_eq!(store.prior(kind).unwrap().len(), 1);
}

#[test]
fn operation_ids_never_repeat_across_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let mut store = RedbStore::open(&path).unwrap();
        for _ in 0..5 {
            assert!(seen.insert(store.next_op_id().unwrap()));
        }
    }
}

const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");

/// A redb file whose META says `format`.
fn store_of_format(path: &std::path::Path, format: &str) {
    let db = redb::Database::create(path).unwrap();
    let w = db.begin_write().unwrap();
    w.open_table(META)
        .unwrap()
        .insert("format", format.as_bytes())
        .unwrap();
    w.commit().unwrap();
}

fn format_of(path: &std::path::Path) -> String {
    let db = redb::Database::open(path).unwrap();
    let r = redb::ReadableDatabase::begin_read(&db).unwrap();
    let t = r.open_table(META).unwrap();
    let v = redb::ReadableTable::get(&t, "format").unwrap().unwrap();
    String::from_utf8(v.value().to_vec()).unwrap()
}

/// Refused by name, and its journal is left as it was (a journal of a
/// format this muster does not know is not read, nor cut).
#[test]
fn a_store_of_another_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let journal = dir.path().join("s.redb.journal");
    store_of_format(&path, "muster-state/0");
    std::fs::write(&journal, b"records of another format").unwrap();
    let err = RedbStore::open(&path).err().unwrap().to_string();
    assert!(
        err.contains("muster-state/0") && err.contains(muster::store::FORMAT),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        b"records of another format"
    );
}

/// A `muster-state/3` store opens and is marked with this muster's format
/// (an older muster then refuses it by name instead of misreading the
/// journal's new records).
#[test]
fn a_muster_state_3_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    store_of_format(&path, "muster-state/3");
    drop(RedbStore::open(&path).unwrap());
    assert_eq!(format_of(&path), muster::store::FORMAT);
    assert_eq!(muster::store::FORMAT, "muster-state/6");
}

/// Journals and commits (acknowledged) the users `u{i}` for `i` in `keys`,
/// each with `object(v(i))`.
fn create_users(store: &mut RedbStore, keys: std::ops::Range<usize>, v: impl Fn(usize) -> u8) {
    let ops: Vec<PendingOp> = keys
        .map(|i| PendingOp {
            id: store.next_op_id().unwrap(),
            kind: ObjectKind::User,
            key: format!("u{i}"),
            action: Action::Create,
            invite: false,
            object: object(v(i)),
        })
        .collect();
    store.begin(&ops).unwrap();
    store.commit(&ops, &[]).unwrap();
}

/// A day's few writes wait in the journal between files (synced there);
/// once they name `REST_KEYS` keys, the sync at the end of a file moves
/// them into redb and the journal is emptied.
#[test]
fn small_days_wait_in_the_journal_until_it_is_worth_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let journal = dir.path().join("s.redb.journal");
    let kind = ObjectKind::User;
    let day = |store: &mut RedbStore, from: usize, n: usize| {
        create_users(store, from..from + n, |i| i as u8);
        store.sync().unwrap();
    };
    let mut store = RedbStore::open(&path).unwrap();
    day(&mut store, 0, 1000);
    drop(store);
    assert!(
        std::fs::metadata(&journal).unwrap().len() > 0,
        "day 1 waits in the journal"
    );
    let mut store = RedbStore::open(&path).unwrap();
    assert_eq!(store.prior(kind).unwrap().len(), 1000);
    day(&mut store, 1000, muster::store::REST_KEYS);
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        0,
        "folded into redb"
    );
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.prior(kind).unwrap().len(),
        1000 + muster::store::REST_KEYS
    );
    assert_eq!(store.get(kind, "u5").unwrap(), Some(object(5)));
}

/// A checkpoint of more keys than the journal reader reads ahead at once
/// (several chunks of values, deletions among them) leaves redb holding
/// each key's last object, and nothing of the deleted ones.
#[test]
fn a_checkpoint_of_many_keys_keeps_each_last_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let kind = ObjectKind::User;
    let write = |store: &mut RedbStore, ops: Vec<(String, Action, u8)>| {
        let ops: Vec<PendingOp> = ops
            .into_iter()
            .map(|(key, action, v)| PendingOp {
                id: store.next_op_id().unwrap(),
                kind,
                key,
                action,
                invite: false,
                object: object(v),
            })
            .collect();
        store.begin(&ops).unwrap();
        store.commit(&ops, &[]).unwrap();
    };
    let mut model = std::collections::BTreeMap::new();
    let mut store = RedbStore::open(&path).unwrap();
    // Day 1 in redb; day 2 in the journal, then folded in.
    let day1: Vec<_> = (0..10_000)
        .map(|i| (format!("u{i}"), Action::Create, (i % 251) as u8))
        .collect();
    for (key, _, v) in &day1 {
        model.insert(key.clone(), object(*v));
    }
    write(&mut store, day1);
    store.checkpoint().unwrap();
    let mut day2 = Vec::new();
    for i in (0..12_000).rev() {
        let key = format!("u{i}");
        let op = match i {
            _ if i >= 10_000 => (key, Action::Create, (i % 13) as u8),
            _ if i % 7 == 0 => (key, Action::Delete, 0),
            _ if i % 3 == 0 => (key, Action::Update, (i % 17) as u8 + 100),
            _ => continue,
        };
        match op.1 {
            Action::Delete => model.remove(&op.0),
            _ => model.insert(op.0.clone(), object(op.2)),
        };
        day2.push(op);
    }
    write(&mut store, day2);
    store.checkpoint().unwrap();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    let prior = store.prior(kind).unwrap();
    assert_eq!(prior.len(), model.len());
    for i in 0..12_000 {
        let key = format!("u{i}");
        assert_eq!(
            store.get(kind, &key).unwrap(),
            model.get(&key).cloned(),
            "{key}"
        );
        let entry = prior.get(&key).map(|p| (p.fingerprint, p.active));
        let want = model.get(&key).map(|o| (o.fingerprint, o.active));
        assert_eq!(entry, want, "{key}");
    }
}

/// A kind's prior comes from its digest file only when META vouches for
/// it: a store of an earlier format (no digest), a stale digest (another
/// checkpoint's) and a torn one are read from the table instead, and the
/// next checkpoint writes the digest again.
#[test]
fn a_missing_stale_or_torn_prior_digest_falls_back_to_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let digest = dir.path().join("s.redb.prior-user");
    let kind = ObjectKind::User;
    let write = |store: &mut RedbStore, from: usize, n: usize, v: u8| {
        create_users(store, from..from + n, |_| v);
        store.checkpoint().unwrap();
    };
    // `n` keys, the first `updated` of them updated.
    let check = |n: usize, updated: usize| {
        let store = RedbStore::open(&path).unwrap();
        let prior = store.prior(kind).unwrap();
        assert_eq!(prior.len(), n);
        for i in 0..n {
            let v = if i < updated { 9 } else { 7 };
            let want = object(v);
            let got = prior.get(&format!("u{i}")).unwrap();
            assert_eq!(
                (got.fingerprint, got.active),
                (want.fingerprint, want.active),
                "u{i}"
            );
        }
    };
    let mut store = RedbStore::open(&path).unwrap();
    write(&mut store, 0, 3000, 7);
    drop(store);
    let day1 = std::fs::read(&digest).expect("a digest file");
    // As a `/4` muster left it: the same tables, no digest.
    {
        let db = redb::Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        let mut meta = w.open_table(META).unwrap();
        assert!(meta.remove("prior/user").unwrap().is_some());
        meta.insert("format", b"muster-state/4".as_slice()).unwrap();
        drop(meta);
        w.commit().unwrap();
    }
    std::fs::remove_file(&digest).unwrap();
    check(3000, 0);
    let mut store = RedbStore::open(&path).unwrap();
    // Updates of a third, and new keys, over what only the table holds.
    write(&mut store, 0, 1000, 9);
    write(&mut store, 3000, 500, 7);
    drop(store);
    assert_eq!(format_of(&path), muster::store::FORMAT);
    assert!(std::fs::read(&digest).unwrap() != day1);
    check(3500, 1000);
    // Day 1's digest back in place: stale.
    std::fs::write(&digest, &day1).unwrap();
    check(3500, 1000);
    // The right one, torn.
    let mut store = RedbStore::open(&path).unwrap();
    write(&mut store, 3500, 10, 7);
    drop(store);
    let whole = std::fs::read(&digest).unwrap();
    std::fs::write(&digest, &whole[..whole.len() - 1]).unwrap();
    check(3510, 1000);
    std::fs::write(&digest, &whole).unwrap();
    check(3510, 1000);
    // And whole, it is what is read: the table emptied behind its back
    // does not show.
    {
        let db = redb::Database::open(&path).unwrap();
        let w = db.begin_write().unwrap();
        assert!(w.delete_table(USERS).unwrap());
        w.open_table(USERS).unwrap();
        w.commit().unwrap();
    }
    check(3510, 1000);
}

const USERS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("users");
