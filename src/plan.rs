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

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::code::Code;
use crate::diff::{
    hash_run, key_hash, sort_index, Fingerprinter, MemoryPrior, NoPrior, Prior, PriorEntry,
};
use crate::profile::{
    Date, EndAction, FieldKind, FieldName, Layout, MappedRow, MissingRule, ObjectKind, Profile,
};
use crate::reader::{ChunkOptions, Offset, Record};
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
    /// Every action, in the order summaries list them.
    pub const ALL: [Action; 6] = [
        Action::Create,
        Action::Update,
        Action::Unchanged,
        Action::Deactivate,
        Action::Delete,
        Action::Reject,
    ];

    /// The action's place in [`Action::ALL`] (which lists them in the
    /// order they are declared: checked when compiling, below).
    pub fn index(self) -> usize {
        self as usize
    }

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

const _: () = {
    let mut i = 0;
    while i < Action::ALL.len() {
        assert!(
            Action::ALL[i] as usize == i,
            "Action::ALL out of declaration order"
        );
        i += 1;
    }
};

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

/// Entry flags.
const VALID: u8 = 1; // mapped without a problem
const INACTIVE: u8 = 2; // status inactive
const ENDED: u8 = 4; // end date on or before today
const KNOWN: u8 = 8; // the prior state holds the key
const UNRESOLVED: u8 = 16; // the manager / parent reference resolves to nothing

#[derive(Clone, Debug)]
struct Entry {
    /// 1-based line; 0 for rows the missing rule adds.
    line: u64,
    /// Where the record starts in the file.
    byte: u64,
    key: Span,
    fingerprint: [u64; 2],
    /// Index into `messages`, or `u32::MAX`.
    message: u32,
    action: Action,
    code: Option<Code>,
    flags: u8,
}

// 48 bytes a row: with the key string and the key index, what a plan
// holds per row (BENCHMARKS.md counts on it).
const _: () = assert!(std::mem::size_of::<Entry>() == 48);

impl Entry {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
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
    key_is_email: bool,
    object: ObjectKind,
    reference_field: Option<&'static str>,
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
            key_is_email,
            object: profile.object,
            reference_field: profile
                .reference_slot
                .map(|s| match profile.slots[s].field.name() {
                    "manager_id" => "manager_id",
                    _ => "parent_id",
                }),
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
    /// rows (a pass per count took ~4 ms each for 1M rows: `strace -tt`).
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

    /// Per row: how many of its ancestors (parent, grandparent, …) this file
    /// holds. Writing rows in increasing depth writes parents first; in
    /// decreasing depth, children first.
    pub fn parent_depths(&self) -> Vec<u32> {
        let n = self.entries.len();
        let mut depth: Vec<Option<u32>> = vec![None; n];
        for start in 0..n {
            let mut chain = Vec::new();
            let mut at = start;
            let base = loop {
                if let Some(d) = depth[at] {
                    break d + 1;
                }
                let r = self.reference(at);
                let parent = (!r.is_none()).then(|| self.find_key(self.str(r))).flatten();
                chain.push(at);
                match parent {
                    // A cycle (its groups are rejected) ends the walk.
                    Some(p) if !chain.contains(&(p as usize)) && chain.len() < n => at = p as usize,
                    _ => break 0,
                }
            };
            for (k, &i) in chain.iter().rev().enumerate() {
                depth[i].get_or_insert(base + k as u32);
            }
        }
        depth.into_iter().map(|d| d.unwrap_or(0)).collect()
    }

    /// Whether row `i`'s manager or parent reference resolves to nothing (the
    /// write leaves the link out).
    pub fn reference_unresolved(&self, i: usize) -> bool {
        self.entries[i].has(UNRESOLVED)
    }

    /// Changes row `i`'s action, code and message (e.g. an update with no
    /// changed field, found while writing).
    pub fn set_row(&mut self, i: usize, action: Action, code: Option<Code>, message: String) {
        self.set(i, action, code, message);
    }

