//! Safety guards, checked before any write (SPEC §3 "Safety").
//!
//! A file that would remove too much — delete or deactivate more than a
//! share or a count of the objects of its kind, or that shrank too much
//! since the last accepted file — is held: nothing is written and every
//! results line says `held`. `--force` (or `safety.force` in the profile)
//! releases a held file, except an empty or header-only file that would
//! remove anyone: that one is always held, since no HR export means "delete
//! everyone".

use crate::model::Action;
use crate::plan::Plan;
use crate::profile::SafetyConfig;

/// One guard that tripped, with the figures it compared: data, rendered
/// into results messages and summaries by its `Display`.
#[derive(Clone, Debug, PartialEq)]
pub enum HoldReason {
    /// A file with no records that would remove anyone: always held.
    Empty { removals: u64 },
    /// More removals than `max_delete_ratio` of the objects of the kind.
    DeleteRatio {
        removals: u64,
        objects: usize,
        max_ratio: f64,
    },
    /// More removals than `max_delete_count`.
    DeleteCount { removals: u64, max: u64 },
    /// Fewer records than the last accepted file, by more than
    /// `max_shrink_ratio`.
    Shrink {
        records: u64,
        last: u64,
        max_ratio: f64,
    },
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            HoldReason::Empty { removals } => write!(
                f,
                "the file has no records and would delete or deactivate {removals}: always held"
            ),
            HoldReason::DeleteRatio {
                removals,
                objects,
                max_ratio,
            } => write!(
                f,
                "it would delete or deactivate {removals} of {objects} ({:.1} %), above max_delete_ratio {:.1} %",
                removals as f64 / objects as f64 * 100.0,
                max_ratio * 100.0
            ),
            HoldReason::DeleteCount { removals, max } => write!(
                f,
                "it would delete or deactivate {removals}, above max_delete_count {max}"
            ),
            HoldReason::Shrink {
                records,
                last,
                max_ratio,
            } => write!(
                f,
                "it has {}, {:.1} % fewer than the last accepted file ({last}), above max_shrink_ratio {:.1} %",
                crate::model::counted(records, "record"),
                (1.0 - records as f64 / last as f64) * 100.0,
                max_ratio * 100.0
            ),
        }
    }
}

impl serde::Serialize for HoldReason {
    /// As its sentence (the summary's `held_reasons`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a file was held, if it was.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// Each guard that tripped.
    pub reasons: Vec<HoldReason>,
    /// Whether `--force` was what let it through.
    pub forced: bool,
}

impl Verdict {
    pub fn held(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Checks `plan` against `safety`. `objects` is how many objects of the
/// plan's kind the store holds; `last_records` is the record count of the
/// last accepted file of this kind, if any.
pub fn check(
    plan: &Plan,
    safety: &SafetyConfig,
    objects: usize,
    last_records: Option<u64>,
    force: bool,
) -> Verdict {
    let tally = plan.tally();
    let removals = (tally.count(Action::Delete) + tally.count(Action::Deactivate)) as u64;
    let mut reasons = Vec::new();
    if plan.records == 0 && removals > 0 {
        return Verdict {
            reasons: vec![HoldReason::Empty { removals }],
            forced: false,
        };
    }
    if objects > 0 && removals as f64 / objects as f64 > safety.max_delete_ratio {
        reasons.push(HoldReason::DeleteRatio {
            removals,
            objects,
            max_ratio: safety.max_delete_ratio,
        });
    }
    if let Some(max) = safety.max_delete_count.filter(|&max| removals > max) {
        reasons.push(HoldReason::DeleteCount { removals, max });
    }
    if let Some(last) = last_records.filter(|&l| l > 0) {
        let shrink = 1.0 - plan.records as f64 / last as f64;
        if shrink > safety.max_shrink_ratio {
            reasons.push(HoldReason::Shrink {
                records: plan.records,
                last,
                max_ratio: safety.max_shrink_ratio,
            });
        }
    }
    if !reasons.is_empty() && (force || safety.force) {
        return Verdict {
            reasons: Vec::new(),
            forced: true,
        };
    }
    Verdict {
        reasons,
        forced: false,
    }
}
