//! A file's summary JSON (SPEC §4): counts by action and outcome, rows,
//! bytes, duration, source, profile, and whether a guard held it.

use std::time::Instant;

use super::writer::Line;
use crate::guard::Verdict;
use crate::model::Action;
use crate::plan::Plan;
use crate::results::Outcome;

use super::Counts;

/// Lines by action and outcome; counted in an array, not through JSON
/// maps line by line.
pub(super) fn count(plan: &Plan, lines: &[Line]) -> Counts {
    let mut n = [[0u64; Outcome::ALL.len()]; Action::ALL.len()];
    for (i, line) in lines.iter().enumerate() {
        n[plan.row(i).action as usize][line.outcome as usize] += 1;
    }
    n
}

/// `{action: {outcome: n}}`, the actions and outcomes with lines only.
pub fn counts_json(n: &Counts) -> serde_json::Map<String, serde_json::Value> {
    let mut counts = serde_json::Map::new();
    for (a, by_outcome) in Action::ALL.iter().zip(n) {
        let mut entry = serde_json::Map::new();
        for (o, n) in Outcome::ALL.iter().zip(by_outcome) {
            if *n > 0 {
                entry.insert(o.as_str().into(), (*n).into());
            }
        }
        if !entry.is_empty() {
            counts.insert(a.as_str().into(), entry.into());
        }
    }
    counts
}

/// What a file's summary says.
pub(super) struct Summary<'a> {
    pub(super) tenant: &'a str,
    pub(super) source: String,
    pub(super) file: &'a str,
    pub(super) profile: &'a str,
    pub(super) dry_run: bool,
    /// The processed name of an earlier file with the same bytes.
    pub(super) same_content_as: Option<&'a str>,
    /// The plan and each line's outcome; none for a file refused whole.
    pub(super) plan: Option<(&'a Plan, &'a [Line])>,
    pub(super) verdict: &'a Verdict,
    pub(super) started: Instant,
    /// Why the file was refused whole.
    pub(super) refused: Option<&'a str>,
}

impl Summary<'_> {
    pub(super) fn to_json(&self) -> String {
        let mut counts = serde_json::Map::new();
        let (mut rows, mut bytes) = (0, 0);
        if let Some((plan, lines)) = self.plan {
            rows = plan.records;
            bytes = plan.bytes;
            counts = counts_json(&count(plan, lines));
        }
        let summary = serde_json::json!({
            "tenant": self.tenant,
            "source": self.source,
            "file": self.file,
            "profile": self.profile,
            "dry_run": self.dry_run,
            "same_content_as": self.same_content_as,
            "held": self.verdict.held(),
            "held_reasons": self.verdict.reasons,
            "forced": self.verdict.forced,
            "refused": self.refused,
            "rows": rows,
            "bytes": bytes,
            "counts": counts,
            "duration_ms": self.started.elapsed().as_millis() as u64,
        });
        let mut text = serde_json::to_string_pretty(&summary).unwrap_or_default();
        text.push('\n');
        text
    }
}
