//! The differ against a naive model: random sequences of snapshots applied
//! one after another; after each, the plan's actions and the resulting state
//! must be what a plain `HashMap` model of the SPEC rules says. A unit test of
//! the crate, so that [`key_hash`](super::key_hash) keeps 3 bits and the
//! sorted indexes meet hash collisions on almost every key.

use std::collections::{BTreeSet, HashMap};

use crate::plan::{self, Action};
use crate::profile::{Date, Profile};
use crate::store::{MemoryPrior, NoPrior, Prior};
use proptest::prelude::*;

const PROFILE: &str = r#"
object = "user"
delimiter = ","
header = "none"
list_separator = ";"
columns = ["external_id", "first_name", "last_name", "email", "groups", "status"]
missing = "delete"
inactive_action = "deactivate"
"#;

#[derive(Clone, Debug)]
struct Row {
    key: u8,
    first: u8,
    upper_email: bool,
    groups: Vec<u8>,
    status: u8, // 0 active, 1 inactive, 2 empty (active)
    valid: bool,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..10,
        0u8..3,
        any::<bool>(),
        proptest::collection::vec(0u8..4, 0..4),
        0u8..3,
        proptest::bool::weighted(0.9),
    )
        .prop_map(|(key, first, upper_email, groups, status, valid)| Row {
            key,
            first,
            upper_email,
            groups,
            status,
            valid,
        })
}

fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let email = format!("user{}@x.example", r.key);
        let email = if r.upper_email {
            email.to_uppercase()
        } else {
            email
        };
        let groups: Vec<String> = r.groups.iter().map(|g| format!(" g{g} ")).collect();
        let status = ["Active", "inactive", ""][r.status as usize];
        let first = if r.valid {
            format!("F{}", r.first)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "K{},{first},Last,{email},{},{status}\n",
            r.key,
            groups.join(";")
        ));
    }
    out
}

/// What the model keeps per key: the normalised values and whether active.
#[derive(Clone, Debug, PartialEq)]
struct State {
    first: u8,
    groups: BTreeSet<u8>,
    active: bool,
}

/// The SPEC rules, naively: expected action per row, and the state after.
fn model_step(model: &mut HashMap<u8, State>, rows: &[Row]) -> Vec<Action> {
    let mut count: HashMap<u8, usize> = HashMap::new();
    for r in rows {
        *count.entry(r.key).or_default() += 1;
    }
    let mut actions = Vec::new();
    for r in rows {
        if !r.valid || count[&r.key] > 1 {
            actions.push(Action::Reject);
            continue;
        }
        let inactive = r.status == 1;
        let new = State {
            first: r.first,
            groups: r.groups.iter().copied().collect(),
            active: !inactive,
        };
        let action = match model.get(&r.key) {
            None if inactive => Action::Unchanged,
            None => Action::Create,
            Some(old) if inactive && old.active => Action::Deactivate,
            Some(old) if *old == new => Action::Unchanged,
            Some(_) => Action::Update,
        };
        if action != Action::Unchanged {
            model.insert(r.key, new);
        }
        actions.push(action);
    }
    // Missing from the file (not even on a rejected row): deleted.
    let mut gone: Vec<u8> = model
        .keys()
        .copied()
        .filter(|k| !count.contains_key(k))
        .collect();
    gone.sort_by_key(|k| format!("K{k}"));
    for k in gone {
        model.remove(&k);
        actions.push(Action::Delete);
    }
    actions
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 256 } else { 2048 }))]

    #[test]
    fn differ_matches_a_naive_model(days in proptest::collection::vec(proptest::collection::vec(row(), 0..12), 1..6)) {
        let profile = Profile::from_toml("model", PROFILE).unwrap();
        let today = Date::new(2026, 11, 21).unwrap();
        let mut prior = MemoryPrior::new();
        let mut model: HashMap<u8, State> = HashMap::new();
        for (day, rows) in days.iter().enumerate() {
            let text = render(rows);
            let plan = plan::build(&profile, text.as_bytes(), today, &prior, &mut |_| {}).unwrap();
            let expected = model_step(&mut model, rows);
            let got: Vec<Action> = plan.rows().map(|r| r.action).collect();
            prop_assert_eq!(&got, &expected, "day {}:\n{}", day, text);
            plan.apply_to(&mut prior);
            prop_assert_eq!(prior.len(), model.len(), "day {}", day);
            // `muster diff` of the day before and this day: the day before,
            // as a plan applied to an empty store, is the prior.
            if day > 0 {
                let old = render(&days[day - 1]);
                let mut old_plan = plan::read(&profile, old.as_bytes(), today, None, &mut |_| {}).unwrap();
                old_plan.against(&profile, &NoPrior);
                let mut fresh = MemoryPrior::new();
                old_plan.apply_to(&mut fresh);
                let old_prior = old_plan.into_prior();
                prop_assert_eq!(old_prior.len(), fresh.len());
                let via_plan = plan::build(&profile, text.as_bytes(), today, &old_prior, &mut |_| {}).unwrap();
                let via_memory = plan::build(&profile, text.as_bytes(), today, &fresh, &mut |_| {}).unwrap();
                prop_assert_eq!(via_plan.rows().collect::<Vec<_>>(), via_memory.rows().collect::<Vec<_>>());
            }
            for (k, state) in &model {
                let entry = prior.get(&format!("K{k}"));
                prop_assert!(entry.is_some(), "day {}: K{} missing from the store", day, k);
                prop_assert_eq!(entry.unwrap().active, state.active, "day {}: K{}", day, k);
            }
        }
    }
}

