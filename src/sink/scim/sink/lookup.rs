//! Objects looked up in the LMS by `externalId` (or a user's `userName` and
//! e-mail): the ids a batch needs, the copies a create sent twice left, and
//! the existing object a create refused as a duplicate is linked to.

use std::collections::BTreeSet;

use ahash::AHashMap;

use serde_json::{json, Value as Json};

use super::{
    encode, invite_of, quote, strip_invite, Ids, Outcome, ScimSink, FILTER_TERMS, LIST_PAGE,
};
use crate::model::{Action, ObjectKind};
use crate::sink::scim::client::{Method, Request, Response};
use crate::sink::scim::map::{MUSTER_GROUP, PATCH_OP};
use crate::sink::{Found, Operation};

impl ScimSink {
    /// Every resource of `endpoint` matching `filter` (every one, when
    /// it is empty), page by page.
    pub(super) fn search(
        &self,
        endpoint: &str,
        filter: &str,
        attributes: &str,
    ) -> Result<Vec<Json>, String> {
        let mut found = Vec::new();
        let mut start = 1usize;
        let filter_param = if filter.is_empty() {
            String::new()
        } else {
            format!("filter={}&", encode(filter))
        };
        loop {
            let path = format!(
                "{endpoint}?{filter_param}attributes={attributes}&startIndex={start}&count={LIST_PAGE}"
            );
            let resp = self.client.send(&Request::get(path))?;
            if !resp.ok() {
                return Err(format!(
                    "GET {endpoint}?filter={filter}: {}",
                    resp.message()
                ));
            }
            let v = resp.json();
            let page = v["Resources"].as_array().cloned().unwrap_or_default();
            let total = v["totalResults"].as_u64().unwrap_or(0) as usize;
            let got = page.len();
            found.extend(page);
            start += got;
            if got == 0 || start > total {
                return Ok(found);
            }
        }
    }

    /// Every user, group and segment the LMS holds under an `externalId`
    /// (the others are not muster's): their ids, whether active, a
    /// group's parent. Users count as invited: they exist.
    pub(super) fn inventory_all(&self) -> Result<Vec<Found>, String> {
        let mut out = Vec::new();
        let users = self.search("/Users", "", "id,externalId,active")?;
        for r in users {
            let (Some(id), Some(key)) = (r["id"].as_str(), r["externalId"].as_str()) else {
                continue;
            };
            out.push(Found {
                kind: ObjectKind::User,
                key: key.to_string(),
                lms_id: Some(id.to_string()),
                active: r["active"].as_bool().unwrap_or(true),
                invited: true,
                parent: None,
                fields: None,
            });
        }
        let groups = self.search("/Groups", "", &format!("id,externalId,{MUSTER_GROUP}"))?;
        for r in groups {
            let (Some(id), Some(ext)) = (r["id"].as_str(), r["externalId"].as_str()) else {
                continue;
            };
            let (kind, key) = match ext.strip_prefix("segment:") {
                Some(key) => (ObjectKind::Segment, key),
                None => (ObjectKind::Group, ext),
            };
            let parent = r[MUSTER_GROUP]["parentExternalId"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            out.push(Found {
                kind,
                key: key.to_string(),
                lms_id: Some(id.to_string()),
                active: true,
                invited: false,
                parent,
                fields: None,
            });
        }
        Ok(out)
    }

    /// What a create whose answer was lost made, if the LMS has it: the
    /// object under `op`'s `externalId`, as the answer would have given
    /// it. `None` when it has none, or the look-up failed (the create is
    /// then sent again, and [`ScimSink::keep_one`] repairs a copy).
    pub(super) fn made(&self, op: &Operation) -> Option<Response> {
        let filter = format!(
            "externalId eq {}",
            quote(&self.map.external_id(op.kind, &op.key))
        );
        let found = self
            .search(self.map.endpoint(op.kind), &filter, "id,externalId,meta")
            .ok()?;
        found.first().map(|r| answered(201, r))
    }

    /// [`ScimSink::made`] for a Bulk request whose answer was lost: its
    /// creates the LMS has, answered `201` with what it has; every other
    /// operation answered `503`, to be sent again. `None` when nothing
    /// was found, or a look-up failed.
    pub(super) fn made_in_bulk(&self, entries: &[Json]) -> Option<Response> {
        let mut found: AHashMap<(String, String), Json> = AHashMap::new();
        let creates: Vec<(&str, &str)> = entries
            .iter()
            .filter(|e| e["method"] == "POST")
            .filter_map(|e| Some((e["path"].as_str()?, e["data"]["externalId"].as_str()?)))
            .collect();
        for endpoint in ["/Users", "/Groups"] {
            let of: Vec<&str> = creates
                .iter()
                .filter(|(p, _)| *p == endpoint)
                .map(|(_, ext)| *ext)
                .collect();
            for chunk in of.chunks(FILTER_TERMS) {
                let filter = chunk
                    .iter()
                    .map(|ext| format!("externalId eq {}", quote(ext)))
                    .collect::<Vec<_>>()
                    .join(" or ");
                for r in self.search(endpoint, &filter, "id,externalId,meta").ok()? {
                    if let Some(ext) = r["externalId"].as_str() {
                        found
                            .entry((endpoint.to_string(), ext.to_string()))
                            .or_insert(r);
                    }
                }
            }
        }
        if found.is_empty() {
            return None;
        }
        let operations: Vec<Json> = entries
            .iter()
            .map(|e| {
                let made = e["path"].as_str().zip(e["data"]["externalId"].as_str());
                let made = made
                    .filter(|_| e["method"] == "POST")
                    .and_then(|(p, ext)| found.get(&(p.to_string(), ext.to_string())));
                match made {
                    Some(r) => json!({
                        "bulkId": e["bulkId"],
                        "method": "POST",
                        "status": "201",
                        "location": format!("{}/{}", e["path"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default()),
                        "response": r,
                    }),
                    None => json!({"bulkId": e["bulkId"], "method": e["method"], "status": "503"}),
                }
            })
            .collect();
        Some(answered(200, &json!({"Operations": operations})))
    }

    /// Finds the LMS ids of `wanted` by `externalId`, into `ids`.
    pub(super) fn find(
        &self,
        wanted: &BTreeSet<(ObjectKind, String)>,
        ids: &mut Ids,
    ) -> Result<(), String> {
        let mut jobs = Vec::new();
        for kind in [ObjectKind::User, ObjectKind::Group, ObjectKind::Segment] {
            let keys: Vec<&String> = wanted
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, key)| key)
                .collect();
            for chunk in keys.chunks(FILTER_TERMS) {
                jobs.push((kind, chunk.to_vec()));
            }
        }
        let results = self.parallel(jobs, self.senders, |(kind, keys)| {
            let filter = keys
                .iter()
                .map(|k| format!("externalId eq {}", quote(&self.map.external_id(kind, k))))
                .collect::<Vec<_>>()
                .join(" or ");
            let found = self.search(self.map.endpoint(kind), &filter, "id,externalId")?;
            let mut out = Vec::new();
            for r in found {
                let (Some(id), Some(ext)) = (r["id"].as_str(), r["externalId"].as_str()) else {
                    continue;
                };
                if let Some(key) = keys.iter().find(|k| self.map.external_id(kind, k) == ext) {
                    out.push(((kind, key.to_string()), id.to_string()));
                }
            }
            Ok::<_, String>(out)
        });
        for r in results {
            ids.extend(r?);
        }
        Ok(())
    }