    /// Compares the rows with `prior`, the last applied state of the plan's
    /// object kind (SPEC §3 steps 3–4): decides each valid row's action,
    /// adds the keys the missing rule removes, rejects groups on a parent
    /// cycle and flags references that resolve to no object.
    pub fn against(&mut self, profile: &Profile, prior: &dyn Prior) {
        // The prior slot of each row: one merge of the two key indexes,
        // sorted by hash, in two halves of the hash range on the pool. A row
        // whose hash matches several prior keys (a collision) is looked up
        // by key.
        let index = prior.index();
        // Nothing to look up in an empty prior (`check`, OLD of a diff).
        let rows = if index.is_empty() {
            0
        } else {
            self.entries.len()
        };
        let slot_of: Vec<AtomicU32> = (0..rows).map(|_| AtomicU32::new(NONE)).collect();
        let keys = &self.keys;
        let mid = keys.get(keys.len() / 2).map_or(u64::MAX, |k| k.0);
        let (ka, kb) = keys.split_at(keys.partition_point(|k| k.0 < mid));
        let (ia, ib) = index.split_at(index.partition_point(|k| k.0 < mid));
        let merge = |keys: &[(u64, u32)], index: &[(u64, u32)]| {
            join(keys, index, |i, j| {
                // Each row is in one half, once: no other thread writes it.
                let cell = &slot_of[keys[i].1 as usize];
                let slot = match cell.load(Ordering::Relaxed) {
                    NONE => index[j].1,
                    _ => MANY,
                };
                cell.store(slot, Ordering::Relaxed);
                false
            })
        };
        rayon::join(|| merge(ka, ia), || merge(kb, ib));
        // Then the rows in file order, in two halves on the pool. The prior
        // keys this file names (rejected rows too) are marked: the others
        // are missing.
        let fold = self.key_is_email;
        let arena = &self.arena;
        let half = self.entries.len() / 2;
        let (left, right) = self.entries.split_at_mut(half);
        let named: Vec<AtomicBool> = (0..prior.slots()).map(|_| AtomicBool::new(false)).collect();
        let decide_rows = |rows: &mut [Entry], first: usize| {
            let slots = slot_of.get(first..).unwrap_or(&[]);
            decide_rows(profile, prior, arena, fold, rows, slots, &named)
        };
        rayon::join(|| decide_rows(left, 0), || decide_rows(right, half));
        let named: Vec<bool> = named.into_iter().map(AtomicBool::into_inner).collect();
        self.infer_missing(profile, prior, &named);
        if self.object == ObjectKind::Group {
            self.reject_cycles(prior);
        }
        if let Some(field) = self.reference_field {
            self.flag_unknown_references(prior, field);
        }
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
    /// `unchanged`; otherwise its message names the changed fields.
    pub fn resolve_update(&mut self, i: usize, changed: Vec<FieldName>) {
        let code = self.entries[i].code;
        let other = self.messages.get(self.entries[i].message as usize).cloned();
        if changed.is_empty() {
            self.set(i, Action::Unchanged, code, other.unwrap_or_default());
        } else {
            let mut message = format!("changed: {}", changed.join(", "));
            if let Some(other) = other {
                message = format!("{message}; {other}");
            }
            self.set(i, Action::Update, code, message);
        }
    }

    /// The state this plan leaves for its kind, applied over `prior` as if
    /// every write succeeded.
    pub fn apply_to(&self, prior: &mut MemoryPrior) {
        for e in &self.entries {
            let key = self.str(e.key);
            let fingerprint = u128::from(e.fingerprint[0]) | u128::from(e.fingerprint[1]) << 64;
            let active = !e.has(INACTIVE);
            match e.action {
                Action::Create | Action::Update => prior.insert(
                    key,
                    PriorEntry {
                        fingerprint,
                        active,
                    },
                ),
                Action::Deactivate => prior.insert(
                    key,
                    PriorEntry {
                        fingerprint,
                        active: false,
                    },
                ),
                Action::Delete => prior.remove(key),
                Action::Unchanged | Action::Reject => {}
            }
        }
    }

    /// The state this plan leaves when applied to an empty store: what
    /// `muster diff` compares NEW with. The plan itself serves as that
    /// state, its key index narrowed to the rows applied; nothing is copied.
    pub fn into_prior(mut self) -> PlanPrior {
        let entries = &self.entries;
        self.keys.retain(|&(_, row)| {
            matches!(
                entries[row as usize].action,
                Action::Create | Action::Update | Action::Deactivate
            )
        });
        self.messages = Vec::new();
        self.references = Vec::new();
        PlanPrior { plan: self }
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
        if message.is_empty() {
            e.message = u32::MAX;
        } else {
            e.message = self.messages.len() as u32;
            self.messages.push(message);
        }
    }

    /// Keys the prior state holds that the file does not name: the profile's
    /// `missing` rule, for full snapshots. A key the file names on a rejected
    /// row is not missing.
    fn infer_missing(&mut self, profile: &Profile, prior: &dyn Prior, named: &[bool]) {
        let action = match profile.missing {
            MissingRule::Ignore => return,
            MissingRule::Delete => Action::Delete,
            MissingRule::Deactivate => Action::Deactivate,
        };
        let mut missing: Vec<(&str, bool)> = Vec::new();
        for &(_, slot) in prior.index().iter().filter(|&&(_, s)| !named[s as usize]) {
            let active = prior.entry(slot).active;
            // An object already inactive has nothing left to deactivate.
            if action == Action::Delete || active {
                missing.push((prior.key(slot), active));
            }
        }
        missing.sort_unstable();
        for (key, active) in missing {
            let key = self.intern(key);
            self.entries.push(Entry {
                line: 0,
                byte: 0,
                key,
                fingerprint: [0; 2],
                message: u32::MAX,
                action,
                code: None,
                flags: KNOWN | if active { 0 } else { INACTIVE },
            });
            let i = self.entries.len() - 1;
            let message = format!("not in the file: `missing = \"{}\"`", action.as_str());
            self.set(i, action, None, message);
        }
    }

    /// Whether the object `key` names will exist after the plan: the file
    /// creates, updates or deactivates it, or leaves a known object as it is
    /// (unchanged, or rejected: its state stays), or does not name it and the
    /// prior state holds it (unless the missing rule deletes it).
    fn exists(&self, prior: &dyn Prior, key: &str) -> bool {
        self.exists_at(self.find_key(key), prior, key)
    }

    /// [`Plan::exists`], given the first row holding `key` (if any).
    fn exists_at(&self, row: Option<u32>, prior: &dyn Prior, key: &str) -> bool {
        match row {
            Some(i) => {
                let e = &self.entries[i as usize];
                match e.action {
                    Action::Create | Action::Update | Action::Deactivate => true,
                    Action::Unchanged | Action::Reject => e.has(KNOWN),
                    Action::Delete => false,
                }
            }
            None if self.key_is_email => {
                let mut folded = key.to_string();
                fold_case(&mut folded);
                prior.get(&folded).is_some() && !self.inferred_delete(&folded)
            }
            None => prior.get(key).is_some() && !self.inferred_delete(key),
        }
    }

    /// Every group on a parent cycle is rejected, naming the ids in the cycle.
    fn reject_cycles(&mut self, prior: &dyn Prior) {
        let n = self.entries.len();
        let parent: Vec<Option<u32>> = (0..n)
            .map(|i| {
                let e = &self.entries[i];
                let alive = matches!(
                    e.action,
                    Action::Create | Action::Update | Action::Deactivate | Action::Unchanged
                );
                let r = self.reference(i);
                if r.is_none() || !alive {
                    return None;
                }
                let parent = self.str(r);
                self.find_key(parent).filter(|_| self.exists(prior, parent))
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
                .map(|&i| self.str(self.entries[i as usize].key).to_string())
                .collect();
            let message = format!("parent_id forms a cycle: {} → {}", ids.join(" → "), ids[0]);
            for &i in &cycle {
                self.set(
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
    fn flag_unknown_references(&mut self, prior: &dyn Prior, field: &str) {
        // The references to check, sorted by hash and merged with the key
        // index: the row each one names, if the file holds it.
        let mut buf = String::new();
        let mut refs: Vec<(u64, u32)> = Vec::new();
        for &(i, r) in &self.references {
            let e = &self.entries[i as usize];
            if matches!(e.action, Action::Reject | Action::Delete) || e.code.is_some() {
                continue;
            }
            let h = hash_key(self.key_is_email, self.str(r), &mut buf);
            refs.push((h, i));
        }
        sort_index(&mut refs);
        let mut target: Vec<Option<u32>> = vec![None; refs.len()];
        join(&refs, &self.keys, |a, b| {
            let (from, to) = (refs[a].1 as usize, self.keys[b].1 as usize);
            let found = target[a].is_none()
                && same_key(
                    self.key_is_email,
                    self.str(self.reference(from)),
                    self.str(self.entries[to].key),
                );
            if found {
                target[a] = Some(to as u32);
            }
            found
        });
        let mut unknown: Vec<(u32, Option<u32>)> = refs
            .iter()
            .zip(target)
            .filter(|&(&(_, i), t)| {
                let r = self.str(self.reference(i as usize));
                !self.exists_at(t, prior, r)
            })
            .map(|(&(_, i), t)| (i, t))
            .collect();
        unknown.sort_unstable();
        for (i, target) in unknown {
            let i = i as usize;
            let r = self.str(self.reference(i));
            let why = match target.map(|j| &self.entries[j as usize]) {
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
                None => format!(
                    "matches no {} in the file or the store",
                    self.object.as_str()
                ),
            };
            let message = format!("{field} {r:?} {why}; applied without the link");
            let action = self.entries[i].action;
            self.entries[i].flags |= UNRESOLVED;
            self.set(i, action, Some(Code::UnknownReference), message);
        }
    }
}

/// A plan applied to an empty store, as a [`Prior`] ([`Plan::into_prior`]):
/// each key once (a key applied is on one row only, as every occurrence of a
/// duplicate is rejected), with where its row starts in the file, to read
/// its fields again.
#[derive(Debug)]
pub struct PlanPrior {
    plan: Plan,
}

impl PlanPrior {
    /// Where the row of `slot` starts in the file it was read from.
    pub fn origin(&self, slot: u32) -> u64 {
        self.plan.entries[slot as usize].byte
    }
}

impl Prior for PlanPrior {
    fn index(&self) -> &[(u64, u32)] {
        &self.plan.keys
    }
    fn key(&self, slot: u32) -> &str {
        self.plan.str(self.plan.entries[slot as usize].key)
    }
    fn slots(&self) -> usize {
        self.plan.entries.len()
    }
    fn prefetch(&self, slot: u32, key: bool) {
        if let Some(e) = self.plan.entries.get(slot as usize) {
            match key {
                false => crate::diff::prefetch_both_ends(e),
                true => crate::diff::prefetch_text(&self.plan.arena, e.key.start, e.key.len),
            }
        }
    }
    fn entry(&self, slot: u32) -> PriorEntry {
        let e = &self.plan.entries[slot as usize];
        PriorEntry {
            fingerprint: u128::from(e.fingerprint[0]) | u128::from(e.fingerprint[1]) << 64,
            active: !e.has(INACTIVE) && e.action != Action::Deactivate,
        }
    }
    fn get_indexed(&self, key: &str) -> Option<(PriorEntry, u32)> {
        let fold = self.plan.key_is_email;
        hash_run(&self.plan.keys, hash_key(fold, key, &mut String::new()))
            .iter()
            .find(|&&(_, s)| same_key(fold, self.key(s), key))
            .map(|&(_, s)| (self.entry(s), s))
    }
}

fn span_str(arena: &str, s: Span) -> &str {
    &arena[s.start as usize..(s.start + s.len) as usize]
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
    check_with_progress(profile, input, today, &mut |_| {})
}

/// [`check`], calling `progress` every 65,536 records.
pub fn check_with_progress<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let opts = ReadOptions {
        fingerprints: Fingerprints::Skip,
        ..ReadOptions::default()
    };
    let mut plan = read_with(profile, input, today, opts, progress)?;
    plan.against(profile, &NoPrior);
    Ok(plan)
}

/// [`read`] then [`Plan::against`] `prior`.
pub fn build<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    prior: &dyn Prior,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let mut plan = read(profile, input, today, None, progress)?;
    plan.against(profile, prior);
    Ok(plan)
}

/// What the list fields of a users file refer to, when the tenant has a
/// group or segment file: the groups and segments known after those files
/// were applied. `None`: names are taken as they are (created on demand).
#[derive(Clone, Copy, Default)]
pub struct ListRefs<'a> {
    pub groups: Option<&'a dyn Prior>,
    pub segments: Option<&'a dyn Prior>,
}

/// How [`read_with`] reads a file.
#[derive(Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// The file size, when known: sizes the buffers once.
    pub size_hint: Option<u64>,
    /// What list fields refer to.
    pub refs: ListRefs<'a>,
    /// What stands for each row's fingerprint.
    pub fingerprints: Fingerprints,
    /// How the file is cut into pieces read in parallel.
    pub chunks: ChunkOptions,
    /// Read on this thread alone, in one pass (for callers that read
    /// several files at once: `muster diff`).
    pub serial: bool,
}

/// What a plan keeps as each row's fingerprint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fingerprints {
    /// The fingerprint of the normalised row ([`Fingerprinter::fingerprint`]):
    /// what the store keeps.
    #[default]
    Normalised,
    /// The hash of the record as read ([`Record::content_hash`]), for a plan
    /// compared with one read alike from a file of the same layout (`muster
    /// diff`): equal hashes mean equal rows, and rows whose hashes differ
    /// are settled by their fields.
    Record,
    /// None: the plan will only be compared with an empty prior (`muster
    /// check`), where they are never looked at.
    Skip,
}

/// [`read_with`] without list references.
pub fn read<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    size_hint: Option<u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let opts = ReadOptions {
        size_hint,
        ..ReadOptions::default()
    };
    read_with(profile, input, today, opts, progress)
}

