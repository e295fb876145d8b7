//! What the files say the LMS should hold, built from the input files and
//! their results CSVs by the SPEC's rules, and what the LMS does hold, read
//! back through its API — in the same shape, so a test compares the two.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value as Json;

use super::server::ScimServer;

/// A user as the LMS should show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub user_name: String,
    pub given: String,
    pub family: String,
    pub email: String,
    pub title: String,
    pub language: String,
    pub active: bool,
    /// `externalId`s of the groups (segments: `segment:<key>`) it is in.
    pub member_of: BTreeSet<String>,
    pub manager: Option<String>,
}

/// A users file layout.
pub struct Layout {
    pub delimiter: u8,
    pub header: bool,
    pub list_sep: char,
    pub columns: &'static [&'static str],
    /// The field that is the userName.
    pub user_name: &'static str,
}

pub const WINNINGTEMP: Layout = Layout {
    delimiter: b';',
    header: true,
    list_sep: ',',
    columns: &[
        "external_id",
        "first_name",
        "last_name",
        "username",
        "email",
        "phone",
        "title",
        "birth_date",
        "employed_since",
        "employed_until",
        "gender",
        "groups",
        "admin_groups",
        "segments",
        "status",
        "language",
    ],
    user_name: "username",
};

pub const MOBIETRAIN: Layout = Layout {
    delimiter: b',',
    header: false,
    list_sep: ';',
    columns: &[
        "external_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "title",
        "groups",
        "language",
        "employed_until",
    ],
    user_name: "email",
};

pub const LUCCA: Layout = Layout {
    delimiter: b',',
    header: true,
    list_sep: ',',
    columns: &[
        "external_id",
        "email",
        "first_name",
        "last_name",
        "title",
        "language",
        "manager_id",
        "status",
    ],
    user_name: "email",
};

/// (line, key, action, outcome) of a results CSV.
pub fn results(path: &Path) -> Vec<(String, String, String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[0].to_string(),
                rec[1].to_string(),
                rec[2].to_string(),
                rec[3].to_string(),
            )
        })
        .collect()
}

