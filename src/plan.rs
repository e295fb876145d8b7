//! From a snapshot file to a plan: one [`PlannedRow`] per input record.
//!
//! # Design
//!
//! One pass over the file maps and validates every row and keeps, per row,
//! only what the plan needs afterwards: its line, its key, its e-mail and its
//! reference (manager or parent group) as spans of one string arena, and its
//! provisional action. Rules that need the whole file — duplicate keys and
//! e-mails (every occurrence is rejected), group cycles, references that
//! resolve to no object — run once the pass is over, on those compact rows.
//! Nothing is written before the pass ends, so a file refused for its header
//! or for not being text is refused whole.
//!
//! This module plans against an empty previous state (`muster check`).

use std::io::Read;

use ahash::RandomState;
use hashbrown::HashTable;

use crate::code::Code;
use crate::diff::{changed_fields, FieldHash, Fingerprinter, NoPrior, Prior, PriorEntry};
use crate::profile::{
    Date, EndAction, FieldKind, Layout, MappedRow, MissingRule, ObjectKind, Profile,
};
use crate::reader::Record;
use crate::snapshot::Snapshot;

/// What a row does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Deactivate,
    Delete,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Deactivate => "deactivate",
            Action::Delete => "delete",
            Action::Reject => "reject",
        }
    }
}

pub use crate::snapshot::FileError;

/// A span of the plan's string arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const NONE: Span = Span {
        start: u32::MAX,
        len: 0,
    };

    fn is_none(self) -> bool {
        self.start == u32::MAX
    }
}

#[derive(Clone, Debug)]
struct Entry {
    line: u64,
    key: Span,
    email: Span,
    reference: Span,
    action: Action,
    code: Option<Code>,
    /// Index into `messages`, or `u32::MAX`.
    message: u32,
    /// The prior state knows this key.
    known: bool,
    /// The row's status is not inactive (what the object is after a write).
    active: bool,
    /// The row's fingerprint (0 for rejected and inferred rows).
    fingerprint: u128,
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

/// A row whose fingerprint moved: which fields changed is decided by
/// [`Plan::resolve_updates`].
#[derive(Clone, Debug)]
struct Candidate {
    entry: u32,
    fields: Vec<FieldHash>,
}

/// The plan of one file.
#[derive(Debug, Default)]
pub struct Plan {
    arena: String,
    entries: Vec<Entry>,
    messages: Vec<String>,
    candidates: Vec<Candidate>,
    /// Records read (blank lines are not records; the header is not counted).
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Rows decoded with the windows-1252 fallback.
    pub decoded_rows: u64,
}

impl Plan {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn rows(&self) -> impl Iterator<Item = PlannedRow<'_>> + '_ {
        self.entries.iter().map(move |e| PlannedRow {
            line: e.line,
            key: (!e.key.is_none()).then(|| self.str(e.key)),
            action: e.action,
            code: e.code,
            message: self
                .messages
                .get(e.message as usize)
                .map_or("", String::as_str),
        })
    }

    /// Whether every line is fine: nothing rejected and no code.
    pub fn is_clean(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.action != Action::Reject && e.code.is_none())
    }

    pub fn count(&self, action: Action) -> usize {
        self.entries.iter().filter(|e| e.action == action).count()
    }

    /// Whether the plan deletes `key` as missing from the file.
    fn inferred_delete(&self, key: &str) -> bool {
        // Inferred rows come last, sorted by key.
        let first = self.entries.partition_point(|e| e.line != 0);
        let inferred = &self.entries[first..];
        inferred
            .binary_search_by(|e| self.str(e.key).cmp(key))
            .is_ok_and(|i| inferred[i].action == Action::Delete)
    }

