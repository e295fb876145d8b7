//! What a file's first run planned, for the run that resumes it (SPEC §6).
//!
//! A run interrupted after some writes (a crash, a kill, an LMS that went
//! away) leaves the file in the inbox; the next run plans it again against
//! a store that holds what was applied, so those rows come out `unchanged`
//! (or, for a user whose links were not sent yet, `update`) and the
//! deletions done are no longer missing keys. Its results must still tell
//! what happened to every row across both runs: the actions first planned,
//! with their outcomes. So before a file's first write its plan's actions
//! are kept ([`FirstPlan`], in the state store), and a run that finds them
//! for the same content reports its rows as first planned
//! ([`Plan::report_as_first`]).

use super::{Entry, Plan, KNOWN};
use crate::model::Action;
use crate::store::{action_code, action_of, put_str, Cursor};

/// A plan's actions and messages where they say what a write did: the rows
/// of records that create, update, deactivate or delete, and the inferred
/// rows (by key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstPlan {
    records: u64,
    /// `(row, action, message)` of the records' rows that write.
    rows: Vec<(u32, Action, String)>,
    /// `(key, action, message)` of the rows the missing rule added.
    inferred: Vec<(String, Action, String)>,
}

/// The format of [`FirstPlan::encode`]: the record count; the records'
/// rows as runs `(first row, rows, action, message)` of consecutive rows
/// with one action and no message (a first import's creates are a few
/// runs), or one row with its message; then the inferred rows.
const MAGIC: &[u8; 8] = b"MPLAN1\n\0";

/// Appends the rows' runs, their count first.
fn encode_rows<'a>(out: &mut Vec<u8>, rows: impl Iterator<Item = (u32, Action, &'a str)>) {
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut runs = 0u32;
    // The run being made: its first row, length, action and message.
    let mut run: Option<(u32, u32, Action, &str)> = None;
    let mut flush = |out: &mut Vec<u8>, (row, len, action, message): (u32, u32, Action, &str)| {
        out.extend_from_slice(&row.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.push(action_code(action));
        put_str(out, message);
        runs += 1;
    };
    for (row, action, message) in rows {
        match &mut run {
            Some((first, len, a, m))
                if m.is_empty()
                    && message.is_empty()
                    && *a == action
                    && first.checked_add(*len) == Some(row) =>
            {
                *len += 1
            }
            _ => {
                if let Some(done) = run.take() {
                    flush(out, done);
                }
                run = Some((row, 1, action, message));
            }
        }
    }
    if let Some(done) = run {
        flush(out, done);
    }
    out[count_at..count_at + 4].copy_from_slice(&runs.to_le_bytes());
}

impl FirstPlan {
    /// The bytes a store keeps (as [`Plan::encode_first_plan`] writes
    /// them).
    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.records.to_le_bytes());
        let rows = self.rows.iter().map(|(r, a, m)| (*r, *a, m.as_str()));
        encode_rows(&mut out, rows);
        out.extend_from_slice(&(self.inferred.len() as u32).to_le_bytes());
        for (key, action, message) in &self.inferred {
            put_str(&mut out, key);
            out.push(action_code(*action));
            put_str(&mut out, message);
        }
        out
    }

    /// What [`FirstPlan::encode`] wrote; `None` for other bytes.
    pub fn decode(bytes: &[u8]) -> Option<FirstPlan> {
        let mut c = Cursor(bytes.strip_prefix(MAGIC)?);
        let mut plan = FirstPlan {
            records: c.u64()?,
            ..FirstPlan::default()
        };
        for _ in 0..c.u32()? {
            let (row, len) = (c.u32()?, c.u32()?);
            let action = action_of(c.u8()?)?;
            let message = c.str()?;
            for r in u64::from(row)..u64::from(row) + u64::from(len) {
                plan.rows
                    .push((u32::try_from(r).ok()?, action, message.to_string()));
            }
        }
        for _ in 0..c.u32()? {
            let key = c.str()?.to_string();
            let action = action_of(c.u8()?)?;
            plan.inferred.push((key, action, c.str()?.to_string()));
        }
        c.0.is_empty().then_some(plan)
    }
}

/// Whether a row's action is a write.
fn writes(action: Action) -> bool {
    !matches!(action, Action::Unchanged | Action::Reject)
}

