//! A plan as the state it leaves: what `muster diff` compares NEW with.

use crate::diff::decide::{hash_key, same_key, DELAYED, INACTIVE, INVITE, INVITE_LATER};
use crate::index::hash_run;
use crate::model::Action;
use crate::store::{MemoryPrior, Prior, PriorEntry};

use super::Plan;

impl Plan {
    /// The state this plan leaves for its kind, applied over `prior` as if
    /// every write succeeded.
    pub fn apply_to(&self, prior: &mut MemoryPrior) {
        for (i, e) in self.entries.iter().enumerate() {
            let key = self.str(e.key);
            let fingerprint = u128::from(e.fingerprint[0]) | u128::from(e.fingerprint[1]) << 64;
            let before = prior.get(key);
            let invite_due = before.is_some_and(|b| b.invite_due) && !e.has(INVITE);
            match e.action {
                Action::Create => prior.insert(
                    key,
                    PriorEntry {
                        invite_due: e.has(INVITE_LATER) && !e.has(INVITE),
                        ..PriorEntry::new(fingerprint, !e.has(INACTIVE))
                    },
                ),
                Action::Update => prior.insert(
                    key,
                    PriorEntry {
                        invite_due,
                        ..PriorEntry::new(fingerprint, !e.has(INACTIVE))
                    },
                ),
                Action::Unchanged if self.records_only(i) => prior.insert(
                    key,
                    PriorEntry {
                        fingerprint,
                        ..before.unwrap_or(PriorEntry::new(fingerprint, true))
                    },
                ),
                Action::Deactivate => {
                    // An inferred row keeps the fingerprint applied.
                    let fingerprint = match e.line {
                        0 => before.map_or(0, |b| b.fingerprint),
                        _ => fingerprint,
                    };
                    let since = before.and_then(|b| b.since).unwrap_or(self.today);
                    prior.insert(
                        key,
                        PriorEntry {
                            since: e.has(DELAYED).then_some(since),
                            ..PriorEntry::new(fingerprint, false)
                        },
                    )
                }
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
                false => crate::index::prefetch_both_ends(e),
                true => crate::index::prefetch_text(&self.plan.arena, e.key.start, e.key.len),
            }
        }
    }
    fn entry(&self, slot: u32) -> PriorEntry {
        let e = &self.plan.entries[slot as usize];
        let fingerprint = u128::from(e.fingerprint[0]) | u128::from(e.fingerprint[1]) << 64;
        PriorEntry {
            // As a run leaves it: a create whose invitation waits.
            invite_due: e.action == Action::Create && e.has(INVITE_LATER) && !e.has(INVITE),
            ..PriorEntry::new(
                fingerprint,
                !e.has(INACTIVE) && e.action != Action::Deactivate,
            )
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
