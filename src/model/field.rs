//! The fields of users, groups and segments (SPEC §1).

use std::fmt;

use super::ObjectKind;

/// A field of an object. Fields order by their names (the order of a
/// row's fingerprint and of the field hashes the store keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    ExternalId,
    Username,
    Email,
    FirstName,
    LastName,
    Phone,
    Title,
    BirthDate,
    EmployedSince,
    EmployedUntil,
    Gender,
    Language,
    ManagerId,
    Status,
    Groups,
    AdminGroups,
    Segments,
    Name,
    ParentId,
    /// `custom.<name>`: its whole name, interned.
    Custom(&'static str),
}

/// How a field's cells are checked and normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// Checked as `local@domain`, stored lower-cased.
    Email,
    /// Parsed with the column's date formats, stored as `YYYY-MM-DD`.
    Date,
    /// Mapped to `active` / `inactive`.
    Status,
    /// Split on the list separator; items trimmed, empties dropped, duplicates removed.
    List,
    /// The key of another object (a manager, a parent group).
    Reference,
}

const USER_FIELDS: &[(&str, Field)] = &[
    ("external_id", Field::ExternalId),
    ("username", Field::Username),
    ("email", Field::Email),
    ("first_name", Field::FirstName),
    ("last_name", Field::LastName),
    ("phone", Field::Phone),
    ("title", Field::Title),
    ("birth_date", Field::BirthDate),
    ("employed_since", Field::EmployedSince),
    ("employed_until", Field::EmployedUntil),
    ("gender", Field::Gender),
    ("language", Field::Language),
    ("manager_id", Field::ManagerId),
    ("status", Field::Status),
    ("groups", Field::Groups),
    ("admin_groups", Field::AdminGroups),
    ("segments", Field::Segments),
];

impl Field {
    /// Parses a field name for an object kind.
    pub fn parse(object: ObjectKind, name: &str) -> Result<Field, String> {
        let known = match object {
            ObjectKind::User => {
                if let Some(custom) = name.strip_prefix("custom.") {
                    if custom.is_empty() {
                        return Err("`custom.` needs a name, e.g. `custom.cost_center`".into());
                    }
                    return Ok(Field::Custom(super::intern(name)));
                }
                USER_FIELDS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| *f)
            }
            ObjectKind::Group => match name {
                "external_id" => Some(Field::ExternalId),
                "name" => Some(Field::Name),
                "parent_id" => Some(Field::ParentId),
                _ => None,
            },
            ObjectKind::Segment => match name {
                "external_id" => Some(Field::ExternalId),
                "name" => Some(Field::Name),
                _ => None,
            },
        };
        known.ok_or_else(|| {
            let names: Vec<&str> = match object {
                ObjectKind::User => USER_FIELDS
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(["custom.<name>"])
                    .collect(),
                ObjectKind::Group => vec!["external_id", "name", "parent_id"],
                ObjectKind::Segment => vec!["external_id", "name"],
            };
            format!(
                "unknown {} field `{name}` (known: {})",
                object.as_str(),
                names.join(", ")
            )
        })
    }

    pub fn kind(self) -> FieldKind {
        match self {
            Field::Email => FieldKind::Email,
            Field::BirthDate | Field::EmployedSince | Field::EmployedUntil => FieldKind::Date,
            Field::Status => FieldKind::Status,
            Field::Groups | Field::AdminGroups | Field::Segments => FieldKind::List,
            Field::ManagerId | Field::ParentId => FieldKind::Reference,
            _ => FieldKind::Text,
        }
    }

    /// The field's name: a SPEC §1 name, or `custom.<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::ExternalId => "external_id",
            Field::Username => "username",
            Field::Email => "email",
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::Phone => "phone",
            Field::Title => "title",
            Field::BirthDate => "birth_date",
            Field::EmployedSince => "employed_since",
            Field::EmployedUntil => "employed_until",
            Field::Gender => "gender",
            Field::Language => "language",
            Field::ManagerId => "manager_id",
            Field::Status => "status",
            Field::Groups => "groups",
            Field::AdminGroups => "admin_groups",
            Field::Segments => "segments",
            Field::Name => "name",
            Field::ParentId => "parent_id",
            Field::Custom(name) => name,
        }
    }

    /// The field named `name` whatever its object ([`Field::as_str`] read
    /// back); a name no field has is kept as a custom field of that name.
    pub fn from_name(name: &str) -> Field {
        match name {
            "name" => Field::Name,
            "parent_id" => Field::ParentId,
            _ => USER_FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(|| Field::Custom(super::intern(name)), |(_, f)| *f),
        }
    }

    /// Whether this field links a user to other objects (a manager, groups,
    /// segments): written once every user of the file exists.
    pub fn is_link(self) -> bool {
        matches!(
            self,
            Field::ManagerId | Field::Groups | Field::AdminGroups | Field::Segments
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Ord for Field {
    fn cmp(&self, other: &Field) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Field {
    fn partial_cmp(&self, other: &Field) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for Field {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}