    /// Keys of the update candidates: rows whose fingerprint moved against
    /// the prior state. Their old field hashes go to [`Plan::resolve_updates`].
    pub fn update_candidates(&self) -> impl Iterator<Item = &str> + '_ {
        self.candidates
            .iter()
            .map(|c| self.str(self.entries[c.entry as usize].key))
    }

    /// Decides the update candidates: `old(key)` gives the field hashes the
    /// prior state holds for the key. A candidate with no changed field is
    /// `unchanged` (e.g. a field only emptied where the profile keeps it);
    /// the others are updates whose message names the changed fields.
    pub fn resolve_updates(&mut self, old: &mut dyn FnMut(&str) -> Option<Vec<FieldHash>>) {
        let candidates = std::mem::take(&mut self.candidates);
        for c in &candidates {
            let i = c.entry as usize;
            if self.entries[i].action != Action::Update {
                continue; // rejected since (a duplicate)
            }
            let key = self.str(self.entries[i].key).to_string();
            let changed = match old(&key) {
                Some(old) => changed_fields(&old, &c.fields),
                None => c.fields.iter().map(|f| f.field.clone()).collect(),
            };
            let code = self.entries[i].code;
            if changed.is_empty() {
                let message = self
                    .messages
                    .get(self.entries[i].message as usize)
                    .cloned()
                    .unwrap_or_default();
                self.set(i, Action::Unchanged, code, message);
            } else {
                let mut message = format!("changed: {}", changed.join(", "));
                if let Some(other) = self.messages.get(self.entries[i].message as usize) {
                    message = format!("{message}; {other}");
                }
                self.set(i, Action::Update, code, message);
            }
        }
        self.candidates = candidates;
    }

    /// The state this plan leaves for its kind, applied over `prior` as if
    /// every write succeeded: what `muster diff` uses for OLD.
    pub fn apply_to(&self, prior: &mut crate::diff::MemoryPrior) {
        for e in &self.entries {
            let key = self.str(e.key);
            match e.action {
                Action::Create | Action::Update => prior.insert(
                    key,
                    PriorEntry {
                        fingerprint: e.fingerprint,
                        active: e.active,
                    },
                ),
                Action::Deactivate => prior.insert(
                    key,
                    PriorEntry {
                        fingerprint: e.fingerprint,
                        active: false,
                    },
                ),
                Action::Delete => prior.remove(key),
                Action::Unchanged | Action::Reject => {}
            }
        }
    }

    fn str(&self, s: Span) -> &str {
        &self.arena[s.start as usize..(s.start + s.len) as usize]
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
        if message.is_empty() {
            e.message = u32::MAX;
        } else {
            e.message = self.messages.len() as u32;
            self.messages.push(message);
        }
    }
}

/// How far a long read has come, for progress displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub records: u64,
    pub bytes: u64,
}

/// Reads a whole snapshot through `profile` and plans it against an empty
/// previous state, with `today` for end dates (`muster check`).
pub fn check<R: Read>(profile: &Profile, input: R, today: Date) -> Result<Plan, FileError> {
    build(profile, input, today, &NoPrior, &mut |_| {})
}

/// [`check`], calling `progress` every 65,536 records.
pub fn check_with_progress<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    build(profile, input, today, &NoPrior, progress)
}

