//! Writes through `/Bulk`: a batch's operations cut into requests within the
//! server's limits (halved on 413, sent one by one when refused whole,
//! retried in rounds for the operations the answer says to retry), and
//! writes that are not operations of the batch (memberships).

use std::collections::BTreeSet;

use ahash::AHashMap;
use serde_json::{json, Value as Json};

use super::{Bulk, Ids, Outcome, ScimSink, BULK_REQUEST};
use crate::model::ObjectKind;
use crate::sink::scim::client::{retryable, Method, Request, Response};
use crate::sink::Operation;

impl ScimSink {
    /// Sends `writes` through `/Bulk`, in rounds: operations a Bulk answer
    /// says to try again go in the next round, after a backoff.
    pub(super) fn send_bulk(
        &self,
        bulk: Bulk,
        batch: &[Operation],
        writes: &[usize],
        ids: &mut Ids,
        ordered: bool,
    ) -> Vec<(usize, Outcome)> {
        let mut done = Vec::with_capacity(writes.len());
        let mut todo = writes.to_vec();
        let mut tried: BTreeSet<usize> = BTreeSet::new();
        for round in 1..=self.max_rounds {
            if todo.is_empty() {
                break;
            }
            if round > 1 {
                std::thread::sleep(std::time::Duration::from_millis(
                    (100u64 << (round - 2).min(6)).min(5_000),
                ));
            }
            let per_thread = todo.len().div_ceil(self.senders.max(1));
            let size = if ordered {
                bulk.max_ops
            } else {
                bulk.max_ops.min(per_thread.max(1))
            };
            let chunks: Vec<Vec<usize>> = todo.chunks(size).map(<[usize]>::to_vec).collect();
            let results: Vec<Vec<(usize, Outcome)>> = if ordered {
                let mut all = Vec::new();
                for chunk in chunks {
                    let r = self.bulk_chunk(bulk, batch, &chunk, ids, &tried);
                    for (i, o) in &r {
                        if let Outcome::Done { id: Some(id), .. } = o {
                            ids.insert(Self::own(&batch[*i]), id.clone());
                        }
                    }
                    all.push(r);
                }
                all
            } else {
                let shared: &Ids = ids;
                let tried = &tried;
                self.parallel(chunks, self.senders, |chunk| {
                    self.bulk_chunk(bulk, batch, &chunk, shared, tried)
                })
            };
            let mut again = Vec::new();
            for (i, outcome) in results.into_iter().flatten() {
                match outcome {
                    Outcome::Again(m) if round < self.max_rounds => {
                        tried.insert(i);
                        again.push(i);
                        tracing::debug!(op = batch[i].op, message = %m, "scim: bulk operation to retry");
                    }
                    Outcome::Again(m) => done.push((i, Outcome::Unavailable(m))),
                    other => done.push((i, other)),
                }
            }
            again.sort_unstable();
            todo = again;
        }
        done
    }

