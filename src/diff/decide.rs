//! The per-row decision (SPEC §3 step 3): each row of a file against the
//! prior state of its key — create, update, unchanged, deactivate, delete.
//! A plan's keys and the prior's are both sorted by hash and merged in one
//! pass ([`crate::index`]); each row is then decided in file order, the
//! prior's entries fetched a few rows ahead. The rules that need the whole
//! file (the missing rule, cycles, references) are the plan's.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::index::key_hash;
use crate::model::{Action, Code};
use crate::profile::{Date, EndAction, Profile};
use crate::store::{Prior, PriorEntry};

/// A span of a plan's string arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl Span {
    pub(crate) const NONE: Span = Span {
        start: u32::MAX,
        len: 0,
    };

    pub(crate) fn is_none(self) -> bool {
        self.start == u32::MAX
    }
}

/// Entry flags.
pub(crate) const VALID: u16 = 1; // mapped without a problem
pub(crate) const INACTIVE: u16 = 2; // status inactive
pub(crate) const ENDED: u16 = 4; // end date on or before today
pub(crate) const KNOWN: u16 = 8; // the prior state holds the key
pub(crate) const UNRESOLVED: u16 = 16; // the manager / parent reference resolves to nothing
/// The lifecycle of SPEC §11:
pub(crate) const REACTIVATE: u16 = 32; // an update that makes the object active again
pub(crate) const INVITE: u16 = 64; // the write invites the user
pub(crate) const RECORD: u16 = 128; // unchanged for the LMS; the store records the row (`owned_fields`)
pub(crate) const INVITE_LATER: u16 = 256; // the `invite_from` date is after today
pub(crate) const DELAYED: u16 = 512; // a deletion `delete_after_days` delays (deactivated, or waiting)
pub(crate) const PROTECTED: u16 = 1024; // kept from a deactivation or deletion by `protected`

/// A row of a file and the decision for it: where it is, its key, its
/// fingerprint, its action and code, and what was found on the way (the
/// flags above).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// 1-based line; 0 for rows the missing rule adds.
    pub(crate) line: u64,
    /// Where the record starts in the file.
    pub(crate) byte: u64,
    pub(crate) key: Span,
    pub(crate) fingerprint: [u64; 2],
    /// Index into `messages`, or `u32::MAX`.
    pub(crate) message: u32,
    pub(crate) action: Action,
    pub(crate) code: Option<Code>,
    pub(crate) flags: u16,
}

// 48 bytes a row: with the key string and the key index, what a plan
// holds per row (BENCHMARKS.md counts on it).
const _: () = assert!(std::mem::size_of::<Entry>() == 48);

impl Entry {
    pub(crate) fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

pub(crate) fn span_str(arena: &str, s: Span) -> &str {
    &arena[s.start as usize..(s.start + s.len) as usize]
}

/// Decides every row of `entries` against `prior` (`keys`: the rows'
/// `(key hash, row)` index, sorted; `arena`: their key text; `fold`: keys
/// are e-mails, compared ignoring case). Returns, per prior slot, whether
/// some row (a rejected one too) names its key: the others are missing.
///
/// The prior slot of each row comes from one merge of the two key indexes,
/// in two halves of the hash range on the pool; a row whose hash matches
/// several prior keys (a collision) is looked up by key. Then the rows are
/// decided in file order, in two halves on the pool.
pub(crate) fn decide_all(
    (profile, today): (&Profile, Date),
    prior: &dyn Prior,
    (arena, fold): (&str, bool),
    keys: &[(u64, u32)],
    entries: &mut [Entry],
) -> Vec<bool> {
    let index = prior.index();
    // Nothing to look up in an empty prior (`check`, OLD of a diff).
    let rows = if index.is_empty() { 0 } else { entries.len() };
    let slot_of: Vec<AtomicU32> = (0..rows).map(|_| AtomicU32::new(NONE)).collect();
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
    let half = entries.len() / 2;
    let (left, right) = entries.split_at_mut(half);
    let named: Vec<AtomicBool> = (0..prior.slots()).map(|_| AtomicBool::new(false)).collect();
    let decide = |rows: &mut [Entry], first: usize| {
        let slots = slot_of.get(first..).unwrap_or(&[]);
        decide_rows((profile, today), prior, (arena, fold), rows, slots, &named)
    };
    rayon::join(|| decide(left, 0), || decide(right, half));
    named.into_iter().map(AtomicBool::into_inner).collect()
}

/// No prior slot for a row; several (a hash collision: look the key up).
const NONE: u32 = u32::MAX;
const MANY: u32 = u32::MAX - 1;

/// Decides `rows` given each one's prior slot (`slot_of`, [`NONE`] or
/// [`MANY`]; empty for an empty prior), and marks the prior slots they name
/// in `named`. The prior entries are fetched a few rows ahead.
fn decide_rows(
    (profile, today): (&Profile, Date),
    prior: &dyn Prior,
    (arena, fold): (&str, bool),
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
            let known = slot.map(|s| prior.entry(s));
            e.action = decide((profile, today), e, known, (key, fold));
        }
    }
}

