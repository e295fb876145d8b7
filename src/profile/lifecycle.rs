//! The lifecycle and ownership keys of a profile (SPEC §11), checked once:
//! the invitation's date field, the grace before a deletion, the protected
//! keys and the fields muster owns.

use super::config::ProfileConfig;
use super::{Date, Field, FieldKind, ObjectKind, Slot};

/// What a profile says of lifecycle and ownership.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// The slot of `invite_from`: a new user whose date there is after
    /// today is invited by the first run on or after that date.
    pub invite_from: Option<usize>,
    /// `delete_after_days`: a deletion is a deactivation first, and
    /// happens this many days after the object first went missing
    /// (ended, inactive).
    pub delete_after_days: Option<u32>,
    /// Keys never deactivated or deleted (`protected`).
    pub protected: Vec<glob::Pattern>,
    /// The fields updates write (`owned_fields`); `None`: all.
    pub owned: Option<Vec<Field>>,
}

impl Lifecycle {
    /// Checks the keys of `c` against the profile's `slots` (`slot_of`:
    /// the slot of a field name, or an error naming the key `what`).
    pub(super) fn compile(
        c: &ProfileConfig,
        slots: &[Slot],
        slot_of: &dyn Fn(&str, &str) -> Result<usize, String>,
    ) -> Result<Lifecycle, String> {
        let users_only = |key: &str| {
            if c.object == ObjectKind::User {
                Ok(())
            } else {
                Err(format!(
                    "`{key}` is for user profiles (this one is for {}s)",
                    c.object.as_str()
                ))
            }
        };
        let invite_from = match &c.invite_from {
            None => None,
            Some(name) => {
                users_only("invite_from")?;
                let s = slot_of(name, "invite_from")?;
                if slots[s].kind != FieldKind::Date {
                    return Err(format!("invite_from: `{name}` is not a date field"));
                }
                if !c.invite_on_create {
                    return Err(
                        "invite_from delays the invitation `invite_on_create` sends: set `invite_on_create = true` too"
                            .into(),
                    );
                }
                Some(s)
            }
        };
        if let Some(days) = c.delete_after_days {
            let deletes = c.missing == super::MissingRule::Delete
                || c.inactive_action == super::EndAction::Delete
                || c.end_date
                    .as_ref()
                    .is_some_and(|e| e.action == super::EndAction::Delete);
            if !deletes {
                return Err(format!(
                    "delete_after_days = {days}, but nothing in this profile deletes (`missing`, `inactive_action` or `end_date.action` = \"delete\")"
                ));
            }
            users_only("delete_after_days")?;
        }
        let protected = c
            .protected
            .iter()
            .enumerate()
            .map(|(i, p)| {
                glob::Pattern::new(p)
                    .map_err(|e| format!("protected[{i}]: {p:?} is not a pattern: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let owned = match &c.owned_fields {
            None => None,
            Some(names) => {
                let mut owned = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let s = slot_of(name, &format!("owned_fields[{i}]"))?;
                    owned.push(slots[s].field);
                }
                Some(owned)
            }
        };
        Ok(Lifecycle {
            invite_from,
            delete_after_days: c.delete_after_days,
            protected,
            owned,
        })
    }

    /// Whether `key` is protected (e-mail keys, `fold`, compared ignoring
    /// case).
    pub fn is_protected(&self, key: &str, fold: bool) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: !fold,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        self.protected.iter().any(|p| p.matches_with(key, options))
    }

    /// Whether updates write `field`.
    pub fn owns(&self, field: Field) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains(&field))
    }

    /// The day on or after which an object missing (ended, inactive) since
    /// `since` is deleted.
    pub fn delete_on(&self, since: Date) -> Option<Date> {
        self.delete_after_days.map(|days| since.plus_days(days))
    }
}
