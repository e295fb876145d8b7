//! A fault-injecting HTTP proxy of our own, in front of scim2-server: it
//! forwards each request (HTTP/1.1 in, one connection per request), or
//! answers 429 / 503 / 413 itself, waits, drops the connection before or
//! after the server saw the request, or fails some operations of a Bulk
//! request. It records every create that the server accepted with the
//! invitation attribute, so a test can count invitations.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};

const INVITE: &str = "urn:muster:params:scim:schemas:extension:2.0:User";

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Pass,
    /// Answers this status itself, with this `Retry-After` when given.
    Status(u16, Option<String>),
    /// Waits, then forwards.
    Slow(Duration),
    /// Closes the connection without forwarding.
    DropBefore,
    /// Forwards, then closes the connection without answering: the server
    /// applied what the client never hears of.
    DropAfter,
    /// Forwards a Bulk request without every `n`th operation, and answers
    /// 503 for those.
    FailBulkEvery(usize),
}

/// One request as the rule sees it.
pub struct Seen<'a> {
    pub n: u64,
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    /// Operations in a Bulk request.
    pub bulk_ops: usize,
    /// The request carries an `If-Match` header.
    pub if_match: bool,
}

type Rule = Box<dyn Fn(&Seen<'_>) -> Fault + Send + Sync>;

pub struct Proxy {
    pub port: u16,
    rule: Arc<Mutex<Rule>>,
    stop: Arc<AtomicBool>,
    /// `externalId` of every user the server created with an invitation.
    pub invited: Arc<Mutex<Vec<String>>>,
    /// Every fault applied, as (request number, fault).
    pub applied: Arc<Mutex<Vec<(u64, Fault)>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rule: Arc<Mutex<Rule>> = Arc::new(Mutex::new(Box::new(|_| Fault::Pass)));
        let stop = Arc::new(AtomicBool::new(false));
        let invited = Arc::new(Mutex::new(Vec::new()));
        let applied = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        {
            let (rule, stop, invited, applied) =
                (rule.clone(), stop.clone(), invited.clone(), applied.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (rule, invited, applied, count) = (
                        rule.clone(),
                        invited.clone(),
                        applied.clone(),
                        count.clone(),
                    );
                    std::thread::spawn(move || {
                        let _ = serve(conn, upstream, &rule, &invited, &applied, &count);
                    });
                }
            });
        }
        Proxy {
            port,
            rule,
            stop,
            invited,
            applied,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    pub fn set(&self, rule: impl Fn(&Seen<'_>) -> Fault + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Box::new(rule);
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.applied
            .lock()
            .unwrap()
            .iter()
            .map(|(_, f)| f.clone())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

struct Message {
    head: String,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Message> {
    let mut head = String::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Message { head, body })
}

fn forward(upstream: u16, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", upstream))?;
    // Content-Length is set anew: the body may have been rewritten.
    let head: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    s.write_all(head.as_bytes())?;
    write!(
        s,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    let body = raw.get(at + 4..).unwrap_or_default().to_vec();
    (head, body)
}

fn respond(conn: &mut TcpStream, status: u16, extra: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/scim+json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)?;
    conn.flush()
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    rule: &Mutex<Rule>,
    invited: &Mutex<Vec<String>>,
    applied: &Mutex<Vec<(u64, Fault)>>,
    count: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    let req = read_request(&mut reader)?;
    let first = req.head.lines().next().unwrap_or_default().to_string();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let path = target.split("/v2").nth(1).unwrap_or(&target).to_string();
    let parsed: Json = serde_json::from_slice(&req.body).unwrap_or_default();
    let bulk_ops = parsed["Operations"]
        .as_array()
        .filter(|_| path.starts_with("/Bulk"))
        .map_or(0, Vec::len);
    let n = count.fetch_add(1, Ordering::SeqCst);
    let if_match = req
        .head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("if-match:"));
    let fault = (rule.lock().unwrap())(&Seen {
        n,
        method: &method,
        path: &path,
        body: &req.body,
        bulk_ops,
        if_match,
    });
    if fault != Fault::Pass {
        applied.lock().unwrap().push((n, fault.clone()));
    }
    let mut body = req.body.clone();
    let mut failed: Vec<Json> = Vec::new();
    match &fault {
        Fault::Status(status, retry_after) => {
            let extra = retry_after
                .as_ref()
                .map(|r| format!("Retry-After: {r}\r\n"))
                .unwrap_or_default();
            let detail = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.to_string(), "detail": "injected by the test proxy"});
            return respond(&mut conn, *status, &extra, detail.to_string().as_bytes());
        }
        Fault::DropBefore => return Ok(()),
        Fault::Slow(d) => std::thread::sleep(*d),
        Fault::FailBulkEvery(k) if bulk_ops > 0 => {
            let mut v = parsed.clone();
            if let Some(ops) = v["Operations"].as_array_mut() {
                let mut keep = Vec::new();
                for (i, op) in ops.drain(..).enumerate() {
                    if i % k == k - 1 {
                        failed.push(json!({
                            "method": op["method"], "bulkId": op["bulkId"], "status": "503",
                            "response": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "503", "detail": "injected: try again"}
                        }));
                    } else {
                        keep.push(op);
                    }
                }
                *ops = keep;
            }
            body = serde_json::to_vec(&v).unwrap();
        }
        Fault::Pass | Fault::DropAfter | Fault::FailBulkEvery(_) => {}
    }
    let raw = forward(upstream, &req.head, &body)?;
    let (head, mut resp_body) = split_response(&raw);
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    record_invites(&method, &path, &parsed, status, &resp_body, invited);
    if fault == Fault::DropAfter {
        return Ok(());
    }
    if !failed.is_empty() {
        let mut v: Json = serde_json::from_slice(&resp_body).unwrap_or_default();
        if let Some(ops) = v["Operations"].as_array_mut() {
            ops.extend(failed);
        }
        resp_body = serde_json::to_vec(&v).unwrap();
    }
    let mut extra = String::new();
    for line in head.lines().skip(1) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("etag:") || lower.starts_with("location:") {
            extra.push_str(line);
            extra.push_str("\r\n");
        }
    }
    respond(&mut conn, status, &extra, &resp_body)
}