/// Reads a whole snapshot through `profile` and plans it against `prior`,
/// the last applied state of the profile's object kind (SPEC §3 steps 2–4).
///
/// Rows whose fingerprint moved are left as update candidates until
/// [`Plan::resolve_updates`] is given their old field hashes; until then they
/// read as `update` with no field list.
pub fn build<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    prior: &dyn Prior,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let mut snapshot = Snapshot::open(profile, input)?;
    let layout = snapshot.layout().clone();
    let mut rec = Record::new();
    let mut plan = Plan::default();
    let mut row = MappedRow::new();
    let mut fingerprinter = Fingerprinter::new(profile);
    let key_is_email = profile.slots[profile.key_slot].kind == FieldKind::Email;
    let mut keys = RowIndex::new(|e| e.key, key_is_email);
    let mut emails = RowIndex::new(|e| e.email, false);
    let mut dup_keys: Vec<u32> = Vec::new();
    let mut dup_emails: Vec<u32> = Vec::new();
    let mut folded = String::new();
    while snapshot.read_record(&mut rec)? {
        plan.records += 1;
        if plan.records % 65_536 == 0 {
            progress(Progress {
                records: plan.records,
                bytes: snapshot.byte_offset(),
            });
        }
        let idx = plan.entries.len() as u32;
        let result = profile.map(&rec, &layout, &mut row);
        let key = row.key_as_read().map_or(Span::NONE, |k| plan.intern(k));
        let known = row.key_as_read().and_then(|k| prior.get(k));
        let mut entry = Entry {
            line: rec.position().line,
            key,
            email: Span::NONE,
            reference: Span::NONE,
            action: Action::Reject,
            code: None,
            message: u32::MAX,
            known: known.is_some(),
            active: true,
            fingerprint: 0,
        };
        if row.decoded_column.is_some() {
            plan.decoded_rows += 1;
        }
        let message = match result {
            Ok(()) => {
                entry.fingerprint = fingerprinter.fingerprint(&row);
                entry.active = profile.status_slot.and_then(|s| row.get(s)) != Some("inactive");
                entry.action = decide(profile, &row, today, known, entry.fingerprint);
                if entry.action == Action::Update {
                    plan.candidates.push(Candidate {
                        entry: idx,
                        fields: fingerprinter.field_hashes(&row),
                    });
                }
                if let Some(r) = profile.reference_slot.and_then(|s| row.get(s)) {
                    // Most references name a row already read: share its key.
                    entry.reference = match keys.find(&plan, r) {
                        Some(i) if plan.str(plan.entries[i as usize].key) == r => {
                            plan.entries[i as usize].key
                        }
                        _ => plan.intern(r),
                    };
                }
                if let Some(c) = row.decoded_column {
                    format!(
                        "column {}: decoded as windows-1252 (the file is not UTF-8)",
                        c + 1
                    )
                } else {
                    String::new()
                }
            }
            Err(issue) => {
                entry.code = Some(issue.code);
                issue.describe(&layout)
            }
        };
        if profile.object == ObjectKind::User {
            if let Some(email) = profile
                .email_slot
                .and_then(|s| email_as_read(&rec, &layout, &row, s))
            {
                folded.clear();
                folded.push_str(email);
                fold(&mut folded);
                entry.email = plan.intern(&folded);
            }
        }
        plan.entries.push(entry);
        if !message.is_empty() {
            let i = idx as usize;
            let (a, c) = (plan.entries[i].action, plan.entries[i].code);
            plan.set(i, a, c, message);
        }
        // Duplicate keys and e-mails: every occurrence counts, rejected rows too.
        if !key.is_none() {
            if let Some(first) = keys.insert(&plan, idx) {
                dup_keys.extend([first, idx]);
            }
        }
        if !plan.entries[idx as usize].email.is_none() {
            if let Some(first) = emails.insert(&plan, idx) {
                dup_emails.extend([first, idx]);
            }
        }
    }
    plan.bytes = snapshot.byte_offset();
    tracing::debug!(records = plan.records, bytes = plan.bytes, profile = %profile.name, "file read");

    reject_duplicates(
        &mut plan,
        dup_keys,
        Code::DuplicateKey,
        |e| e.key,
        profile.slots[profile.key_slot].field.name(),
    );
    reject_duplicates(
        &mut plan,
        dup_emails,
        Code::DuplicateEmail,
        |e| e.email,
        "email",
    );
    infer_missing(&mut plan, &keys, profile, prior);
    if profile.object == ObjectKind::Group {
        reject_cycles(&mut plan, &keys, prior);
    }
    if let Some(slot) = profile.reference_slot {
        flag_unknown_references(
            &mut plan,
            &keys,
            prior,
            profile.slots[slot].field.name(),
            profile.object,
        );
    }
    Ok(plan)
}

/// The action for a valid row, given what the prior state knows of its key
/// (SPEC §3 step 3 and its decided edge cases).
fn decide(
    profile: &Profile,
    row: &MappedRow,
    today: Date,
    known: Option<PriorEntry>,
    fingerprint: u128,
) -> Action {
    let inactive = profile.status_slot.and_then(|s| row.get(s)) == Some("inactive");
    let ended = profile
        .end_date_slot
        .and_then(|s| row.get(s))
        .and_then(Date::parse_iso)
        .is_some_and(|d| d <= today);
    let Some(known) = known else {
        // Nothing to apply for an inactive or ended user the store does not
        // know; a key deleted earlier that comes back is a create.
        return if inactive || ended {
            Action::Unchanged
        } else {
            Action::Create
        };
    };
    let ending = |action: EndAction| match action {
        EndAction::Delete => Action::Delete,
        EndAction::Deactivate => Action::Deactivate,
    };
    // Where both apply, delete wins over deactivate.
    let end_action = ended.then(|| ending(profile.end_date_action));
    let inactive_action = inactive.then(|| ending(profile.inactive_action));
    match (end_action, inactive_action) {
        (Some(Action::Delete), _) | (_, Some(Action::Delete)) => return Action::Delete,
        (Some(_), _) | (_, Some(_)) if known.active => return Action::Deactivate,
        _ => {}
    }
    if known.fingerprint == fingerprint {
        Action::Unchanged
    } else {
        Action::Update
    }
}