/// The names in a user's list fields that `refs` does not know, as a
/// results message, or `None` when all resolve.
fn unknown_list_items(profile: &Profile, row: &MappedRow, refs: ListRefs<'_>) -> Option<String> {
    if refs.groups.is_none() && refs.segments.is_none() {
        return None;
    }
    let mut problems = Vec::new();
    for (slot, spec) in profile.slots.iter().enumerate() {
        let (known, what) = match spec.field {
            crate::profile::Field::Groups | crate::profile::Field::AdminGroups => {
                (refs.groups, "group")
            }
            crate::profile::Field::Segments => (refs.segments, "segment"),
            _ => continue,
        };
        let Some(known) = known else { continue };
        let missing: Vec<&str> = row.items(slot).filter(|i| known.get(i).is_none()).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} {:?} match no {what}",
                spec.field,
                missing.join(", ")
            ));
        }
    }
    (!problems.is_empty()).then(|| format!("{}; applied without them", problems.join("; ")))
}

/// The first phase: reads a whole snapshot through `profile`, maps,
/// validates and fingerprints every row, and rejects duplicate keys and
/// e-mails. `size_hint` (the file size, when known) sizes the buffers once.
/// Call [`Plan::against`] before using the actions.
pub fn read_with<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    opts: ReadOptions<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let mut snapshot = Snapshot::open(profile, input)?;
    let layout = snapshot.layout().clone();
    let fingerprinter = Fingerprinter::new(profile);
    let reading = RowReader {
        profile,
        layout: &layout,
        today,
        opts: &opts,
    };
    let mut part = Part::new(profile, opts.size_hint);
    let (plan, emails) = if opts.serial {
        let mut scratch = Scratch::new(&fingerprinter);
        while snapshot.read_record(&mut scratch.rec)? {
            reading.row(&mut scratch, &mut part);
            if part.plan.records.is_multiple_of(65_536) {
                progress(Progress {
                    records: part.plan.records,
                    bytes: snapshot.byte_offset(),
                });
            }
        }
        part.plan.bytes = snapshot.byte_offset();
        (part.plan, part.emails)
    } else {
        read_pieces(snapshot, &reading, &fingerprinter, part, progress)?
    };
    tracing::debug!(records = plan.records, bytes = plan.bytes, profile = %profile.name, "file read");
    Ok(settle(profile, plan, emails))
}

