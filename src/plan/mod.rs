//! From a snapshot file to a plan: one [`PlannedRow`] per input record,
//! plus one per key the missing rule removes.
//!
//! # Design
//!
//! Planning has two phases. [`read`] makes one pass over the file: it maps
//! and validates every row and keeps, per row, only what the plan needs
//! afterwards — its line, its key and reference (manager or parent group) as
//! spans of one string arena, its fingerprint and a few flags — and applies
//! the rules that need the whole file but not the past: duplicate keys and
//! e-mails (every occurrence rejected). [`Plan::against`] then compares the
//! rows with the last applied state (a [`Prior`]): create, update,
//! unchanged, deactivate, delete, the missing rule, group cycles and
//! references that resolve to nothing. The first phase needs no state, so
//! several files can be read at once.
//!
//! Keys and e-mails are indexed by sorting `(hash, row)` pairs once the
//! file is read (see [`crate::diff`]): duplicates are neighbours, and
//! [`Plan::against`] merges the plan's sorted keys with the prior's in one
//! sequential pass, instead of a hash-table lookup (a cache miss) per row.
//!
//! Nothing is written before the pass ends, so a file refused for its header
//! or for not being text is refused whole. An update's list of changed
//! fields comes last, from [`Plan::resolve_update`], for the few rows whose
//! fingerprint moved.

mod files;
#[cfg(test)]
mod model_tests;
mod prior;
mod read;
mod resume;
mod rules;
mod settle;

pub use files::{diff_files, field_hashes_at, DiffError, DiffOutcome};
pub use prior::PlanPrior;
pub use read::{
    build, check, check_with_progress, read, read_with, Fingerprints, ListRefs, Progress,
    ReadOptions,
};
pub use resume::FirstPlan;
pub use settle::SettleError;

use crate::diff::decide::{
    decide_all, hash_key, same_key, span_str, Entry, Span, DELAYED, ENDED, INACTIVE, INVITE,
    INVITE_LATER, KNOWN, PROTECTED, REACTIVATE, RECORD, UNRESOLVED, VALID,
};
use crate::index::hash_run;
use crate::model::{Code, Field, FieldKind, FieldName, ObjectKind};
use crate::profile::{Date, Profile};
use crate::store::Prior;

pub use crate::model::Action;
pub use crate::snapshot::FileError;

/// A plan's rows counted in one pass ([`Plan::tally`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows by action, in [`Action::ALL`] order.
    pub by_action: [usize; 6],
    /// Rows that are not rejected but carry a code.
    pub flagged: usize,
}

impl Tally {
    pub fn count(&self, action: Action) -> usize {
        self.by_action[action.index()]
    }

    /// Whether every line is fine: nothing rejected and no code.
    pub fn is_clean(&self) -> bool {
        self.count(Action::Reject) == 0 && self.flagged == 0
    }
}

/// One line of the plan, borrowed from the [`Plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedRow<'a> {
    /// 1-based line where the record starts; 0 for inferred rows.
    pub line: u64,
    pub key: Option<&'a str>,
    pub action: Action,
    pub code: Option<Code>,
    pub message: &'a str,
}

/// The plan of one file.
#[derive(Debug)]
pub struct Plan {
    arena: String,
    entries: Vec<Entry>,
    messages: Vec<String>,
    /// `(key hash, row)` of every row with a key, sorted (after [`read`]).
    keys: Vec<(u64, u32)>,
    /// `(row, manager or parent id)` of the rows that name one, in row
    /// order (apart from the entries: most files have no such column).
    references: Vec<(u32, Span)>,
    /// `(row, the fields that changed)` of each update settled field by
    /// field ([`Plan::resolve_update`]), by row.
    changes: Vec<(u32, Box<[FieldName]>)>,
    key_is_email: bool,
    object: ObjectKind,
    /// The field of the references (a manager or a parent group).
    reference_field: Option<Field>,
    /// The fields updates write (`owned_fields`); `None`: all.
    owned: Option<Box<[Field]>>,
    /// The day the plan was made for (end dates, and the dates of SPEC §11).
    today: Date,
    /// Records read (blank lines are not records; the header is not counted).
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Rows decoded with the windows-1252 fallback.
    pub decoded_rows: u64,
}