/// Keys the prior state holds that the file does not name: the profile's
/// `missing` rule, for full snapshots. A key the file names on a rejected
/// row is not missing.
fn infer_missing(plan: &mut Plan, keys: &RowIndex, profile: &Profile, prior: &dyn Prior) {
    let action = match profile.missing {
        MissingRule::Ignore => return,
        MissingRule::Delete => Action::Delete,
        MissingRule::Deactivate => Action::Deactivate,
    };
    let mut missing: Vec<(String, bool)> = Vec::new();
    prior.for_each_key(&mut |k| {
        if keys.find(plan, k).is_none() {
            let active = prior.get(k).is_some_and(|e| e.active);
            missing.push((k.to_string(), active));
        }
    });
    missing.sort_unstable();
    for (key, active) in missing {
        // An object already inactive has nothing left to deactivate.
        if action == Action::Deactivate && !active {
            continue;
        }
        let key = plan.intern(&key);
        let message = format!("not in the file: `missing = \"{}\"`", action.as_str());
        plan.entries.push(Entry {
            line: 0,
            key,
            email: Span::NONE,
            reference: Span::NONE,
            action,
            code: None,
            message: u32::MAX,
            known: true,
            active: false,
            fingerprint: 0,
        });
        let i = plan.entries.len() - 1;
        plan.set(i, action, None, message);
    }
}

/// The e-mail of a row for duplicate detection: the normalised value when the
/// row mapped, else the cell as read.
fn email_as_read<'a>(
    rec: &'a Record,
    layout: &Layout,
    row: &'a MappedRow,
    slot: usize,
) -> Option<&'a str> {
    if let Some(v) = row.get(slot) {
        return Some(v);
    }
    let col = layout.column_of_slot[slot]?;
    let raw = std::str::from_utf8(rec.get(col)?).ok()?.trim();
    (!raw.is_empty()).then_some(raw)
}

/// Lower-cases in place (ASCII fast path).
fn fold(s: &mut String) {
    if s.is_ascii() {
        s.make_ascii_lowercase();
    } else {
        *s = s.to_lowercase();
    }
}

/// An index of rows by one of their strings (key or e-mail), holding each
/// string's hash so growing the table never reads the arena again.
struct RowIndex {
    table: HashTable<(u64, u32)>,
    hasher: RandomState,
    fold_case: bool,
    field: fn(&Entry) -> Span,
}

impl RowIndex {
    fn new(field: fn(&Entry) -> Span, fold_case: bool) -> RowIndex {
        RowIndex {
            table: HashTable::new(),
            hasher: RandomState::with_seeds(1, 2, 3, 4),
            fold_case,
            field,
        }
    }