impl Plan {
    /// The actions of this plan's writes, to be kept before the first,
    /// encoded as [`FirstPlan::decode`] reads them; `None` when the plan
    /// writes nothing.
    pub fn encode_first_plan(&self) -> Option<Vec<u8>> {
        let start = self.entries.partition_point(|e| e.line != 0);
        let (records, inferred) = self.entries.split_at(start);
        if inferred.is_empty() && !records.iter().any(|e| writes(e.action)) {
            return None;
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.records.to_le_bytes());
        let rows = records
            .iter()
            .enumerate()
            .filter(|(_, e)| writes(e.action))
            .map(|(i, e)| (i as u32, e.action, self.row(i).message));
        encode_rows(&mut out, rows);
        out.extend_from_slice(&(inferred.len() as u32).to_le_bytes());
        for (i, e) in inferred.iter().enumerate() {
            put_str(&mut out, self.str(e.key));
            out.push(action_code(e.action));
            put_str(&mut out, self.row(start + i).message);
        }
        Some(out)
    }

    /// Reports this plan, made again for the same content after an
    /// interrupted run, as `first` planned it: a row the first run wrote
    /// that now comes out `unchanged` or `update` (what a resume makes of
    /// a write applied whole or in part) takes its first action and
    /// message, and the inferred rows the first run wrote that are no
    /// longer missing (deleted, or deactivated, already) come back. The
    /// actions written by this run are not changed otherwise.
    ///
    /// Returns where each inferred row now comes from: `Some(i)` for the
    /// row that was at `i` in this plan, `None` for one brought back (the
    /// rows of records keep their places). A `first` of another file (its
    /// record count differs) changes nothing.
    pub fn report_as_first(&mut self, first: &FirstPlan) -> Vec<Option<usize>> {
        let start = self.entries.partition_point(|e| e.line != 0);
        let unchanged: Vec<Option<usize>> = (start..self.entries.len()).map(Some).collect();
        if first.records != self.records {
            return unchanged;
        }
        for (row, action, message) in &first.rows {
            let i = *row as usize;
            let Some(e) = self.entries.get(i).filter(|e| e.line != 0) else {
                continue;
            };
            if e.action != *action && matches!(e.action, Action::Unchanged | Action::Update) {
                let code = e.code;
                self.set(i, *action, code, message.clone());
            }
        }
        // The inferred rows: this plan's, and the first plan's it lacks,
        // sorted by key; each with where it came from in this plan and
        // where it is among the entries after `start`.
        let old = self.entries.len() - start;
        let mut tail: Vec<(String, Option<usize>, usize)> = (start..self.entries.len())
            .map(|i| {
                (
                    self.str(self.entries[i].key).to_string(),
                    Some(i),
                    i - start,
                )
            })
            .collect();
        let mut back = Vec::new();
        for (key, action, message) in &first.inferred {
            if tail
                .binary_search_by(|(k, _, _)| k.as_str().cmp(key))
                .is_err()
            {
                back.push((key, *action, message));
            }
        }
        if back.is_empty() {
            return unchanged;
        }
        for (j, (key, action, message)) in back.into_iter().enumerate() {
            let span = self.intern(key);
            self.entries.push(Entry {
                line: 0,
                byte: 0,
                key: span,
                fingerprint: [0; 2],
                message: u32::MAX,
                action,
                code: None,
                flags: KNOWN,
            });
            let i = self.entries.len() - 1;
            self.set(i, action, None, message.clone());
            tail.push((key.clone(), None, old + j));
        }
        tail.sort_by(|a, b| a.0.cmp(&b.0));
        let entries: Vec<Entry> = self.entries.drain(start..).collect();
        self.entries
            .extend(tail.iter().map(|(_, _, at)| entries[*at].clone()));
        tail.into_iter().map(|(_, from, _)| from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn action() -> impl Strategy<Value = Action> {
        proptest::sample::select(Action::ALL.to_vec())
    }

    proptest! {
        /// A kept plan reads back as it was written; other bytes (cut
        /// short, or not a plan) read as none.
        #[test]
        fn a_first_plan_reads_back_as_written(
            records in any::<u64>(),
            rows in proptest::collection::vec((any::<u32>(), action(), ".{0,12}"), 0..20),
            inferred in proptest::collection::vec((".{0,12}", action(), ".{0,12}"), 0..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let plan = FirstPlan { records, rows, inferred };
            let bytes = plan.encode();
            prop_assert_eq!(FirstPlan::decode(&bytes), Some(plan));
            let cut = cut.index(bytes.len());
            prop_assert_eq!(FirstPlan::decode(&bytes[..cut]), None);
        }
    }
}
