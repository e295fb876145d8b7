//! The sink itself: batches of operations to SCIM requests and back (see
//! the module documentation of `sink::scim`).

mod bulk;
mod lookup;

use std::collections::{BTreeMap, BTreeSet};

use ahash::AHashMap;
use serde_json::{json, Value as Json};

use super::client::{retryable, Client, Method, Request, Response};
use super::config::{BulkMode, ScimConfig};
use super::map::{Mapping, PATCH_OP};
use crate::model::{Action, Field, ObjectKind};
use crate::sink::{Ack, Operation, Sink, SinkError, SinkErrorKind, Value};
use crate::store::PendingOp;

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const LIST_PAGE: usize = 1000;
/// `externalId eq …` terms per search.
const FILTER_TERMS: usize = 20;

/// The LMS ids known in a batch, by kind and key.
type Ids = AHashMap<(ObjectKind, String), String>;

pub struct ScimSink {
    client: Client,
    map: Mapping,
    bulk: Option<Bulk>,
    senders: usize,
    etag: bool,
    create_missing_groups: bool,
    max_rounds: u32,
    /// The LMS ids of groups and segments met so far (few, unlike users):
    /// groups named by users but not in the state store (a tenant without
    /// a group file) are not searched again every batch.
    groups: Ids,
}

/// Groups kept in [`ScimSink::groups`] at most.
const GROUP_CACHE: usize = 100_000;

/// A group's membership changes in a batch: user ids to add, user ids to
/// remove, and the operations (batch indices) asking for them.
type Members = (Vec<String>, Vec<String>, Vec<usize>);

/// What `/ServiceProviderConfig` allows in one Bulk request.
#[derive(Clone, Copy, Debug)]
struct Bulk {
    max_ops: usize,
    max_payload: usize,
}

/// What became of one operation's write.
#[derive(Clone, Debug)]
enum Outcome {
    Done {
        id: Option<String>,
        linked: bool,
    },
    /// A create refused as a duplicate: link to the existing user. `ours`:
    /// an earlier try of this very create may have made it.
    Conflict {
        ours: bool,
        message: String,
    },
    /// Worth another round (a 408/429/5xx for one operation of a Bulk).
    Again(String),
    Rejected(String),
    Unavailable(String),
}

impl ScimSink {
    /// Connects: reads `/ServiceProviderConfig` (Bulk limits, ETags). An
    /// LMS that cannot be reached or refuses the token is an error here,
    /// before any file is touched.
    pub fn open(cfg: &ScimConfig) -> Result<ScimSink, SinkError> {
        let client = Client::new(cfg);
        let unavailable =
            |message: String| SinkError::new(cfg.url.clone(), SinkErrorKind::Unavailable(message));
        let err =
            |message: String| SinkError::new(cfg.url.clone(), SinkErrorKind::Refused(message));
        let resp = client
            .send(&Request::get("/ServiceProviderConfig".into()))
            .map_err(unavailable)?;
        // The configuration may be public (RFC 7644 §4): the token is
        // tried on a one-user list.
        let probe = client
            .send(&Request::get("/Users?count=1&attributes=id".into()))
            .map_err(unavailable)?;
        for r in [&resp, &probe] {
            if r.status == 401 || r.status == 403 {
                return Err(err(format!(
                    "the LMS refused the bearer token ({})",
                    r.message()
                )));
            }
        }
        if !resp.ok() {
            return Err(err(format!(
                "GET /ServiceProviderConfig: {}",
                resp.message()
            )));
        }
        let spc = resp.json();
        let num = |v: &Json| v.as_u64().map(|n| n as usize);
        let bulk = match (&spc["bulk"]["supported"], cfg.bulk) {
            (Json::Bool(true), BulkMode::Auto) => Some(Bulk {
                max_ops: num(&spc["bulk"]["maxOperations"]).unwrap_or(100).max(1),
                max_payload: num(&spc["bulk"]["maxPayloadSize"]).unwrap_or(1 << 20),
            }),
            _ => None,
        };
        let etag = spc["etag"]["supported"] == Json::Bool(true);
        tracing::info!(
            url = %cfg.url,
            bulk = ?bulk,
            etag,
            "scim: connected"
        );
        Ok(ScimSink {
            client,
            map: Mapping::new(cfg),
            bulk,
            senders: cfg.senders,
            etag,
            create_missing_groups: cfg.create_missing_groups,
            max_rounds: cfg.max_attempts,
            groups: Ids::new(),
        })
    }