/// The end of reading a file: sorts its key and e-mail indexes (at once,
/// on the pool) and rejects the rows whose key or e-mail another row has.
fn settle(profile: &Profile, mut plan: Plan, mut emails: EmailIndex) -> Plan {
    let key_name = profile.slots[profile.key_slot].field.name();
    // The keys and the e-mails are sorted at once, on the pool.
    let mut keys = std::mem::take(&mut plan.keys);
    let fold_keys = plan.key_is_email;
    let (dup_keys, dup_emails) = rayon::join(
        || {
            sort_index(&mut keys);
            let dup_keys = duplicates(&keys, |a, b| {
                same_key(
                    fold_keys,
                    plan.str(plan.entries[a as usize].key),
                    plan.str(plan.entries[b as usize].key),
                )
            });
            dup_keys
                .into_iter()
                .map(|i| (i, plan.str(plan.entries[i as usize].key).to_string()))
                .collect::<Vec<(u32, String)>>()
        },
        || emails.duplicates(),
    );
    plan.keys = keys;
    reject_duplicates(
        &mut plan,
        dup_keys,
        Code::DuplicateKey,
        key_name,
        (fold_keys, true),
    );
    reject_duplicates(
        &mut plan,
        dup_emails,
        Code::DuplicateEmail,
        "email",
        (true, false),
    );
    plan
}

