//! The words every stage shares: the kinds of object ([`ObjectKind`]), what
//! a row does ([`Action`]), the fields of objects ([`Field`], and
//! [`FieldName`] as operations and the store carry them), and the stable
//! codes of the results file ([`Code`]). Nothing here depends on another
//! module of the crate.

mod code;
mod field;

pub use code::Code;
pub use field::{Field, FieldKind};

use serde::{Deserialize, Serialize};

/// The kinds of object (SPEC §1).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    #[default]
    User,
    Group,
    Segment,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
            ObjectKind::Segment => "segment",
        }
    }
}

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

/// A field as operations, field hashes and the store carry it: the
/// [`Field`] itself, `Copy` (a custom field's name is interned), so that
/// carrying, copying and dropping it costs nothing.
pub type FieldName = Field;

/// The field named `name` as the store and operations spell it (SPEC §1
/// names, `custom.<name>` for custom fields); a name no field has is kept
/// as a custom field of that name.
pub fn field_name(name: &str) -> Field {
    Field::from_name(name)
}

/// The interned copy of `name`. Each distinct name is kept for the
/// process's life: names come from profiles and stores, a few dozen.
pub(crate) fn intern(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let new: &'static str = Box::leak(name.into());
    names.push(new);
    new
}

impl Serialize for ObjectKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// `n` and the noun, plural unless `n` is 1: "1 record", "3 records".
/// The nouns messages count are regular ("record", "field", "line").
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}