    /// One Bulk request (halved while the LMS finds it too large).
    fn bulk_chunk(
        &self,
        bulk: Bulk,
        batch: &[Operation],
        chunk: &[usize],
        ids: &Ids,
        tried: &BTreeSet<usize>,
    ) -> Vec<(usize, Outcome)> {
        let mut out = Vec::with_capacity(chunk.len());
        // Objects created by this request, referenced as `bulkId:`.
        let mut created: AHashMap<(ObjectKind, &str), String> = AHashMap::new();
        let mut operations = Vec::with_capacity(chunk.len());
        let mut sent: Vec<(usize, Method, Option<String>)> = Vec::new();
        for &i in chunk {
            let op = &batch[i];
            let bulk_id = format!("b{}", op.op);
            let refs = |kind: ObjectKind, key: &str| {
                created
                    .get(&(kind, key))
                    .map(|b| format!("bulkId:{b}"))
                    .or_else(|| ids.get(&(kind, key.to_string())).cloned())
            };
            let own = op
                .lms_id
                .clone()
                .or_else(|| ids.get(&Self::own(op)).cloned());
            match self.request_parts(op, own.as_deref(), &refs) {
                Ok(Some((method, path, data))) => {
                    let mut entry =
                        json!({"method": method.as_str(), "path": path, "bulkId": bulk_id});
                    if let Some(data) = data {
                        entry["data"] = data;
                    }
                    operations.push(entry);
                    if method == Method::Post {
                        created.insert((op.kind, op.key.as_str()), bulk_id);
                    }
                    sent.push((i, method, own));
                }
                Ok(None) => out.push((
                    i,
                    Outcome::Done {
                        id: own,
                        linked: false,
                    },
                )),
                Err(outcome) => out.push((i, outcome)),
            }
        }
        if sent.is_empty() {
            return out;
        }
        let (answers, attempts) = match self.post_bulk(bulk, operations) {
            BulkAnswer::Each(answers, attempts) => (answers, attempts),
            BulkAnswer::TooLarge => {
                let idx: Vec<usize> = sent.iter().map(|(i, _, _)| *i).collect();
                let (a, b) = idx.split_at(idx.len() / 2);
                out.extend(self.bulk_chunk(bulk, batch, a, ids, tried));
                out.extend(self.bulk_chunk(bulk, batch, b, ids, tried));
                return out;
            }
            BulkAnswer::Unavailable(m) => {
                out.extend(
                    sent.iter()
                        .map(|(i, _, _)| (*i, Outcome::Unavailable(m.clone()))),
                );
                return out;
            }
            // One bad operation can get the whole request refused: each
            // operation on its own finds which.
            BulkAnswer::Refused => {
                for (i, _, _) in &sent {
                    out.push((*i, self.write_one(&batch[*i], ids)));
                }
                return out;
            }
        };
        let (mut retried, mut retried_at) = (Vec::new(), Vec::new());
        for ((i, method, own), answer) in sent.into_iter().zip(answers) {
            let op = &batch[i];
            let Some(one) = answer else {
                out.push((
                    i,
                    Outcome::Again("the Bulk answer does not mention it".into()),
                ));
                continue;
            };
            let tried_before = attempts > 1 || tried.contains(&i);
            let outcome = match one.status {
                // A version to send: that operation alone, the ETag way.
                412 | 428 => self.write_one(op, ids),
                _ => Self::outcome(method, &one, own, tried_before),
            };
            if tried_before && method == Method::Post {
                retried.push((op, outcome));
                retried_at.push(i);
            } else {
                out.push((i, outcome));
            }
        }
        // Creates this request may have made twice, looked up together.
        self.keep_first(&mut retried);
        out.extend(
            retried_at
                .into_iter()
                .zip(retried.into_iter().map(|(_, o)| o)),
        );
        out
    }