/// The first phase's reading on the pool: pieces of the file are mapped
/// each into a part of the plan, and the parts are appended in file order
/// to `whole` (empty, sized for the file).
fn read_pieces<R: Read>(
    snapshot: Snapshot<R>,
    reading: &RowReader<'_>,
    fingerprinter: &Fingerprinter,
    whole: Part,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Plan, EmailIndex), FileError> {
    let Part {
        mut plan,
        mut emails,
    } = whole;
    let profile = reading.profile;
    let end = snapshot.read_chunked(
        &reading.opts.chunks,
        |piece| {
            let mut part = Part::new(profile, Some(piece.len() as u64));
            let mut scratch = Scratch::new(fingerprinter);
            while piece.read_record(&mut scratch.rec)? {
                reading.row(&mut scratch, &mut part);
            }
            Ok(part)
        },
        |part, at| {
            let before = plan.records;
            plan.append(part, at, &mut emails);
            if before >> 16 != plan.records >> 16 {
                progress(Progress {
                    records: plan.records,
                    bytes: at.byte,
                });
            }
        },
    )?;
    plan.bytes = end.byte;
    Ok((plan, emails))
}

/// What one piece of a file makes: its rows as a plan of their own (lines
/// and bytes counted from the piece's start), and its e-mails.
struct Part {
    plan: Plan,
    emails: EmailIndex,
}