    fn own(op: &Operation) -> (ObjectKind, String) {
        (op.kind, op.key.clone())
    }

    /// The objects an operation names by key.
    /// ([`Operation::named`], without segments when they are an attribute.)
    fn references(&self, op: &Operation) -> Vec<(ObjectKind, String)> {
        op.named()
            .into_iter()
            .filter(|(kind, _)| self.map.writes(*kind))
            .map(|(kind, key)| (kind, key.to_string()))
            .collect()
    }

    /// Runs `f` over `jobs` on up to `threads` sender threads, fed through
    /// a bounded channel; results in the order of `jobs`.
    fn parallel<J: Send, R: Send>(
        &self,
        jobs: Vec<J>,
        threads: usize,
        f: impl Fn(J) -> R + Sync,
    ) -> Vec<R> {
        let n = jobs.len();
        let threads = threads.min(n);
        if threads <= 1 {
            return jobs.into_iter().map(f).collect();
        }
        let (job_tx, job_rx) = crossbeam_channel::bounded::<(usize, J)>(threads);
        let (res_tx, res_rx) = crossbeam_channel::bounded::<(usize, R)>(threads);
        let f = &f;
        std::thread::scope(|s| {
            for _ in 0..threads {
                let (rx, tx) = (job_rx.clone(), res_tx.clone());
                s.spawn(move || {
                    for (i, job) in rx {
                        if tx.send((i, f(job))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(res_tx);
            s.spawn(move || {
                for job in jobs.into_iter().enumerate() {
                    if job_tx.send(job).is_err() {
                        break;
                    }
                }
            });
            let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
            for (i, r) in res_rx {
                out[i] = Some(r);
            }
            out.into_iter().flatten().collect()
        })
    }

    /// Creates the groups users name that the LMS does not have (a tenant
    /// without a group file: the names are the groups).
    fn create_groups(&self, keys: Vec<String>, ids: &mut Ids) -> Result<(), String> {
        let made = self.parallel(keys, self.senders, |key| {
            let op = Operation {
                op: 0,
                kind: ObjectKind::Group,
                action: Action::Create,
                key: key.clone(),
                fields: vec![(Field::Name, Value::Text(key.clone()))],
                invite: false,
                reactivate: false,
                lms_id: None,
                ids: Vec::new(),
                fresh: true,
            };
            match self.write_one(&op, &Ids::new()) {
                Outcome::Done { id: Some(id), .. } => Ok(Some((key, id))),
                Outcome::Unavailable(m) => Err(m),
                other => {
                    tracing::warn!(group = %key, outcome = ?other, "scim: could not create a group a user names");
                    Ok(None)
                }
            }
        });
        for m in made {
            if let Some((key, id)) = m? {
                ids.insert((ObjectKind::Group, key), id);
            }
        }
        Ok(())
    }

    /// The request writing `op`, or `None` when there is nothing to write
    /// (an update of memberships only). `refs` resolves named objects.
    fn request_parts(
        &self,
        op: &Operation,
        own: Option<&str>,
        refs: super::map::Refs<'_>,
    ) -> Result<Option<(Method, String, Option<Json>)>, Outcome> {
        let endpoint = self.map.endpoint(op.kind);
        let at = |id: Option<&str>| match id {
            Some(id) => Ok(format!("{endpoint}/{id}")),
            None => Err(Outcome::Rejected(format!(
                "{} {:?} is not in the LMS (no externalId {:?})",
                op.kind.as_str(),
                op.key,
                self.map.external_id(op.kind, &op.key)
            ))),
        };
        Ok(match op.action {
            Action::Create => Some((
                Method::Post,
                endpoint.into(),
                Some(self.map.resource(op, refs)),
            )),
            Action::Update | Action::Deactivate => {
                let ops = self.map.patch(op, refs);
                if ops.is_empty() {
                    None
                } else {
                    let body = json!({"schemas": [PATCH_OP], "Operations": ops});
                    Some((Method::Patch, at(own)?, Some(body)))
                }
            }
            // Not in the LMS: already gone.
            Action::Delete => own.map(|id| (Method::Delete, format!("{endpoint}/{id}"), None)),
            Action::Unchanged | Action::Reject => None,
        })
    }

    /// One operation, one request (no Bulk).
    fn write_one(&self, op: &Operation, ids: &Ids) -> Outcome {
        let refs = |kind: ObjectKind, key: &str| ids.get(&(kind, key.to_string())).cloned();
        let own = op
            .lms_id
            .clone()
            .or_else(|| ids.get(&Self::own(op)).cloned());
        let (method, path, body) = match self.request_parts(op, own.as_deref(), &refs) {
            Ok(Some(parts)) => parts,
            Ok(None) => {
                return Outcome::Done {
                    id: own,
                    linked: false,
                }
            }
            Err(outcome) => return outcome,
        };
        let req = Request::write(method, path, body.as_ref(), 1);
        let sent = if method == Method::Post {
            self.client.send_looking(&req, &|| self.made(op))
        } else {
            self.send_versioned(req)
        };
        match sent {
            Ok(resp) => {
                let tried_before = resp.attempts > 1;
                let outcome = Self::outcome(method, &resp, own, tried_before);
                self.keep_one(op, outcome, tried_before && method == Method::Post)
            }
            Err(m) => Outcome::Unavailable(m),
        }
    }

    /// Sends a write; when the server asks for the resource's version
    /// (412, 428) and offers ETags, reads it and sends once more with
    /// `If-Match`.
    fn send_versioned(&self, mut req: Request) -> Result<Response, String> {
        let resp = self.client.send(&req)?;
        if !(matches!(resp.status, 412 | 428) && self.etag && req.method != Method::Post) {
            return Ok(resp);
        }
        let current = self.client.send(&Request::get(req.path.clone()))?;
        if !current.ok() {
            return Ok(current);
        }
        req.if_match = current.etag.clone().or_else(|| {
            current.json()["meta"]["version"]
                .as_str()
                .map(str::to_string)
        });
        self.client.send(&req)
    }

    /// What the answer to a write means (`own`: the object's id, when
    /// known; `tried_before`: an earlier try of it may have landed).
    fn outcome(
        method: Method,
        resp: &Response,
        own: Option<String>,
        tried_before: bool,
    ) -> Outcome {
        let body = resp.json();
        match resp.status {
            200..=299 if method == Method::Post => Outcome::Done {
                id: body["id"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| resp.location.as_deref().and_then(last_segment)),
                linked: false,
            },
            200..=299 => Outcome::Done {
                id: own,
                linked: false,
            },
            404 if method == Method::Delete => Outcome::Done {
                id: None,
                linked: false,
            },
            // An object that exists already: link to it.
            409 if method == Method::Post => Outcome::Conflict {
                ours: tried_before,
                message: resp.message(),
            },
            401 | 403 => Outcome::Unavailable(format!(
                "the LMS refused the bearer token ({})",
                resp.message()
            )),
            s if retryable(s) => Outcome::Again(resp.message()),
            _ => Outcome::Rejected(resp.message()),
        }
    }

    /// Sends `writes` one request each: in order when `ordered`, else on
    /// the sender threads.
    fn send_each(
        &self,
        batch: &[Operation],
        writes: &[usize],
        ids: &mut Ids,
        ordered: bool,
    ) -> Vec<(usize, Outcome)> {
        if ordered {
            let mut out = Vec::with_capacity(writes.len());
            for &i in writes {
                let outcome = self.write_one(&batch[i], ids);
                if let Outcome::Done { id: Some(id), .. } = &outcome {
                    ids.insert(Self::own(&batch[i]), id.clone());
                }
                out.push((i, outcome));
            }
            return out;
        }
        let shared: &Ids = ids;
        self.parallel(writes.to_vec(), self.senders, |i| {
            (i, self.write_one(&batch[i], shared))
        })
    }

    /// Writes the memberships the batch's users name: one PATCH per group.
    fn memberships(&self, batch: &[Operation], acks: &mut [Option<Ack>], ids: &Ids) {
        // Per user with a membership field: (op index, kinds touched, wanted group ids).
        let mut users = Vec::new();
        for (i, op) in batch.iter().enumerate() {
            if acks[i].is_some()
                || op.kind != ObjectKind::User
                || !matches!(op.action, Action::Create | Action::Update)
            {
                continue;
            }
            let mut kinds = Vec::new();
            let mut wanted = BTreeSet::new();
            for (name, value) in &op.fields {
                let (Some(kind), Value::List(items)) = (self.map.membership(*name), value) else {
                    continue;
                };
                kinds.push(kind);
                for key in items {
                    if let Some(id) = ids.get(&(kind, key.clone())) {
                        wanted.insert(id.clone());
                    }
                }
            }
            if kinds.is_empty() {
                continue;
            }
            let Some(uid) = ids.get(&Self::own(op)) else {
                acks[i] = Some(Ack::Rejected {
                    message: format!("user {:?} is not in the LMS", op.key),
                });
                continue;
            };
            users.push((i, uid.clone(), kinds, wanted));
        }
        if users.is_empty() {
            return;
        }
        // What each user is a member of now (nothing, for a new user).
        let current = self.parallel(
            users.iter().collect(),
            self.senders,
            |(i, uid, kinds, _)| {
                if batch[*i].fresh {
                    return Ok(BTreeSet::new());
                }
                let filter = format!("members.value eq {}", quote(uid));
                let groups = self.search("/Groups", &filter, "id,externalId")?;
                Ok::<_, String>(
                    groups
                        .iter()
                        .filter(|g| {
                            let ext = g["externalId"].as_str().unwrap_or_default();
                            // Only the groups muster manages, of the kinds the
                            // operation states.
                            !ext.is_empty()
                                && kinds.iter().any(|k| {
                                    (*k == ObjectKind::Segment) == ext.starts_with("segment:")
                                })
                        })
                        .filter_map(|g| g["id"].as_str().map(str::to_string))
                        .collect(),
                )
            },
        );
        // Per group: members to add and to remove, and the operations asking.
        let mut changes: BTreeMap<String, Members> = BTreeMap::new();
        for ((i, uid, _, wanted), now) in users.iter().zip(current) {
            let now = match now {
                Ok(now) => now,
                Err(message) => {
                    acks[*i] = Some(Ack::Unavailable { message });
                    continue;
                }
            };
            for gid in wanted.difference(&now) {
                let c = changes.entry(gid.clone()).or_default();
                c.0.push(uid.clone());
                c.2.push(*i);
            }
            for gid in now.difference(wanted) {
                let c = changes.entry(gid.clone()).or_default();
                c.1.push(uid.clone());
                c.2.push(*i);
            }
        }
        let changes: Vec<(String, Members)> = changes.into_iter().collect();
        let mut writes = Vec::with_capacity(changes.len());
        let mut asking = Vec::with_capacity(changes.len());
        for (gid, (add, remove, ops)) in changes {
            let mut operations = Vec::new();
            if !add.is_empty() {
                let members: Vec<Json> = add.iter().map(|u| json!({"value": u})).collect();
                operations.push(json!({"op": "add", "path": "members", "value": members}));
            }
            for u in &remove {
                operations.push(
                    json!({"op": "remove", "path": format!("members[value eq {}]", quote(u))}),
                );
            }
            let body = json!({"schemas": [PATCH_OP], "Operations": operations});
            writes.push((Method::Patch, format!("/Groups/{gid}"), Some(body)));
            asking.push((gid, ops));
        }
        let results = self.writes(writes);
        for ((gid, ops), result) in asking.into_iter().zip(results) {
            let ack = match result {
                Ok(r) if r.ok() => continue,
                Ok(r) => Ack::Rejected {
                    message: format!("memberships of group {gid}: {}", r.message()),
                },
                Err(message) => Ack::Unavailable { message },
            };
            for i in ops {
                acks[i].get_or_insert_with(|| ack.clone());
            }
        }
    }
}

impl Sink for ScimSink {
    fn wants_ids(&self) -> bool {
        true
    }

    fn requests(&self) -> Vec<(String, u64)> {
        self.client.answers()
    }

    fn apply(&mut self, batch: &[Operation]) -> Result<Vec<Ack>, SinkError> {
        let n = batch.len();
        let mut acks: Vec<Option<Ack>> = vec![None; n];
        let mut linked = vec![false; n];
        let mut ids = Ids::new();
        for op in batch {
            if let Some(id) = &op.lms_id {
                ids.insert(Self::own(op), id.clone());
            }
            for k in &op.ids {
                ids.insert((k.kind, k.key.clone()), k.lms_id.clone());
            }
        }
        for (i, op) in batch.iter().enumerate() {
            if !self.map.writes(op.kind) {
                acks[i] = Some(Ack::APPLIED);
            }
        }
        // 1. The ids nobody gave: own ones, and the objects named.
        let created: BTreeSet<(ObjectKind, String)> = batch
            .iter()
            .filter(|op| op.action == Action::Create)
            .map(Self::own)
            .collect();
        let mut wanted = BTreeSet::new();
        let mut ordered = false;
        for (i, op) in batch.iter().enumerate() {
            if acks[i].is_some() {
                continue;
            }
            if op.action != Action::Create && !ids.contains_key(&Self::own(op)) {
                wanted.insert(Self::own(op));
            }
            for r in self.references(op) {
                if created.contains(&r) {
                    ordered = true;
                } else if let Some(id) = self.groups.get(&r) {
                    ids.entry(r).or_insert_with(|| id.clone());
                } else if !ids.contains_key(&r) {
                    wanted.insert(r);
                }
            }
        }
        let lookups = self.find(&wanted, &mut ids).and_then(|()| {
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(k, key)| *k == ObjectKind::Group && !ids.contains_key(&(*k, key.clone())))
                .map(|(_, key)| key.clone())
                .filter(|key| {
                    batch.iter().any(|op| {
                        op.kind == ObjectKind::User
                            && op.fields.iter().any(|(field, v)| {
                                *field == Field::Groups
                                    && matches!(v, Value::List(l) if l.contains(key))
                            })
                    })
                })
                .collect();
            if self.create_missing_groups && !missing.is_empty() {
                self.create_groups(missing, &mut ids)?;
            }
            Ok(())
        });
        if let Err(message) = lookups {
            // The LMS cannot be reached: the batch waits for the next run.
            return Ok(acks
                .into_iter()
                .map(|a| {
                    a.unwrap_or_else(|| Ack::Unavailable {
                        message: message.clone(),
                    })
                })
                .collect());
        }
        // 2. The resource writes.
        let writes: Vec<usize> = (0..n).filter(|&i| acks[i].is_none()).collect();
        let outcomes = match self.bulk {
            Some(bulk) => self.send_bulk(bulk, batch, &writes, &mut ids, ordered),
            None => self.send_each(batch, &writes, &mut ids, ordered),
        };
        let mut conflicts = Vec::new();
        for (i, outcome) in outcomes {
            if let Some((ours, message)) =
                settle(batch, i, outcome, &mut ids, &mut acks, &mut linked)
            {
                conflicts.push((i, ours, message));
            }
        }
        // 3. Duplicates: link to what the LMS has.
        if !conflicts.is_empty() {
            let shared = &ids;
            let results = self.parallel(conflicts, self.senders, |(i, ours, message)| {
                (i, self.link(&batch[i], shared, ours, &message))
            });
            for (i, outcome) in results {
                if let Some((_, message)) =
                    settle(batch, i, outcome, &mut ids, &mut acks, &mut linked)
                {
                    acks[i] = Some(Ack::Unavailable { message });
                }
            }
        }
        // 4. Memberships, once every user of the batch exists.
        self.memberships(batch, &mut acks, &ids);
        if self.groups.len() > GROUP_CACHE {
            self.groups.clear();
        }
        let deleted: BTreeSet<(ObjectKind, String)> = batch
            .iter()
            .filter(|op| op.action == Action::Delete)
            .map(Self::own)
            .collect();
        for (k, id) in &ids {
            if k.0 != ObjectKind::User && !deleted.contains(k) {
                self.groups.insert(k.clone(), id.clone());
            }
        }
        for k in &deleted {
            self.groups.remove(k);
        }
        Ok(acks
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                a.unwrap_or_else(|| Ack::Applied {
                    lms_id: ids.get(&Self::own(&batch[i])).cloned(),
                    linked: linked[i],
                })
            })
            .collect())
    }

    /// A journalled create the LMS has (found by `externalId`) and a
    /// journalled deletion it no longer has were applied; updates and
    /// deactivations are not claimed (the next run sends them again, and
    /// they are idempotent).
    fn recover(&mut self, pending: &[PendingOp]) -> Result<Vec<u64>, SinkError> {
        // An update that invites (its `invite_from` date came) was applied
        // when the user's invite attribute is true: sending it again could
        // invite twice.
        let invites: Vec<&PendingOp> = pending
            .iter()
            .filter(|p| {
                p.action == Action::Update
                    && p.invite
                    && p.kind == ObjectKind::User
                    && !self.map.invite_attribute().is_empty()
            })
            .collect();
        let invited = self.invited(&invites).map_err(|message| {
            SinkError::new(self.client.base(), SinkErrorKind::Unavailable(message))
        })?;
        let relevant: Vec<&PendingOp> = pending
            .iter()
            .filter(|p| {
                matches!(p.action, Action::Create | Action::Delete) && self.map.writes(p.kind)
            })
            .collect();
        let wanted: BTreeSet<(ObjectKind, String)> =
            relevant.iter().map(|p| (p.kind, p.key.clone())).collect();
        let mut ids = Ids::new();
        self.find(&wanted, &mut ids).map_err(|message| {
            SinkError::new(self.client.base(), SinkErrorKind::Unavailable(message))
        })?;
        Ok(relevant
            .iter()
            .filter(|p| ids.contains_key(&(p.kind, p.key.clone())) == (p.action == Action::Create))
            .map(|p| p.id)
            .chain(
                invites
                    .iter()
                    .filter(|p| invited.contains(&p.key))
                    .map(|p| p.id),
            )
            .collect())
    }

    fn inventory(&mut self) -> Result<crate::sink::Inventory, SinkError> {
        let objects = self.inventory_all().map_err(|message| {
            SinkError::new(self.client.base(), SinkErrorKind::Unavailable(message))
        })?;
        Ok(crate::sink::Inventory {
            objects,
            last_op: 0,
        })
    }
}

/// Records what became of operation `i`: its id, whether it was linked,
/// or its failure. A conflict is handed back (to be linked).
fn settle(
    batch: &[Operation],
    i: usize,
    outcome: Outcome,
    ids: &mut Ids,
    acks: &mut [Option<Ack>],
    linked: &mut [bool],
) -> Option<(bool, String)> {
    match outcome {
        Outcome::Done { id, linked: l } => {
            if let Some(id) = id {
                ids.insert(ScimSink::own(&batch[i]), id);
            }
            linked[i] = l;
        }
        Outcome::Conflict { ours, message } => return Some((ours, message)),
        Outcome::Rejected(message) => acks[i] = Some(Ack::Rejected { message }),
        Outcome::Unavailable(message) | Outcome::Again(message) => {
            acks[i] = Some(Ack::Unavailable { message })
        }
    }
    None
}

/// The invitation attribute's path: its extension schema (a `urn:` path's
/// part before the last `:`), and the dotted attribute within.
fn invite_path(map: &Mapping) -> (Option<&str>, &str) {
    let path = map.invite_attribute();
    match (path.starts_with("urn:"), path.rfind(':')) {
        (true, Some(i)) => (Some(&path[..i]), &path[i + 1..]),
        _ => (None, path),
    }
}

/// The invitation attribute of a resource, if it is set.
fn invite_of<'a>(r: &'a Json, map: &Mapping) -> Option<&'a Json> {
    let (extension, attr) = invite_path(map);
    let mut at = match extension {
        Some(ext) => r.get(ext)?,
        None => r,
    };
    for part in attr.split('.') {
        at = at.get(part)?;
    }
    Some(at)
}

/// Takes the invitation attribute out of a resource.
fn strip_invite(r: &mut serde_json::Map<String, Json>, map: &Mapping) {
    let (extension, attr) = invite_path(map);
    let mut at = match extension {
        Some(ext) => match r.get_mut(ext) {
            Some(Json::Object(ext)) => ext,
            _ => return,
        },
        None => r,
    };
    let mut parts = attr.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.remove(part);
            return;
        }
        match at.get_mut(part) {
            Some(Json::Object(next)) => at = next,
            _ => return,
        }
    }
}

/// The id at the end of a resource's location.
fn last_segment(location: &str) -> Option<String> {
    location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A SCIM filter string literal (JSON string rules).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_quoted_and_encoded() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            encode("externalId eq \"é\""),
            "externalId%20eq%20%22%C3%A9%22"
        );
        assert_eq!(last_segment("https://x/v2/Users/abc"), Some("abc".into()));
    }
}