/// A day's rows as a file, written one of several ways a row can be spelled
/// and mean the same (`style` per row: quoted fields, blanks around a
/// value), so that records differ where rows do not.
fn render_styled(rows: &[Row], styles: &[u8]) -> String {
    let plain = render(rows);
    let mut out = String::new();
    for (line, style) in plain.lines().zip(styles.iter().cycle()) {
        let cells: Vec<String> = line
            .split(',')
            .enumerate()
            .map(|(i, c)| match (style, i) {
                (1, 1) => format!("\"{c}\""),
                (2, 2) => format!(" {c} "),
                (3, _) => format!("\"{c}\""),
                _ => c.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 64 } else { 512 }))]

    /// `muster diff` of files read alike compares records by their hash as
    /// read, then the changed ones field by field: the plan is the one the
    /// normalised fingerprints give, row for row.
    #[test]
    fn the_record_hash_diff_is_the_fingerprint_diff(
        old in proptest::collection::vec(row(), 0..12),
        new in proptest::collection::vec(row(), 0..12),
        old_styles in proptest::collection::vec(0u8..4, 1..4),
        new_styles in proptest::collection::vec(0u8..4, 1..4),
    ) {
        let profile = Profile::from_toml("model", PROFILE).unwrap();
        let today = Date::new(2026, 11, 21).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (old_path, new_path) = (dir.path().join("old.csv"), dir.path().join("new.csv"));
        std::fs::write(&old_path, render_styled(&old, &old_styles)).unwrap();
        std::fs::write(&new_path, render_styled(&new, &new_styles)).unwrap();
        let by_records = super::files::diff_files_as(&profile, &old_path, &new_path, today, true).unwrap();
        let by_fields = super::files::diff_files_as(&profile, &old_path, &new_path, today, false).unwrap();
        let rows = |d: &super::DiffOutcome| d.plan.rows().map(|r| (r.line, r.key.map(str::to_string), r.action, r.code, r.message.to_string())).collect::<Vec<_>>();
        prop_assert_eq!(rows(&by_records), rows(&by_fields));
        prop_assert_eq!(by_records.objects, by_fields.objects);
        prop_assert_eq!(by_records.old_records, by_fields.old_records);
    }
}