impl Part {
    /// An empty part, sized for `bytes` of a file.
    fn new(profile: &Profile, bytes: Option<u64>) -> Part {
        let plan = Plan::new(profile, bytes);
        let mut emails = EmailIndex::default();
        emails.entries.reserve(plan.entries.capacity());
        Part { plan, emails }
    }
}

/// What mapping rows reuses from row to row: the record read, the mapped
/// row, the fingerprinter's buffer and a string for folding case.
struct Scratch {
    rec: Record,
    row: MappedRow,
    fingerprinter: Fingerprinter,
    folded: String,
}

impl Scratch {
    fn new(fingerprinter: &Fingerprinter) -> Scratch {
        Scratch {
            rec: Record::new(),
            row: MappedRow::new(),
            fingerprinter: fingerprinter.clone(),
            folded: String::new(),
        }
    }
}

/// Maps, validates and fingerprints rows into a [`Part`].
struct RowReader<'a> {
    profile: &'a Profile,
    layout: &'a Layout,
    today: Date,
    opts: &'a ReadOptions<'a>,
}

impl RowReader<'_> {
    /// Maps the record in `scratch` into `part`.
    fn row(&self, scratch: &mut Scratch, part: &mut Part) {
        let Scratch {
            rec,
            row,
            fingerprinter,
            folded,
        } = scratch;
        let (rec, row, folded) = (&*rec, row, folded);
        let (profile, layout, opts) = (self.profile, self.layout, self.opts);
        let plan = &mut part.plan;
        plan.records += 1;
        let idx = plan.entries.len() as u32;
        let result = profile.map(rec, layout, row);
        let key = row.key_as_read().map_or(Span::NONE, |k| plan.intern(k));
        let mut entry = Entry {
            line: rec.position().line,
            byte: rec.position().byte,
            key,
            fingerprint: [0; 2],
            message: u32::MAX,
            action: Action::Reject,
            code: None,
            flags: 0,
        };
        if row.decoded_column.is_some() {
            plan.decoded_rows += 1;
        }
        let mapped = result.is_ok();
        let message = match result {
            Ok(()) => {
                let fp = match opts.fingerprints {
                    Fingerprints::Normalised => fingerprinter.fingerprint(row),
                    Fingerprints::Record => rec.content_hash(),
                    Fingerprints::Skip => 0,
                };
                entry.fingerprint = [fp as u64, (fp >> 64) as u64];
                entry.action = Action::Create;
                entry.flags = VALID;
                if profile.status_slot.and_then(|s| row.get(s)) == Some("inactive") {
                    entry.flags |= INACTIVE;
                }
                let ended = profile
                    .end_date_slot
                    .and_then(|s| row.get(s))
                    .and_then(Date::parse_iso)
                    .is_some_and(|d| d <= self.today);
                if ended {
                    entry.flags |= ENDED;
                }
                if let Some(r) = profile.reference_slot.and_then(|s| row.get(s)) {
                    let span = plan.intern(r);
                    plan.references.push((idx, span));
                }
                let decoded = row.decoded_column.map(|c| {
                    format!(
                        "column {}: decoded as windows-1252 (the file is not UTF-8)",
                        c + 1
                    )
                });
                match unknown_list_items(profile, row, opts.refs) {
                    Some(m) => {
                        entry.code = Some(Code::UnknownReference);
                        decoded.map_or(m.clone(), |d| format!("{m}; {d}"))
                    }
                    None => decoded.unwrap_or_default(),
                }
            }
            Err(issue) => {
                entry.code = Some(issue.code);
                issue.describe(layout)
            }
        };
        plan.entries.push(entry);
        if !message.is_empty() {
            let i = idx as usize;
            let (a, c) = (plan.entries[i].action, plan.entries[i].code);
            plan.set(i, a, c, message);
        }
        // Duplicate keys and e-mails: every occurrence counts, rejected rows too.
        if !key.is_none() {
            let h = hash_key(plan.key_is_email, plan.str(key), folded);
            plan.keys.push((h, idx));
        }
        if profile.object == ObjectKind::User {
            if let Some(slot) = profile.email_slot {
                if mapped {
                    // A mapped row's e-mail is lower-cased already.
                    if let Some(email) = row.get(slot) {
                        part.emails.push(email, idx);
                    }
                } else if let Some(email) = email_as_read(rec, layout, row, slot) {
                    folded.clear();
                    folded.push_str(email);
                    fold_case(folded);
                    part.emails.push(folded, idx);
                }
            }
        }
    }
}