    /// The keys of `ops`' users whose invite attribute the LMS has set:
    /// their invitation was applied.
    pub(super) fn invited(
        &self,
        ops: &[&crate::store::PendingOp],
    ) -> Result<BTreeSet<String>, String> {
        let keys: Vec<String> = ops.iter().map(|p| p.key.clone()).collect();
        let jobs: Vec<Vec<String>> = keys.chunks(FILTER_TERMS).map(<[String]>::to_vec).collect();
        let attribute = self.map.invite_attribute();
        let results = self.parallel(jobs, self.senders, |keys| {
            let filter = keys
                .iter()
                .map(|k| {
                    format!(
                        "externalId eq {}",
                        quote(&self.map.external_id(ObjectKind::User, k))
                    )
                })
                .collect::<Vec<_>>()
                .join(" or ");
            let found = self.search("/Users", &filter, &format!("externalId,{attribute}"))?;
            Ok::<_, String>(
                found
                    .iter()
                    .filter(|r| invite_of(r, &self.map) == Some(&Json::Bool(true)))
                    .filter_map(|r| r["externalId"].as_str().map(str::to_string))
                    .collect::<Vec<_>>(),
            )
        });
        let mut out = BTreeSet::new();
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    /// A create sent more than once (an earlier try's answer was lost, and
    /// it may have landed) can leave the object twice in an LMS that does
    /// not refuse a second `externalId` (RFC 7643 does not require it to):
    /// when `retried`, the copies are looked up and all but the first made
    /// are deleted ([`ScimSink::keep_first`]); the outcome names the one kept.
    pub(super) fn keep_one(&self, op: &Operation, outcome: Outcome, retried: bool) -> Outcome {
        let mut one = [(op, outcome)];
        if retried {
            self.keep_first(&mut one);
        }
        let [(_, outcome)] = one;
        outcome
    }

    /// [`ScimSink::keep_one`] for the creates of `done` (each with its
    /// outcome), looked up together: one search per kind and
    /// `FILTER_TERMS` keys. Of the copies of one `externalId`, the first
    /// made (by `meta.created`; of equal or unknown times, not the one
    /// this answer named) is kept, the others deleted.
    pub(super) fn keep_first(&self, done: &mut [(&Operation, Outcome)]) {
        let created: Vec<usize> = (0..done.len())
            .filter(|&k| {
                done[k].0.action == Action::Create
                    && matches!(done[k].1, Outcome::Done { id: Some(_), .. })
            })
            .collect();
        for kind in [ObjectKind::User, ObjectKind::Group, ObjectKind::Segment] {
            let of_kind: Vec<usize> = created
                .iter()
                .copied()
                .filter(|&k| done[k].0.kind == kind)
                .collect();
            for chunk in of_kind.chunks(FILTER_TERMS) {
                let filter = chunk
                    .iter()
                    .map(|&k| {
                        format!(
                            "externalId eq {}",
                            quote(&self.map.external_id(kind, &done[k].0.key))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" or ");
                let endpoint = self.map.endpoint(kind);
                let found = match self.search(endpoint, &filter, "id,externalId,meta") {
                    Ok(found) => found,
                    Err(message) => {
                        tracing::warn!(%message, "scim: could not look for copies of creates sent twice");
                        continue;
                    }
                };
                for &k in chunk {
                    let (op, outcome) = &mut done[k];
                    let Outcome::Done { id: Some(ours), .. } = outcome else {
                        continue;
                    };
                    let ext = self.map.external_id(kind, &op.key);
                    let mut copies: Vec<&Json> = found
                        .iter()
                        .filter(|r| r["externalId"].as_str() == Some(ext.as_str()))
                        .collect();
                    if copies.len() < 2 {
                        continue;
                    }
                    let this = |r: &Json| r["id"].as_str() == Some(ours.as_str());
                    copies.sort_by(|a, b| {
                        let created = |r: &Json| {
                            r["meta"]["created"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string()
                        };
                        created(a).cmp(&created(b)).then(this(a).cmp(&this(b)))
                    });
                    let kept = copies[0]["id"].as_str().unwrap_or(ours).to_string();
                    for copy in &copies[1..] {
                        let Some(id) = copy["id"].as_str() else {
                            continue;
                        };
                        let path = format!("{endpoint}/{id}");
                        let gone = self
                            .client
                            .send(&Request::write(Method::Delete, path, None, 1));
                        let deleted = gone.is_ok_and(|r| r.ok() || r.status == 404);
                        tracing::warn!(key = %op.key, id, deleted, "scim: a create sent twice left a copy; deleted it");
                    }
                    *ours = kept;
                }
            }
        }
    }

    /// Links a create the LMS refused as a duplicate to the object it
    /// already has: same `userName` (or e-mail; a group's `externalId` or
    /// name), which gets the file's attributes and no invitation.
    pub(super) fn link(&self, op: &Operation, ids: &Ids, ours: bool, conflict: &str) -> Outcome {
        let refs = |kind: ObjectKind, key: &str| ids.get(&(kind, key.to_string())).cloned();
        let mut resource = self.map.resource(op, &refs);
        let endpoint = self.map.endpoint(op.kind);
        let mut filters = Vec::new();
        if op.kind == ObjectKind::User {
            if let Some(name) = resource["userName"].as_str() {
                filters.push(format!("userName eq {}", quote(name)));
            }
            if let Some(email) = resource["emails"][0]["value"].as_str() {
                filters.push(format!("emails.value eq {}", quote(email)));
            }
        } else {
            filters.push(format!(
                "externalId eq {}",
                quote(&self.map.external_id(op.kind, &op.key))
            ));
            if let Some(name) = resource["displayName"].as_str() {
                filters.push(format!("displayName eq {}", quote(name)));
            }
        }
        let mut found = None;
        for filter in &filters {
            match self.search(endpoint, filter, "id") {
                Ok(list) => {
                    if let Some(id) = list.first().and_then(|r| r["id"].as_str()) {
                        found = Some(id.to_string());
                        break;
                    }
                }
                Err(m) => return Outcome::Unavailable(m),
            }
        }
        let Some(id) = found else {
            return Outcome::Rejected(format!("{conflict}; no existing object found to link to"));
        };
        // The file's attributes, without the invitation: the user exists.
        if let Json::Object(r) = &mut resource {
            r.remove("schemas");
            strip_invite(r, &self.map);
        }
        let body =
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": resource}]});
        let req = Request::write(Method::Patch, format!("{endpoint}/{id}"), Some(&body), 1);
        match self.send_versioned(req) {
            Ok(r) if r.ok() => Outcome::Done {
                id: Some(id),
                linked: !ours,
            },
            Ok(r) => Outcome::Rejected(format!("{conflict}; linking: {}", r.message())),
            Err(m) => Outcome::Unavailable(m),
        }
    }
}

/// An answer made of what a look-up found, as the lost one would have
/// been.
fn answered(status: u16, body: &Json) -> Response {
    Response {
        status,
        etag: None,
        location: None,
        body: serde_json::to_vec(body).unwrap_or_default(),
        retry_after: None,
        attempts: 1,
    }
}