/// Applies one processed users file (and its results) to `state`.
/// `groups`: the group keys the tenant's group file has (None: any name).
pub fn apply_users(
    state: &mut BTreeMap<String, User>,
    layout: &Layout,
    file: &Path,
    results_csv: &Path,
    groups: Option<&BTreeSet<String>>,
    segments: Option<&BTreeSet<String>>,
) {
    let outcome: BTreeMap<String, (String, String)> = results(results_csv)
        .into_iter()
        .filter(|(line, ..)| !line.is_empty())
        .map(|(line, _, action, outcome)| (line, (action, outcome)))
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(layout.delimiter)
        .has_headers(layout.header)
        .flexible(true)
        .from_path(file)
        .unwrap();
    for rec in reader.records() {
        let Ok(rec) = rec else { continue };
        let line = rec.position().unwrap().line().to_string();
        let Some((action, result)) = outcome.get(&line) else {
            continue;
        };
        let field = |name: &str| {
            layout
                .columns
                .iter()
                .position(|c| *c == name)
                .and_then(|i| rec.get(i))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let list = |name: &str, known: Option<&BTreeSet<String>>, prefix: &str| {
            field(name)
                .split(layout.list_sep)
                .map(str::trim)
                .filter(|s| !s.is_empty() && known.is_none_or(|k| k.contains(*s)))
                .map(|s| format!("{prefix}{s}"))
                .collect::<BTreeSet<String>>()
        };
        let key = field("external_id");
        if result != "ok" {
            continue;
        }
        match action.as_str() {
            "create" | "update" => {
                let mut member_of = list("groups", groups, "");
                if layout.columns.contains(&"segments") {
                    member_of.extend(list("segments", segments, "segment:"));
                }
                let email = field("email").to_lowercase();
                let user_name = match field(layout.user_name) {
                    n if n.is_empty() => key.clone(),
                    n if layout.user_name == "email" => n.to_lowercase(),
                    n => n,
                };
                let manager = Some(field("manager_id")).filter(|m| !m.is_empty());
                state.insert(
                    key,
                    User {
                        user_name,
                        given: field("first_name"),
                        family: field("last_name"),
                        email,
                        title: field("title"),
                        language: field("language"),
                        active: !field("status").eq_ignore_ascii_case("inactive"),
                        member_of,
                        manager,
                    },
                );
            }
            // A deactivation writes `active` alone.
            "deactivate" => {
                if let Some(u) = state.get_mut(&key) {
                    u.active = false;
                }
            }
            "delete" => {
                state.remove(&key);
            }
            _ => {}
        }
    }
    // Inferred deletions.
    for (line, key, action, result) in results(results_csv) {
        if line.is_empty() && action == "delete" && result == "ok" {
            state.remove(&key);
        }
    }
}

/// The users the LMS holds, by `externalId`, in the oracle's shape. Panics
/// when an `externalId` occurs twice (a duplicated user).
pub fn lms_users(server: &ScimServer) -> BTreeMap<String, User> {
    let users = server.list("/Users");
    let groups = server.list("/Groups");
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for u in &users {
        if let Some(ext) = u["externalId"].as_str() {
            by_id.insert(u["id"].as_str().unwrap().to_string(), ext.to_string());
        }
    }
    let mut member_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &groups {
        let Some(ext) = g["externalId"].as_str() else {
            continue;
        };
        for m in g["members"].as_array().cloned().unwrap_or_default() {
            if let Some(user) = m["value"].as_str().and_then(|id| by_id.get(id)) {
                member_of
                    .entry(user.clone())
                    .or_default()
                    .insert(ext.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    for u in &users {
        let Some(ext) = u["externalId"].as_str() else {
            continue;
        };
        let s = |v: &Json| v.as_str().unwrap_or_default().to_string();
        let manager = u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]
            ["value"]
            .as_str()
            .map(|id| by_id.get(id).cloned().unwrap_or(format!("unknown id {id}")));
        let user = User {
            user_name: s(&u["userName"]),
            given: s(&u["name"]["givenName"]),
            family: s(&u["name"]["familyName"]),
            email: s(&u["emails"][0]["value"]),
            title: s(&u["title"]),
            language: s(&u["preferredLanguage"]),
            active: u["active"] != false,
            member_of: member_of.remove(ext).unwrap_or_default(),
            manager,
        };
        assert!(
            out.insert(ext.to_string(), user).is_none(),
            "the LMS holds externalId {ext:?} twice"
        );
    }
    out
}

/// A group as the LMS should show it: name and parent key.
pub fn lms_groups(server: &ScimServer) -> BTreeMap<String, (String, Option<String>)> {
    let groups = server.list("/Groups");
    let key_of: BTreeMap<String, String> = groups
        .iter()
        .filter_map(|g| {
            Some((
                g["id"].as_str()?.to_string(),
                g["externalId"].as_str()?.to_string(),
            ))
        })
        .collect();
    let ext = "urn:muster:params:scim:schemas:extension:2.0:Group";
    groups
        .iter()
        .filter_map(|g| {
            let key = g["externalId"].as_str()?.to_string();
            let parent_id = g[ext]["parentId"].as_str();
            let parent = parent_id.map(|id| {
                key_of
                    .get(id)
                    .cloned()
                    .unwrap_or(format!("unknown id {id}"))
            });
            assert_eq!(
                parent.as_deref(),
                g[ext]["parentExternalId"].as_str(),
                "group {key}: parentId and parentExternalId disagree"
            );
            Some((key, (g["displayName"].as_str()?.to_string(), parent)))
        })
        .collect()
}

/// Groups (name, parent) from a Winningtemp group or segment file and its
/// results: the rows applied.
pub fn file_groups(
    file: &Path,
    results_csv: &Path,
    prefix: &str,
) -> BTreeMap<String, (String, Option<String>)> {
    let ok: BTreeSet<String> = results(results_csv)
        .into_iter()
        .filter(|(line, _, action, outcome)| {
            !line.is_empty() && action == "create" && outcome == "ok"
        })
        .map(|(line, ..)| line)
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(true)
        .flexible(true)
        .from_path(file)
        .unwrap();
    let mut out = BTreeMap::new();
    for rec in reader.records() {
        let rec = rec.unwrap();
        if !ok.contains(&rec.position().unwrap().line().to_string()) {
            continue;
        }
        let parent = rec
            .get(2)
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        out.insert(
            format!("{prefix}{}", rec[1].trim()),
            (rec[0].trim().to_string(), parent),
        );
    }
    // A parent the files do not have is left out (`unknown_reference`).
    let keys: BTreeSet<String> = out.keys().cloned().collect();
    for (_, parent) in out.values_mut() {
        if parent.as_ref().is_some_and(|p| !keys.contains(p)) {
            *parent = None;
        }
    }
    out
}