impl Plan {
    /// Appends the rows of `part`, read from a piece of the file that
    /// starts at `at`, and its e-mails to `emails`.
    fn append(&mut self, part: Part, at: Offset, emails: &mut EmailIndex) {
        let rows = self.entries.len() as u32;
        let arena = self.arena.len() as u32;
        let messages = self.messages.len() as u32;
        let Part {
            plan,
            emails: part_emails,
        } = part;
        self.arena.push_str(&plan.arena);
        self.entries.extend(plan.entries.into_iter().map(|mut e| {
            e.line += at.line;
            e.byte += at.byte;
            if !e.key.is_none() {
                e.key.start += arena;
            }
            if e.message != u32::MAX {
                e.message += messages;
            }
            e
        }));
        self.messages.extend(plan.messages);
        self.keys
            .extend(plan.keys.iter().map(|&(h, i)| (h, i + rows)));
        self.references
            .extend(plan.references.iter().map(|&(i, s)| {
                let span = Span {
                    start: s.start + arena,
                    len: s.len,
                };
                (i + rows, span)
            }));
        emails
            .entries
            .extend(part_emails.entries.iter().map(|&(h, i)| (h, i + rows)));
        self.records += plan.records;
        self.decoded_rows += plan.decoded_rows;
    }
}

/// No prior slot for a row; several (a hash collision: look the key up).
const NONE: u32 = u32::MAX;
const MANY: u32 = u32::MAX - 1;

/// Decides `rows` given each one's prior slot (`slot_of`, [`NONE`] or
/// [`MANY`]; empty for an empty prior), and marks the prior slots they name
/// in `named`. The prior entries are fetched a few rows ahead.
fn decide_rows(
    profile: &Profile,
    prior: &dyn Prior,
    arena: &str,
    fold: bool,
    rows: &mut [Entry],
    slot_of: &[AtomicU32],
    named: &[AtomicBool],
) {
    let slot_at = |row: usize| slot_of.get(row).map_or(NONE, |s| s.load(Ordering::Relaxed));
    let mut buf = String::new();
    for (row, e) in rows.iter_mut().enumerate() {
        let ahead = slot_at(row + 16);
        if ahead < MANY {
            prior.prefetch(ahead, false);
        }
        let ahead = slot_at(row + 8);
        if ahead < MANY {
            prior.prefetch(ahead, true);
        }
        // A row without a key is in no index: its slot is NONE.
        let key = span_str_or_empty(arena, e.key);
        let slot = match slot_at(row) {
            NONE => None,
            MANY if fold => {
                buf.clear();
                buf.push_str(key);
                fold_case(&mut buf);
                prior.get_indexed(&buf).map(|(_, s)| s)
            }
            MANY => prior.get_indexed(key).map(|(_, s)| s),
            s => same_key(fold, key, prior.key(s)).then_some(s),
        };
        if let Some(slot) = slot {
            named[slot as usize].store(true, Ordering::Relaxed);
            e.flags |= KNOWN;
        }
        if e.has(VALID) && e.action != Action::Reject {
            e.action = decide(profile, e, slot.map(|s| prior.entry(s)));
        }
    }
}

fn span_str_or_empty(arena: &str, s: Span) -> &str {
    if s.is_none() {
        ""
    } else {
        span_str(arena, s)
    }
}

/// The action for a valid row, given what the prior state knows of its key
/// (SPEC §3 step 3 and its decided edge cases).
fn decide(profile: &Profile, e: &Entry, known: Option<PriorEntry>) -> Action {
    let (inactive, ended) = (e.has(INACTIVE), e.has(ENDED));
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
    let fingerprint = u128::from(e.fingerprint[0]) | u128::from(e.fingerprint[1]) << 64;
    if known.fingerprint == fingerprint {
        Action::Unchanged
    } else {
        Action::Update
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
fn fold_case(s: &mut String) {
    if s.is_ascii() {
        s.make_ascii_lowercase();
    } else {
        *s = s.to_lowercase();
    }
}

/// The hash a key is indexed by: of the key lower-cased when keys are
/// e-mails (`buf` holds the folded key).
fn hash_key(fold: bool, key: &str, buf: &mut String) -> u64 {
    if fold && !key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        buf.clear();
        buf.push_str(key);
        fold_case(buf);
        key_hash(buf)
    } else {
        key_hash(key)
    }
}

/// Whether two keys are the same key (e-mails: ignoring case).
fn same_key(fold: bool, a: &str, b: &str) -> bool {
    if !fold || a == b {
        a == b
    } else if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// Merges two lists sorted by hash: calls `matched(i, j)` for the pairs of
/// positions whose hashes are equal, until it returns `true` for `i`
/// (collisions make a run of several).
fn join(a: &[(u64, u32)], b: &[(u64, u32)], mut matched: impl FnMut(usize, usize) -> bool) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let h = a[i].0;
        if h < b[j].0 {
            i += 1;
        } else if b[j].0 < h {
            j += 1;
        } else {
            let end = j + b[j..].iter().take_while(|&&(bh, _)| bh == h).count();
            while i < a.len() && a[i].0 == h {
                for k in j..end {
                    if matched(i, k) {
                        break;
                    }
                }
                i += 1;
            }
            j = end;
        }
    }
}

