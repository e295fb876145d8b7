//! The fields of users, groups and segments (SPEC §1).

use std::fmt;

use super::ObjectKind;

/// A field of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
    /// `custom.<name>`.
    Custom(Box<str>),
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
                    return Ok(Field::Custom(custom.into()));
                }
                USER_FIELDS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| f.clone())
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

    pub fn kind(&self) -> FieldKind {
        match self {
            Field::Email => FieldKind::Email,
            Field::BirthDate | Field::EmployedSince | Field::EmployedUntil => FieldKind::Date,
            Field::Status => FieldKind::Status,
            Field::Groups | Field::AdminGroups | Field::Segments => FieldKind::List,
            Field::ManagerId | Field::ParentId => FieldKind::Reference,
            _ => FieldKind::Text,
        }
    }

    pub fn name(&self) -> &str {
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
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Custom(name) => write!(f, "custom.{name}"),
            other => f.write_str(other.name()),
        }
    }
}
