//! From muster's fields to SCIM resources and PATCH operations
//! (`docs/scim.md` is the table).

use serde_json::{json, Map, Value as Json};

use super::config::{ScimConfig, SegmentMapping};
use crate::model::{Action, Field, FieldName, ObjectKind};
use crate::sink::{Operation, Value};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const MUSTER_USER: &str = "urn:muster:params:scim:schemas:extension:2.0:User";
pub const MUSTER_GROUP: &str = "urn:muster:params:scim:schemas:extension:2.0:Group";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The attribute muster sets to `true` on a create that invites, unless
/// the tenant names another (`invite_attribute`).
pub const INVITE_ATTRIBUTE: &str = "urn:muster:params:scim:schemas:extension:2.0:User:invite";

/// Where the text fields of users go unless `[sink.attributes]` says
/// otherwise.
const TEXT_PATHS: &[(&str, &str)] = &[
    ("first_name", "name.givenName"),
    ("last_name", "name.familyName"),
    ("title", "title"),
    ("language", "preferredLanguage"),
    (
        "birth_date",
        "urn:muster:params:scim:schemas:extension:2.0:User:birthDate",
    ),
    (
        "employed_since",
        "urn:muster:params:scim:schemas:extension:2.0:User:employedSince",
    ),
    (
        "employed_until",
        "urn:muster:params:scim:schemas:extension:2.0:User:employedUntil",
    ),
    (
        "gender",
        "urn:muster:params:scim:schemas:extension:2.0:User:gender",
    ),
];

/// A user field that the `[sink.attributes]` table may move.
pub fn is_text_field(field: &str) -> bool {
    TEXT_PATHS.iter().any(|(f, _)| *f == field) || field == "username"
}

/// Resolves the LMS id of an object an operation names: its id, or
/// `bulkId:<id>` when it is created earlier in the same Bulk request.
pub type Refs<'a> = &'a dyn Fn(ObjectKind, &str) -> Option<String>;

pub struct Mapping {
    user_name: String,
    invite: String,
    pub segments: SegmentMapping,
    attributes: Vec<(String, String)>,
}

impl Mapping {
    pub fn new(cfg: &ScimConfig) -> Mapping {
        Mapping {
            user_name: cfg.user_name.clone(),
            invite: cfg.invite_attribute.clone(),
            segments: cfg.segments,
            attributes: cfg.attributes.clone(),
        }
    }