    /// Sends writes that are not operations of the batch (memberships):
    /// through `/Bulk` when offered, on the sender threads. One answer
    /// each, in order.
    pub(super) fn writes(&self, writes: Vec<RawWrite>) -> Vec<Result<Response, String>> {
        let Some(bulk) = self.bulk else {
            return self.parallel(writes, self.senders, |w| {
                self.send_versioned(raw_request(w))
            });
        };
        let size = bulk
            .max_ops
            .min(writes.len().div_ceil(self.senders.max(1)).max(1));
        let mut chunks: Vec<Vec<RawWrite>> = Vec::new();
        let mut it = writes.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(size).collect());
        }
        self.parallel(chunks, self.senders, |chunk| self.raw_bulk(bulk, chunk))
            .into_iter()
            .flatten()
            .collect()
    }

    /// Posts `entries` (each with its `bulkId`) as one Bulk request and
    /// matches the answers to them: by `bulkId`, else by position.
    fn post_bulk(&self, bulk: Bulk, entries: Vec<Json>) -> BulkAnswer {
        let n = entries.len();
        let ids: Vec<String> = entries
            .iter()
            .map(|e| e["bulkId"].as_str().unwrap_or_default().to_string())
            .collect();
        let body = json!({"schemas": [BULK_REQUEST], "Operations": entries});
        let req = Request::write(Method::Post, "/Bulk".into(), Some(&body), n as u32);
        if req.body.as_ref().map_or(0, Vec::len) > bulk.max_payload && n > 1 {
            return BulkAnswer::TooLarge;
        }
        let entries = body["Operations"].as_array().map_or(&[][..], Vec::as_slice);
        let resp = match self
            .client
            .send_looking(&req, &|| self.made_in_bulk(entries))
        {
            Ok(r) => r,
            Err(m) => return BulkAnswer::Unavailable(m),
        };
        if resp.status == 413 && n > 1 {
            return BulkAnswer::TooLarge;
        }
        if !resp.ok() {
            tracing::debug!(
                status = resp.status,
                "scim: bulk refused, sending one by one"
            );
            return BulkAnswer::Refused;
        }
        let answer = resp.json();
        let answers = answer["Operations"].as_array().cloned().unwrap_or_default();
        let by_id: AHashMap<&str, &Json> = answers
            .iter()
            .filter_map(|a| Some((a["bulkId"].as_str()?, a)))
            .collect();
        let each = ids
            .iter()
            .enumerate()
            .map(|(pos, id)| {
                let a = by_id
                    .get(id.as_str())
                    .copied()
                    .or_else(|| answers.get(pos).filter(|a| a["bulkId"].is_null()))?;
                Some(Response {
                    status: bulk_status(&a["status"]),
                    etag: a["version"].as_str().map(str::to_string),
                    location: a["location"].as_str().map(str::to_string),
                    body: if a["response"].is_null() {
                        Vec::new()
                    } else {
                        serde_json::to_vec(&a["response"]).unwrap_or_default()
                    },
                    retry_after: None,
                    attempts: 1,
                })
            })
            .collect();
        BulkAnswer::Each(each, resp.attempts)
    }

    /// One Bulk request of raw writes; halved while too large, one by one
    /// when refused whole; an operation the answer says to retry (or does
    /// not mention) is sent alone, with the client's retries.
    fn raw_bulk(&self, bulk: Bulk, mut chunk: Vec<RawWrite>) -> Vec<Result<Response, String>> {
        let entries: Vec<Json> = chunk
            .iter()
            .enumerate()
            .map(|(k, (method, path, body))| {
                let mut e =
                    json!({"method": method.as_str(), "path": path, "bulkId": format!("w{k}")});
                if let Some(body) = body {
                    e["data"] = body.clone();
                }
                e
            })
            .collect();
        match self.post_bulk(bulk, entries) {
            BulkAnswer::TooLarge => {
                let b = chunk.split_off(chunk.len() / 2);
                let mut out = self.raw_bulk(bulk, chunk);
                out.extend(self.raw_bulk(bulk, b));
                out
            }
            BulkAnswer::Unavailable(m) => chunk.iter().map(|_| Err(m.clone())).collect(),
            BulkAnswer::Refused => chunk
                .into_iter()
                .map(|w| self.send_versioned(raw_request(w)))
                .collect(),
            BulkAnswer::Each(answers, _) => chunk
                .into_iter()
                .zip(answers)
                .map(|(w, answer)| match answer {
                    Some(r) if !retryable(r.status) && !matches!(r.status, 412 | 428) => Ok(r),
                    _ => self.send_versioned(raw_request(w)),
                })
                .collect(),
        }
    }
}

/// A write that is not an operation of the batch: method, path, body.
type RawWrite = (Method, String, Option<Json>);

fn raw_request((method, path, body): RawWrite) -> Request {
    Request::write(method, path, body.as_ref(), 1)
}

/// What became of a Bulk request.
enum BulkAnswer {
    /// Unsent: above `maxPayloadSize`, or refused with 413. Halve it.
    TooLarge,
    /// The LMS could not be reached (after the client's retries).
    Unavailable(String),
    /// Refused as a whole (another status): send its operations alone.
    Refused,
    /// One answer per entry, in order (`None`: not mentioned), with the
    /// number of times the request was sent.
    Each(Vec<Option<Response>>, u32),
}

/// A Bulk operation's status, as a number (servers send `"201"` or `201`).
fn bulk_status(v: &Json) -> u16 {
    match v {
        Json::String(s) => s.parse().unwrap_or(500),
        Json::Number(n) => n.as_u64().map_or(500, |n| n as u16),
        _ => 500,
    }
}