pub(crate) fn span_str_or_empty(arena: &str, s: Span) -> &str {
    if s.is_none() {
        ""
    } else {
        span_str(arena, s)
    }
}

/// The action for a valid row, given what the prior state knows of its key
/// (SPEC §3 step 3 and its decided edge cases, and the lifecycle keys of
/// §11), marking `e` with what the write carries (an invitation, a
/// reactivation, a delayed deletion, a protection).
fn decide(
    (profile, today): (&Profile, Date),
    e: &mut Entry,
    known: Option<PriorEntry>,
    (key, fold): (&str, bool),
) -> Action {
    let (inactive, ended) = (e.has(INACTIVE), e.has(ENDED));
    let lifecycle = &profile.lifecycle;
    let Some(known) = known else {
        // Nothing to apply for an inactive or ended user the store does not
        // know; a key deleted earlier that comes back is a create.
        if inactive || ended {
            return Action::Unchanged;
        }
        if profile.invite_on_create && profile.object == crate::model::ObjectKind::User {
            // Invited now, or by the run on or after its `invite_from` date.
            if !e.has(INVITE_LATER) {
                e.flags |= INVITE;
            }
        }
        return Action::Create;
    };
    let ending = |action: EndAction| match action {
        EndAction::Delete => Action::Delete,
        EndAction::Deactivate => Action::Deactivate,
    };
    // Where both apply, delete wins over deactivate.
    let end_action = ended.then(|| ending(profile.end_date_action));
    let inactive_action = inactive.then(|| ending(profile.inactive_action));
    let ends = match (end_action, inactive_action) {
        (Some(Action::Delete), _) | (_, Some(Action::Delete)) => Some(Action::Delete),
        (Some(a), _) | (_, Some(a)) => Some(a),
        (None, None) => None,
    };
    match ends {
        Some(_) if !lifecycle.protected.is_empty() && lifecycle.is_protected(key, fold) => {
            e.flags |= PROTECTED;
            return Action::Unchanged;
        }
        Some(Action::Delete) => {
            let Some(since) = known.since.filter(|_| !known.active) else {
                if lifecycle.delete_after_days.is_none() {
                    return Action::Delete;
                }
                // Deactivated first; the store keeps since when.
                e.flags |= DELAYED;
                return Action::Deactivate;
            };
            if lifecycle.delete_on(since).is_none_or(|on| on <= today) {
                return Action::Delete;
            }
            e.flags |= DELAYED;
            return Action::Unchanged;
        }
        // Deactivated already, but for a deletion that no longer stands
        // (the row is back, inactive): deactivated again, without its date.
        Some(_) if known.active || known.since.is_some() => return Action::Deactivate,
        Some(_) => {}
        None if !known.active => {
            e.flags |= REACTIVATE;
            return Action::Update;
        }
        None if known.invite_due && !e.has(INVITE_LATER) => {
            e.flags |= INVITE;
            return Action::Update;
        }
        None => {}
    }
    let fingerprint = u128::from(e.fingerprint[0]) | u128::from(e.fingerprint[1]) << 64;
    if known.fingerprint == fingerprint {
        Action::Unchanged
    } else {
        Action::Update
    }
}

/// Lower-cases in place (ASCII fast path).
pub(crate) fn fold_case(s: &mut String) {
    if s.is_ascii() {
        s.make_ascii_lowercase();
    } else {
        *s = s.to_lowercase();
    }
}

/// The hash a key is indexed by: of the key lower-cased when keys are
/// e-mails (`buf` holds the folded key).
pub(crate) fn hash_key(fold: bool, key: &str, buf: &mut String) -> u64 {
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
pub(crate) fn same_key(fold: bool, a: &str, b: &str) -> bool {
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
pub(crate) fn join(
    a: &[(u64, u32)],
    b: &[(u64, u32)],
    mut matched: impl FnMut(usize, usize) -> bool,
) {
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