    /// The SCIM endpoint of a kind.
    pub fn endpoint(&self, kind: ObjectKind) -> &'static str {
        match kind {
            ObjectKind::User => "/Users",
            ObjectKind::Group | ObjectKind::Segment => "/Groups",
        }
    }

    /// The `externalId` muster gives an object: its key (a segment's is
    /// `segment:<key>`, so it never meets a group's).
    pub fn external_id(&self, kind: ObjectKind, key: &str) -> String {
        match kind {
            ObjectKind::Segment => format!("segment:{key}"),
            _ => key.to_string(),
        }
    }

    /// Whether a kind is written at all (segments as an attribute are not).
    pub fn writes(&self, kind: ObjectKind) -> bool {
        kind != ObjectKind::Segment || self.segments == SegmentMapping::Groups
    }

    /// The group kinds a user's list field makes memberships of.
    pub fn membership(&self, field: Field) -> Option<ObjectKind> {
        match field {
            Field::Groups => Some(ObjectKind::Group),
            Field::Segments if self.segments == SegmentMapping::Groups => Some(ObjectKind::Segment),
            _ => None,
        }
    }

    pub fn invite_attribute(&self) -> &str {
        &self.invite
    }

    fn text_path(&self, field: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, p)| p.as_str())
            .or_else(|| {
                TEXT_PATHS
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map(|(_, p)| *p)
            })
    }

    /// The body of a POST creating `op`'s object.
    pub fn resource(&self, op: &Operation, refs: Refs<'_>) -> Json {
        let mut r = Map::new();
        match op.kind {
            ObjectKind::User => {
                r.insert("schemas".into(), json!([USER]));
                r.insert("externalId".into(), json!(op.key));
                let user_name = text(&op.fields, &self.user_name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or(&op.key);
                r.insert("userName".into(), json!(user_name));
                set_path(
                    &mut r,
                    &format!("{ENTERPRISE}:employeeNumber"),
                    json!(op.key),
                );
                r.insert("active".into(), json!(true));
                for &(field, ref value) in &op.fields {
                    for (path, v) in self.user_values(field, value, refs) {
                        if let Some(v) = v {
                            set_path(&mut r, &path, v);
                        }
                    }
                }
                if op.invite && !self.invite.is_empty() {
                    set_path(&mut r, &self.invite, json!(true));
                }
            }
            ObjectKind::Group | ObjectKind::Segment => {
                r.insert("schemas".into(), json!([GROUP]));
                r.insert(
                    "externalId".into(),
                    json!(self.external_id(op.kind, &op.key)),
                );
                let name = text(&op.fields, "name").unwrap_or(&op.key);
                r.insert("displayName".into(), json!(name));
                let kind = if op.kind == ObjectKind::Group {
                    "group"
                } else {
                    "segment"
                };
                set_path(&mut r, &format!("{MUSTER_GROUP}:kind"), json!(kind));
                for (path, v) in self.parent_values(&op.fields, refs) {
                    if let Some(v) = v {
                        set_path(&mut r, &path, v);
                    }
                }
            }
        }
        Json::Object(r)
    }

    /// The PATCH operations of an update or a deactivation (empty when
    /// nothing the LMS keeps changed: e.g. only memberships).
    pub fn patch(&self, op: &Operation, refs: Refs<'_>) -> Vec<Json> {
        let mut ops = Vec::new();
        let mut push = |path: String, v: Option<Json>| {
            ops.push(match v {
                Some(v) => json!({"op": "replace", "path": path, "value": v}),
                None => json!({"op": "remove", "path": path}),
            })
        };
        if op.action == Action::Deactivate {
            push("active".into(), Some(json!(false)));
            return ops;
        }
        if op.reactivate && !op.fields.iter().any(|(f, _)| *f == Field::Status) {
            push("active".into(), Some(json!(true)));
        }
        // An invitation its `invite_from` date made due: the same attribute
        // a create that invites carries.
        if op.invite && op.kind == ObjectKind::User && !self.invite.is_empty() {
            push(self.invite.clone(), Some(json!(true)));
        }
        match op.kind {
            ObjectKind::User => {
                for &(field, ref value) in &op.fields {
                    if field.as_str() == self.user_name {
                        let v = text(&op.fields, field.as_str()).filter(|v| !v.is_empty());
                        push("userName".into(), Some(json!(v.unwrap_or(&op.key))));
                    }
                    for (path, v) in self.user_values(field, value, refs) {
                        // A reference that does not resolve is left as it is.
                        if v.is_none() && field == Field::ManagerId && !value.is_empty() {
                            continue;
                        }
                        push(path, v);
                    }
                }
            }
            ObjectKind::Group | ObjectKind::Segment => {
                if let Some(name) = text(&op.fields, "name") {
                    push("displayName".into(), Some(json!(name)));
                }
                for (path, v) in self.parent_values(&op.fields, refs) {
                    push(path, v);
                }
            }
        }
        ops
    }

    /// The attributes one user field sets: `None` removes (an empty value).
    fn user_values(
        &self,
        field: Field,
        value: &Value,
        refs: Refs<'_>,
    ) -> Vec<(String, Option<Json>)> {
        let empty = value.is_empty();
        let one = |path: &str, v: Json| vec![(path.to_string(), (!empty).then_some(v))];
        let t = match value {
            Value::Text(t) => t.as_str(),
            Value::List(_) => "",
        };
        match field {
            // The key: externalId and employeeNumber, set on create.
            Field::ExternalId => Vec::new(),
            Field::Email => one(
                "emails",
                json!([{"value": t, "type": "work", "primary": true}]),
            ),
            Field::Phone => one("phoneNumbers", json!([{"value": t, "type": "work"}])),
            Field::Status => vec![("active".into(), Some(json!(t != "inactive")))],
            Field::ManagerId => {
                let id = if empty {
                    None
                } else {
                    refs(ObjectKind::User, t)
                };
                vec![(
                    format!("{ENTERPRISE}:manager"),
                    id.map(|id| json!({"value": id})),
                )]
            }
            Field::AdminGroups => one(&format!("{MUSTER_USER}:adminGroups"), list(value)),
            Field::Segments if self.segments == SegmentMapping::Attribute => {
                one(&format!("{MUSTER_USER}:segments"), list(value))
            }
            // Memberships are written on the groups.
            Field::Groups | Field::Segments => Vec::new(),
            _ => match self.text_path(field.as_str()) {
                Some(path) => one(path, json!(t)),
                None => Vec::new(),
            },
        }
    }

    /// A group's parent: its externalId and its LMS id.
    fn parent_values(
        &self,
        fields: &[(FieldName, Value)],
        refs: Refs<'_>,
    ) -> Vec<(String, Option<Json>)> {
        let Some(parent) = text(fields, "parent_id") else {
            return Vec::new();
        };
        let id = if parent.is_empty() {
            None
        } else {
            refs(ObjectKind::Group, parent)
        };
        vec![
            (
                format!("{MUSTER_GROUP}:parentExternalId"),
                (!parent.is_empty()).then(|| json!(parent)),
            ),
            (format!("{MUSTER_GROUP}:parentId"), id.map(|id| json!(id))),
        ]
    }
}

fn text<'a>(fields: &'a [(FieldName, Value)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| match v {
            Value::Text(t) => Some(t.as_str()),
            Value::List(_) => None,
        })
}

fn list(value: &Value) -> Json {
    match value {
        Value::List(items) => json!(items),
        Value::Text(t) => json!([t]),
    }
}