/// Notes the users the server created with the invitation attribute (and
/// any PATCH that sets it: an invitation too).
fn record_invites(
    method: &str,
    path: &str,
    req: &Json,
    status: u16,
    resp: &[u8],
    invited: &Mutex<Vec<String>>,
) {
    let mut out = invited.lock().unwrap();
    let is_invite = |data: &Json| data[INVITE]["invite"] == true;
    // A PATCH body that sets the invite attribute (an `invite_from` date came).
    let invites = |body: &Json| {
        body["Operations"].as_array().is_some_and(|ops| {
            ops.iter()
                .any(|o| o["path"] == format!("{INVITE}:invite").as_str() && o["value"] == true)
        })
    };
    if method == "POST" && path.starts_with("/Users") && status == 201 && is_invite(req) {
        out.push(req["externalId"].as_str().unwrap_or_default().to_string());
    }
    if method == "PATCH" && path.starts_with("/Users/") && status < 300 && invites(req) {
        out.push(format!("PATCH {path}"));
    }
    if method == "POST" && path.starts_with("/Bulk") && status == 200 {
        let answer: Json = serde_json::from_slice(resp).unwrap_or_default();
        let ops = req["Operations"].as_array().cloned().unwrap_or_default();
        let answers = answer["Operations"].as_array().cloned().unwrap_or_default();
        // A PATCH that invites (an `invite_from` date came), by position.
        for (op, a) in ops.iter().zip(&answers) {
            let applied = a["status"].as_str().is_some_and(|s| s.starts_with('2'));
            if applied && op["method"] == "PATCH" && invites(&op["data"]) {
                out.push(format!("PATCH {}", op["path"].as_str().unwrap_or_default()));
            }
        }
        for a in answers {
            if a["status"] != "201" {
                continue;
            }
            if let Some(op) = ops.iter().find(|o| o["bulkId"] == a["bulkId"]) {
                if op["path"] == "/Users" && is_invite(&op["data"]) {
                    out.push(
                        op["data"]["externalId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
}