/// The rows of a sorted `(hash, row)` list whose value another row also
/// holds (`same(row, row)` tells): each one with the first row of its value.
fn duplicates(sorted: &[(u64, u32)], same: impl Fn(u32, u32) -> bool) -> Vec<u32> {
    let mut dups = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let h = sorted[start].0;
        let end = start
            + sorted[start..]
                .iter()
                .take_while(|&&(eh, _)| eh == h)
                .count();
        // Rows are in file order within a run.
        for k in start + 1..end {
            let row = sorted[k].1;
            if let Some(&(_, first)) = sorted[start..k].iter().find(|&&(_, f)| same(f, row)) {
                dups.extend([first, row]);
            }
        }
        start = end;
    }
    dups
}

/// Rows by (lower-cased) e-mail, as xxh3-128 hashes sorted once the file is
/// read: two e-mails are the same when their 128-bit hashes are (the bet the
/// row fingerprints make too: a collision among 2M e-mails has odds of
/// about 10⁻²⁶). 24 bytes a row, written in sequence: no e-mail text is
/// kept, and no hash table costs a cache miss per row.
#[derive(Default)]
struct EmailIndex {
    /// `(hash, row)`.
    entries: Vec<([u64; 2], u32)>,
}

impl EmailIndex {
    fn push(&mut self, folded: &str, row: u32) {
        let h = xxhash_rust::xxh3::xxh3_128(folded.as_bytes());
        self.entries.push(([h as u64, (h >> 64) as u64], row));
    }

    /// Every row whose e-mail another row has, with a name for its group
    /// (the entries are left sorted by hash).
    fn duplicates(&mut self) -> Vec<(u32, String)> {
        crate::diff::sort_by_hash(&mut self.entries, |e| e.0[0]);
        let mut dups = Vec::new();
        for run in self
            .entries
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|r| r.len() > 1)
        {
            let group = format!("{:016x}{:016x}", run[0].0[0], run[0].0[1]);
            dups.extend(run.iter().map(|&(_, row)| (row, group.clone())));
        }
        dups
    }
}

/// Rejects every row of `dups` (row, value) unless it has an earlier
/// problem, naming the lines of all occurrences of the value.
/// With `show` the value is named in the message; without, `value` only
/// groups the rows (e-mails, whose text is not kept).
fn reject_duplicates(
    plan: &mut Plan,
    mut dups: Vec<(u32, String)>,
    code: Code,
    name: &str,
    (fold_case, show): (bool, bool),
) {
    if dups.is_empty() {
        return;
    }
    dups.sort_unstable();
    dups.dedup();
    let group = |v: &str| {
        if fold_case {
            v.to_lowercase()
        } else {
            v.to_string()
        }
    };
    let mut lines: ahash::AHashMap<String, Vec<u64>> = ahash::AHashMap::new();
    for (i, v) in &dups {
        lines
            .entry(group(v))
            .or_default()
            .push(plan.entries[*i as usize].line);
    }
    for (i, value) in &dups {
        let e = &plan.entries[*i as usize];
        // An earlier problem of the row wins.
        if e.action == Action::Reject {
            continue;
        }
        let all = &lines[&group(value)];
        let shown: Vec<String> = all.iter().take(10).map(u64::to_string).collect();
        let more = if all.len() > 10 { ", …" } else { "" };
        let what = if show {
            format!("{name} {value:?}")
        } else {
            format!("the same {name}")
        };
        let case = if fold_case && !show {
            "; compared ignoring case"
        } else {
            ""
        };
        let message = format!(
            "{what} occurs {} times in the file (lines {}{more}{case}); no occurrence is applied",
            all.len(),
            shown.join(", ")
        );
        plan.set(*i as usize, Action::Reject, Some(code), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
