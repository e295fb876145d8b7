//! The rules that need the whole file and the prior: the missing rule,
//! group cycles, references that resolve to nothing, and the parent-first
//! depth that orders group writes (SPEC §3 steps 3–4).

use crate::diff::decide::{
    hash_key, join, same_key, Entry, DELAYED, INACTIVE, KNOWN, PROTECTED, UNRESOLVED,
};
use crate::index::sort_index;
use crate::model::{Action, Code, Field};
use crate::profile::{MissingRule, Profile};
use crate::store::{Prior, PriorEntry};

use super::Plan;

impl Plan {
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
    /// Whether the file's last record is a quote opened and never closed:
    /// the rows after it were never read.
    pub(crate) fn cut_short(&self) -> bool {
        let last = (self.records as usize).checked_sub(1);
        last.and_then(|i| self.entries.get(i))
            .is_some_and(|e| e.code == Some(Code::UnterminatedQuote))
    }
    /// Whether the plan deletes `key` as missing from the file.
    pub(super) fn inferred_delete(&self, key: &str) -> bool {
        // Inferred rows come last, sorted by key.
        let first = self.entries.partition_point(|e| e.line != 0);
        let inferred = &self.entries[first..];
        inferred
            .binary_search_by(|e| self.str(e.key).cmp(key))
            .is_ok_and(|i| inferred[i].action == Action::Delete)
    }
    /// Keys the prior state holds that the file does not name: the profile's
    /// `missing` rule, for full snapshots. A key the file names on a rejected
    /// row is not missing.
    /// A file cut short by a quote never closed (SPEC §3: its last record,
    /// which ran to the end of the file) names nothing after it: nothing is
    /// missing from it.
    /// A protected key is kept, and its line says so; a deletion that
    /// `delete_after_days` delays is a deactivation first (the store keeps
    /// since when), then waits, `unchanged`, until its day.
    pub(super) fn infer_missing(&mut self, profile: &Profile, prior: &dyn Prior, named: &[bool]) {
        if self.cut_short() {
            return;
        }
        let rule = match profile.missing {
            MissingRule::Ignore => return,
            MissingRule::Delete => Action::Delete,
            MissingRule::Deactivate => Action::Deactivate,
        };
        let lifecycle = &profile.lifecycle;
        let mut missing: Vec<(&str, PriorEntry)> = Vec::new();
        for &(_, slot) in prior.index().iter().filter(|&&(_, s)| !named[s as usize]) {
            let entry = prior.entry(slot);
            // An object already inactive has nothing left to deactivate.
            if rule == Action::Delete || entry.active {
                missing.push((prior.key(slot), entry));
            }
        }
        missing.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let said = format!(
            "not in the file, a full snapshot (`missing = \"{}\"`)",
            rule.as_str()
        );
        for (key, entry) in missing {
            let mut flags = KNOWN | if entry.active { 0 } else { INACTIVE };
            let mut since = None;
            let action = if !lifecycle.protected.is_empty()
                && lifecycle.is_protected(key, self.key_is_email)
            {
                flags |= PROTECTED;
                Action::Unchanged
            } else if rule == Action::Delete && lifecycle.delete_after_days.is_some() {
                flags |= DELAYED;
                match entry.since.filter(|_| !entry.active) {
                    Some(s) if lifecycle.delete_on(s).is_none_or(|on| on <= self.today) => {
                        flags &= !DELAYED;
                        Action::Delete
                    }
                    Some(s) => {
                        since = Some(s);
                        Action::Unchanged
                    }
                    None => Action::Deactivate,
                }
            } else {
                rule
            };
            let key = self.intern(key);
            self.entries.push(Entry {
                line: 0,
                byte: 0,
                key,
                fingerprint: [0; 2],
                message: u32::MAX,
                action,
                code: None,
                flags,
            });
            let i = self.entries.len() - 1;
            let message = match self.kept_because(profile, i, since) {
                Some(why) => format!("{said}; {why}"),
                None => said.clone(),
            };
            self.set(i, action, None, message);
        }
    }
    /// Whether the object `key` names will exist after the plan: the file
    /// creates, updates or deactivates it, or leaves a known object as it is
    /// (unchanged, or rejected: its state stays), or does not name it and the
    /// prior state holds it (unless the missing rule deletes it).
    pub(super) fn exists(&self, prior: &dyn Prior, key: &str) -> bool {
        self.exists_at(self.find_key(key), prior, key)
    }
    /// [`Plan::exists`], given the first row holding `key` (if any).
    pub(super) fn exists_at(&self, row: Option<u32>, prior: &dyn Prior, key: &str) -> bool {
        match row {
            Some(i) => {
                let e = &self.entries[i as usize];
                match e.action {
                    Action::Create | Action::Update | Action::Deactivate => true,
                    Action::Unchanged | Action::Reject => e.has(KNOWN),
                    Action::Delete => false,
                }
            }
            None => self
                .prior_get(prior, key)
                .is_some_and(|(_, key)| !self.inferred_delete(&key)),
        }
    }
    /// Every group on a parent cycle is rejected, naming the ids in the cycle.
    pub(super) fn reject_cycles(&mut self, prior: &dyn Prior) {
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
    pub(super) fn flag_unknown_references(&mut self, prior: &dyn Prior, field: Field) {
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