    fn hash(&self, s: &str) -> u64 {
        if self.fold_case && s.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hasher.hash_one(s.to_ascii_lowercase())
        } else {
            self.hasher.hash_one(s)
        }
    }

    fn same(&self, a: &str, b: &str) -> bool {
        if self.fold_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    }

    /// The first row holding `value`.
    fn find(&self, plan: &Plan, value: &str) -> Option<u32> {
        let h = self.hash(value);
        self.table
            .find(h, |&(eh, i)| {
                eh == h && self.same(plan.str((self.field)(&plan.entries[i as usize])), value)
            })
            .map(|&(_, i)| i)
    }

    /// Adds row `idx`; returns the first row that already held the same value.
    fn insert(&mut self, plan: &Plan, idx: u32) -> Option<u32> {
        let value = plan.str((self.field)(&plan.entries[idx as usize]));
        let h = self.hash(value);
        let field = self.field;
        let fold = self.fold_case;
        let same = |a: &str, b: &str| {
            if fold {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self.table.find(h, |&(eh, i)| {
            eh == h && same(plan.str(field(&plan.entries[i as usize])), value)
        }) {
            Some(&(_, first)) => Some(first),
            None => {
                self.table.insert_unique(h, (h, idx), |&(eh, _)| eh);
                None
            }
        }
    }
}

fn reject_duplicates(
    plan: &mut Plan,
    mut dups: Vec<u32>,
    code: Code,
    field: fn(&Entry) -> Span,
    name: &str,
) {
    if dups.is_empty() {
        return;
    }
    dups.sort_unstable();
    dups.dedup();
    // Lines of each duplicated value, for the messages.
    let mut lines: ahash::AHashMap<String, Vec<u64>> = ahash::AHashMap::new();
    for &i in &dups {
        let e = &plan.entries[i as usize];
        let v = plan.str(field(e)).to_lowercase();
        lines.entry(v).or_default().push(e.line);
    }
    for &i in &dups {
        let e = &plan.entries[i as usize];
        // An earlier problem of the row wins.
        if e.action == Action::Reject {
            continue;
        }
        let value = plan.str(field(e)).to_string();
        let all = &lines[&value.to_lowercase()];
        let shown: Vec<String> = all.iter().take(10).map(u64::to_string).collect();
        let more = if all.len() > 10 { ", …" } else { "" };
        let message = format!(
            "{name} {value:?} occurs {} times in the file (lines {}{more}); no occurrence is applied",
            all.len(),
            shown.join(", ")
        );
        plan.set(i as usize, Action::Reject, Some(code), message);
    }
}

/// Whether the object `key` names will exist after the plan: the file
/// creates, updates or deactivates it, or leaves a known object as it is
/// (unchanged, or rejected: its state stays), or does not name it and the
/// prior state holds it (unless the missing rule deletes it).
fn exists(plan: &Plan, keys: &RowIndex, prior: &dyn Prior, key: &str) -> bool {
    match keys.find(plan, key) {
        Some(i) => {
            let e = &plan.entries[i as usize];
            match e.action {
                Action::Create | Action::Update | Action::Deactivate => true,
                Action::Unchanged | Action::Reject => e.known,
                Action::Delete => false,
            }
        }
        None => prior.get(key).is_some() && !plan.inferred_delete(key),
    }
}

/// Every group on a parent cycle is rejected, naming the ids in the cycle.
fn reject_cycles(plan: &mut Plan, keys: &RowIndex, prior: &dyn Prior) {
    let n = plan.entries.len();
    let parent: Vec<Option<u32>> = (0..n)
        .map(|i| {
            let e = &plan.entries[i];
            let alive = matches!(
                e.action,
                Action::Create | Action::Update | Action::Deactivate
            );
            if e.reference.is_none() || !alive {
                return None;
            }
            let parent = plan.str(e.reference);
            keys.find(plan, parent)
                .filter(|_| exists(plan, keys, prior, parent))
        })
        .collect();
    // 0 = unseen, 1 = on the current walk, 2 = done.
    let mut state = vec![0u8; n];
    let mut cycles: Vec<Vec<u32>> = Vec::new();
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        let mut walk = Vec::new();
        let mut at = Some(start as u32);
        while let Some(i) = at {
            match state[i as usize] {
                0 => {
                    state[i as usize] = 1;
                    walk.push(i);
                    at = parent[i as usize];
                }
                1 => {
                    let from = walk.iter().position(|&w| w == i).unwrap_or(0);
                    cycles.push(walk[from..].to_vec());
                    break;
                }
                _ => break,
            }
        }
        for w in walk {
            state[w as usize] = 2;
        }
    }
    for cycle in cycles {
        let ids: Vec<String> = cycle
            .iter()
            .map(|&i| plan.str(plan.entries[i as usize].key).to_string())
            .collect();
        let message = format!("parent_id forms a cycle: {} → {}", ids.join(" → "), ids[0]);
        for &i in &cycle {
            plan.set(
                i as usize,
                Action::Reject,
                Some(Code::GroupCycle),
                message.clone(),
            );
        }
    }
}

/// A reference to an id that exists nowhere does not stop the row: it is
/// applied without the link, and its line says so.
fn flag_unknown_references(
    plan: &mut Plan,
    keys: &RowIndex,
    prior: &dyn Prior,
    field: &str,
    object: ObjectKind,
) {
    for i in 0..plan.entries.len() {
        let e = &plan.entries[i];
        if e.reference.is_none()
            || matches!(e.action, Action::Reject | Action::Delete)
            || e.code.is_some()
        {
            continue;
        }
        let r = plan.str(e.reference);
        if !exists(plan, keys, prior, r) {
            let why = match keys.find(plan, r).map(|j| &plan.entries[j as usize]) {
                Some(target) => match (target.action, target.code) {
                    (Action::Delete, _) => format!("names line {}, which deletes it", target.line),
                    (_, Some(code)) => {
                        format!("names line {}, which is rejected ({code})", target.line)
                    }
                    _ => format!(
                        "names line {}, which creates nothing (inactive or ended)",
                        target.line
                    ),
                },
                None => format!("matches no {} in the file or the store", object.as_str()),
            };
            let message = format!("{field} {r:?} {why}; applied without the link");
            let action = e.action;
            plan.set(i, action, Some(Code::UnknownReference), message);
        }
    }
}