impl Plan {
    fn new(profile: &Profile, size_hint: Option<u64>) -> Plan {
        let key_is_email = profile.slots[profile.key_slot].kind == FieldKind::Email;
        let mut plan = Plan {
            arena: String::new(),
            entries: Vec::new(),
            messages: Vec::new(),
            keys: Vec::new(),
            references: Vec::new(),
            changes: Vec::new(),
            key_is_email,
            object: profile.object,
            reference_field: profile.reference_slot.map(|s| profile.slots[s].field),
            owned: profile.lifecycle.owned.clone().map(Vec::into_boxed_slice),
            today: Date {
                year: 1970,
                month: 1,
                day: 1,
            },
            records: 0,
            bytes: 0,
            decoded_rows: 0,
        };
        if let Some(bytes) = size_hint {
            // A typical HR row is 100–250 bytes. Reserving for 150 avoids
            // most regrowth; what stays unused is never touched.
            let rows = (bytes / 150) as usize;
            plan.entries.reserve(rows);
            plan.keys.reserve(rows);
            plan.arena.reserve(rows * 40);
        }
        plan
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn object(&self) -> ObjectKind {
        self.object
    }

    pub fn rows(&self) -> impl Iterator<Item = PlannedRow<'_>> + '_ {
        (0..self.entries.len()).map(move |i| self.row(i))
    }

    /// Whether every line is fine: nothing rejected and no code.
    pub fn is_clean(&self) -> bool {
        self.tally().is_clean()
    }

    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|e| e.action == action).count()
    }

    /// Every action's count and the flagged rows, in one pass over the
    /// rows.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for e in &self.entries {
            t.by_action[e.action.index()] += 1;
            t.flagged += usize::from(e.code.is_some() && e.action != Action::Reject);
        }
        t
    }

    /// Row `i` of the plan (rows of records first, in file order; then the
    /// rows the missing rule adds).
    pub fn row(&self, i: usize) -> PlannedRow<'_> {
        let e = &self.entries[i];
        PlannedRow {
            line: e.line,
            key: (!e.key.is_none()).then(|| self.str(e.key)),
            action: e.action,
            code: e.code,
            message: self
                .messages
                .get(e.message as usize)
                .map_or("", String::as_str),
        }
    }

    /// The fingerprint of row `i` (0 for rejected and inferred rows).
    pub fn fingerprint(&self, i: usize) -> u128 {
        let f = self.entries[i].fingerprint;
        u128::from(f[0]) | u128::from(f[1]) << 64
    }

    /// Whether the object of row `i` is active after its write.
    pub fn active_after(&self, i: usize) -> bool {
        let e = &self.entries[i];
        !e.has(INACTIVE) && e.action != Action::Deactivate
    }

    /// The day the plan was made for.
    pub fn today(&self) -> Date {
        self.today
    }

    /// Whether row `i`'s write invites the user (a create, or the
    /// invitation its `invite_from` date made due).
    pub fn invites(&self, i: usize) -> bool {
        self.entries[i].has(INVITE)
    }

    /// Whether row `i` is a create whose invitation waits for its
    /// `invite_from` date.
    pub fn invite_later(&self, i: usize) -> bool {
        let e = &self.entries[i];
        e.action == Action::Create && e.has(INVITE_LATER)
    }

    /// Whether row `i` is an update that makes the object active again.
    pub fn reactivates(&self, i: usize) -> bool {
        self.entries[i].has(REACTIVATE)
    }

    /// Whether row `i` is a deactivation standing for a deletion
    /// `delete_after_days` delays (the store keeps since when).
    pub fn delays_deletion(&self, i: usize) -> bool {
        self.entries[i].has(DELAYED) && self.entries[i].action == Action::Deactivate
    }

    /// Whether row `i`, unchanged for the LMS, is recorded in the store:
    /// only fields muster does not own changed (`owned_fields`).
    pub fn records_only(&self, i: usize) -> bool {
        self.entries[i].has(RECORD) && self.entries[i].action == Action::Unchanged
    }

    /// Whether row `i`'s manager or parent reference resolves to nothing (the
    /// write leaves the link out).
    pub fn reference_unresolved(&self, i: usize) -> bool {
        self.entries[i].has(UNRESOLVED)
    }

    /// Compares the rows with `prior`, the last applied state of the plan's
    /// object kind (SPEC §3 steps 3–4): decides each valid row's action,
    /// adds the keys the missing rule removes, rejects groups on a parent
    /// cycle and flags references that resolve to no object.
    pub fn against(&mut self, profile: &Profile, prior: &dyn Prior) {
        let text = (self.arena.as_str(), self.key_is_email);
        let named = decide_all(
            (profile, self.today),
            prior,
            text,
            &self.keys,
            &mut self.entries,
        );
        self.explain_lifecycle(profile, prior);
        self.infer_missing(profile, prior, &named);
        if self.object == ObjectKind::Group {
            self.reject_cycles(prior);
        }
        if let Some(field) = self.reference_field {
            self.flag_unknown_references(prior, field);
        }
    }

    /// Says in the message of each row that an inactive status or a
    /// reached end date decided why: deactivated or deleted for it, or
    /// `unchanged` because the store does not know the object (nothing to
    /// apply), or because `protected` keeps it, or because its deletion
    /// waits (`delete_after_days`). The end date itself was said when the
    /// row was read. A create whose invitation waits for its `invite_from`
    /// date says so.
    fn explain_lifecycle(&mut self, profile: &Profile, prior: &dyn Prior) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if !e.has(VALID) || e.action == Action::Reject {
                continue;
            }
            if e.action == Action::Create && e.has(INVITE_LATER) {
                let (action, code) = (e.action, e.code);
                let mut parts: Vec<String> = self.take_message(i).into_iter().collect();
                parts.push("not invited yet: its `invite_from` date is after today".into());
                self.set(i, action, code, parts.join("; "));
                continue;
            }
            if !e.has(INACTIVE | ENDED) {
                continue;
            }
            let unknown = e.action == Action::Unchanged && !e.has(KNOWN);
            let kept = e.has(PROTECTED | DELAYED);
            if !matches!(e.action, Action::Deactivate | Action::Delete) && !unknown && !kept {
                continue;
            }
            let (action, code, inactive) = (e.action, e.code, e.has(INACTIVE));
            let since = match e.has(DELAYED) {
                true => self.prior_entry(prior, i).and_then(|p| p.since),
                false => None,
            };
            let said = self.take_message(i);
            let mut parts: Vec<String> = Vec::with_capacity(3);
            if inactive {
                parts.push("status inactive".into());
            }
            parts.extend(said);
            if unknown {
                parts.push("not in the store: nothing to apply".into());
            }
            parts.extend(self.kept_because(profile, i, since));
            self.set(i, action, code, parts.join("; "));
        }
    }

    /// Why row `i` is not deleted or deactivated as its rule says: it is
    /// protected, or its deletion waits (`since`: missing, ended or
    /// inactive since then, as the store says).
    fn kept_because(&self, profile: &Profile, i: usize, since: Option<Date>) -> Option<String> {
        let e = &self.entries[i];
        if e.has(PROTECTED) {
            return Some("protected: not deactivated or deleted".into());
        }
        if !e.has(DELAYED) {
            return None;
        }
        let days = profile.lifecycle.delete_after_days.unwrap_or_default();
        let since = since.unwrap_or(self.today);
        let on = since.plus_days(days);
        Some(match e.action {
            Action::Deactivate => format!(
                "deactivated: deleted on or after {on} (`delete_after_days = {days}`) unless it is back before"
            ),
            _ => format!("deactivated since {since}: deleted on or after {on} (`delete_after_days = {days}`)"),
        })
    }

    /// What `prior` has for the key of row `i`.
    fn prior_entry(&self, prior: &dyn Prior, i: usize) -> Option<crate::store::PriorEntry> {
        self.prior_get(prior, self.str(self.entries[i].key))
            .map(|(e, _)| e)
    }

    /// What `prior` has for `key`, and the key as the prior holds it
    /// (e-mail keys lower-cased).
    fn prior_get<'k>(
        &self,
        prior: &dyn Prior,
        key: &'k str,
    ) -> Option<(crate::store::PriorEntry, std::borrow::Cow<'k, str>)> {
        let key = if self.key_is_email {
            let mut folded = key.to_string();
            crate::diff::decide::fold_case(&mut folded);
            std::borrow::Cow::Owned(folded)
        } else {
            std::borrow::Cow::Borrowed(key)
        };
        prior.get(&key).map(|e| (e, key))
    }

    /// The rows of records planned as updates: their fingerprint moved.
    pub fn update_rows(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].action == Action::Update && self.entries[i].line > 0)
    }

    /// Where the record of row `i` starts in the file (its byte offset).
    pub fn record_start(&self, i: usize) -> u64 {
        self.entries[i].byte
    }

    /// Settles update row `i` given the names of the fields that changed.
    /// None changed (its fingerprint moved by a field only the old row had,
    /// or one only emptied where the profile keeps it): the row becomes
    /// `unchanged`, unless it reactivates or invites; otherwise its message
    /// names the changed fields. Fields muster does not own
    /// (`owned_fields`) are named as not sent; a row that changed only
    /// those is `unchanged` for the LMS and recorded in the store.
    pub fn resolve_update(&mut self, i: usize, mut changed: Vec<FieldName>) {
        let code = self.entries[i].code;
        let flags = self.entries[i].flags;
        let not_owned: Vec<FieldName> = match &self.owned {
            Some(owned) => {
                let (kept, other) = changed.into_iter().partition(|f| owned.contains(f));
                changed = kept;
                other
            }
            None => Vec::new(),
        };
        let other = self.take_message(i);
        let names = |fields: &[FieldName]| -> String {
            fields
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts: Vec<String> = Vec::with_capacity(4);
        if flags & REACTIVATE != 0 {
            parts.push("reactivated".into());
        }
        if flags & INVITE != 0 {
            parts.push("invited: its `invite_from` date is reached".into());
        }
        if !changed.is_empty() {
            parts.push(format!("changed: {}", names(&changed)));
        }
        if !not_owned.is_empty() {
            parts.push(format!(
                "changed, not sent (not in `owned_fields`): {}",
                names(&not_owned)
            ));
        }
        parts.extend(other);
        let message = parts.join("; ");
        if changed.is_empty() && flags & (REACTIVATE | INVITE) == 0 {
            if !not_owned.is_empty() {
                self.entries[i].flags |= RECORD;
            }
            self.set(i, Action::Unchanged, code, message);
            return;
        }
        self.set(i, Action::Update, code, message);
        if changed.is_empty() {
            return;
        }
        let row = i as u32;
        let at = self.changes.partition_point(|&(r, _)| r < row);
        match self.changes.get_mut(at) {
            Some(c) if c.0 == row => c.1 = changed.into(),
            _ => self.changes.insert(at, (row, changed.into())),
        }
    }

    /// The fields that changed of update row `i`, once it was settled
    /// ([`Plan::settle_updates`]).
    pub fn changed_fields(&self, i: usize) -> Option<&[FieldName]> {
        let row = i as u32;
        self.changes
            .binary_search_by_key(&row, |&(r, _)| r)
            .ok()
            .map(|k| &*self.changes[k].1)
    }

    /// Row `i`'s manager or parent id, or [`Span::NONE`].
    fn reference(&self, i: usize) -> Span {
        self.references
            .binary_search_by_key(&(i as u32), |&(row, _)| row)
            .map_or(Span::NONE, |k| self.references[k].1)
    }

    /// The first row holding `key`.
    fn find_key(&self, key: &str) -> Option<u32> {
        let h = hash_key(self.key_is_email, key, &mut String::new());
        hash_run(&self.keys, h)
            .iter()
            .find(|&&(_, i)| {
                same_key(
                    self.key_is_email,
                    self.str(self.entries[i as usize].key),
                    key,
                )
            })
            .map(|&(_, i)| i)
    }

    fn str(&self, s: Span) -> &str {
        span_str(&self.arena, s)
    }

    fn intern(&mut self, s: &str) -> Span {
        let start = self.arena.len();
        self.arena.push_str(s);
        Span {
            start: start as u32,
            len: s.len() as u32,
        }
    }

    fn set(&mut self, i: usize, action: Action, code: Option<Code>, message: String) {
        let e = &mut self.entries[i];
        e.action = action;
        e.code = code;
        match (message.is_empty(), e.message) {
            (true, _) => e.message = u32::MAX,
            // Each row's message is its own: a new one takes its place.
            (false, u32::MAX) => {
                e.message = self.messages.len() as u32;
                self.messages.push(message);
            }
            (false, at) => self.messages[at as usize] = message,
        }
    }

    /// Row `i`'s message, taken out to be said again in a new one (the
    /// row keeps its slot for [`Plan::set`] to fill).
    fn take_message(&mut self, i: usize) -> Option<String> {
        let at = self.entries[i].message;
        let text = self.messages.get_mut(at as usize).map(std::mem::take);
        text.filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Date;

    /// The one-pass tally counts what the rows say: each action, and the
    /// applied rows carrying a code (the fixture has creates, unchanged,
    /// rejects, and applied rows flagged `unknown_reference`).
    #[test]
    fn the_tally_counts_the_rows() {
        let profile = Profile::preset("lucca-360learning").unwrap();
        let input = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/lucca-360learning/input.csv"
        ))
        .unwrap();
        let plan = check(&profile, &input[..], Date::new(2026, 11, 21).unwrap()).unwrap();
        let tally = plan.tally();
        for action in Action::ALL {
            let rows = plan.rows().filter(|r| r.action == action).count();
            assert_eq!(tally.count(action), rows, "{action:?}");
            assert_eq!(Action::ALL[action.index()], action);
        }
        let flagged = plan
            .rows()
            .filter(|r| r.code.is_some() && r.action != Action::Reject)
            .count();
        assert_eq!(tally.flagged, flagged);
        assert!(flagged > 0 && tally.count(Action::Reject) > 0, "{tally:?}");
        assert!(!tally.is_clean());
    }
}