/// Sets `path` (`a.b`, or `urn:…:Schema:a.b`) in a resource, adding an
/// extension's URN to its `schemas`.
pub fn set_path(r: &mut Map<String, Json>, path: &str, v: Json) {
    let (schema, attrs) = match path.strip_prefix("urn:") {
        Some(_) => match path.rfind(':') {
            Some(i) => (Some(&path[..i]), &path[i + 1..]),
            None => (None, path),
        },
        None => (None, path),
    };
    let mut at = r;
    if let Some(schema) = schema {
        if let Some(Json::Array(list)) = at.get_mut("schemas") {
            if !list.iter().any(|s| s == schema) {
                list.push(json!(schema));
            }
        }
        at = at
            .entry(schema)
            .or_insert_with(|| Json::Object(Map::new()))
            .as_object_mut()
            .expect("an extension is an object");
    }
    let mut parts = attrs.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.insert(part.to_string(), v);
            return;
        }
        let next = at.entry(part).or_insert_with(|| Json::Object(Map::new()));
        if !next.is_object() {
            *next = Json::Object(Map::new());
        }
        at = next.as_object_mut().expect("made an object above");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            user_name: "email".into(),
            invite: INVITE_ATTRIBUTE.into(),
            segments: SegmentMapping::Groups,
            attributes: vec![(
                "custom.cost_center".into(),
                format!("{ENTERPRISE}:costCenter"),
            )],
        }
    }

    fn op(action: Action, fields: &[(&str, Value)]) -> Operation {
        Operation {
            op: 1,
            kind: ObjectKind::User,
            action,
            key: "E1".into(),
            fields: fields
                .iter()
                .map(|(n, v)| (crate::profile::field_name(n), v.clone()))
                .collect(),
            invite: action == Action::Create,
            reactivate: false,
            lms_id: None,
            ids: Vec::new(),
            fresh: action == Action::Create,
        }
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn a_created_user_carries_core_enterprise_and_muster_attributes() {
        let m = mapping();
        let op = op(
            Action::Create,
            &[
                ("external_id", t("E1")),
                ("first_name", t("Anna")),
                ("last_name", t("Bó")),
                ("email", t("anna@x.com")),
                ("phone", t("")),
                ("birth_date", t("1990-01-02")),
                ("manager_id", t("M1")),
                ("custom.cost_center", t("CC7")),
                ("groups", Value::List(vec!["G1".into()])),
            ],
        );
        let refs = |kind: ObjectKind, key: &str| {
            (kind == ObjectKind::User && key == "M1").then(|| "id-m1".to_string())
        };
        let r = m.resource(&op, &refs);
        assert_eq!(r["userName"], "anna@x.com");
        assert_eq!(r["externalId"], "E1");
        assert_eq!(r["name"], json!({"givenName": "Anna", "familyName": "Bó"}));
        assert_eq!(r["emails"][0]["value"], "anna@x.com");
        assert!(
            r.get("phoneNumbers").is_none(),
            "an empty phone is not sent"
        );
        assert_eq!(r[ENTERPRISE]["manager"]["value"], "id-m1");
        assert_eq!(r[ENTERPRISE]["employeeNumber"], "E1");
        assert_eq!(r[ENTERPRISE]["costCenter"], "CC7");
        assert_eq!(r[MUSTER_USER]["birthDate"], "1990-01-02");
        assert_eq!(r[MUSTER_USER]["invite"], true);
        assert!(
            r.get("groups").is_none(),
            "memberships are written on groups"
        );
        assert_eq!(r["schemas"], json!([USER, ENTERPRISE, MUSTER_USER]));
    }

    #[test]
    fn an_update_patches_only_what_changed_and_removes_emptied_values() {
        let m = mapping();
        let op = op(
            Action::Update,
            &[
                ("email", t("new@x.com")),
                ("title", t("")),
                ("manager_id", t("")),
            ],
        );
        let ops = m.patch(&op, &|_, _| None);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "userName", "value": "new@x.com"}),
                json!({"op": "replace", "path": "emails", "value": [{"value": "new@x.com", "type": "work", "primary": true}]}),
                json!({"op": "remove", "path": "title"}),
                json!({"op": "remove", "path": format!("{ENTERPRISE}:manager")}),
            ]
        );
        let off = super::tests::op(Action::Deactivate, &[]);
        assert_eq!(
            m.patch(&off, &|_, _| None),
            vec![json!({"op": "replace", "path": "active", "value": false})]
        );
    }

    #[test]
    fn a_group_names_its_parent_by_external_id_and_by_id() {
        let m = mapping();
        let mut g = op(
            Action::Create,
            &[("name", t("Sales")), ("parent_id", t("P"))],
        );
        g.kind = ObjectKind::Group;
        let r = m.resource(&g, &|_, key| (key == "P").then(|| "bulkId:b3".into()));
        assert_eq!(r["displayName"], "Sales");
        assert_eq!(r[MUSTER_GROUP]["parentId"], "bulkId:b3");
        assert_eq!(r[MUSTER_GROUP]["parentExternalId"], "P");
        g.kind = ObjectKind::Segment;
        assert_eq!(m.resource(&g, &|_, _| None)["externalId"], "segment:E1");
    }
}
