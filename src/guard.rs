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

/// Why a file was held, if it was.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Verdict {
    /// One sentence per guard that tripped.
    pub reasons: Vec<String>,
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
        let reason = format!(
            "the file has no records and would delete or deactivate {removals}: always held"
        );
        return Verdict {
            reasons: vec![reason],
            forced: false,
        };
    }
    if objects > 0 {
        let ratio = removals as f64 / objects as f64;
        if ratio > safety.max_delete_ratio {
            reasons.push(format!(
                "it would delete or deactivate {removals} of {objects} ({:.1} %), above max_delete_ratio {:.1} %",
                ratio * 100.0,
                safety.max_delete_ratio * 100.0
            ));
        }
    }
    if let Some(max) = safety.max_delete_count {
        if removals > max {
            reasons.push(format!(
                "it would delete or deactivate {removals}, above max_delete_count {max}"
            ));
        }
    }
    if let Some(last) = last_records.filter(|&l| l > 0) {
        let shrink = 1.0 - plan.records as f64 / last as f64;
        if shrink > safety.max_shrink_ratio {
            reasons.push(format!(
                "it has {} records, {:.1} % fewer than the last accepted file ({last}), above max_shrink_ratio {:.1} %",
                plan.records,
                shrink * 100.0,
                safety.max_shrink_ratio * 100.0
            ));
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
