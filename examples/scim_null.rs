//! A minimal SCIM endpoint that accepts everything, for measuring the SCIM
//! sink (not a server): `cargo run --release --example scim_null -- PORT
//! [DELAY_MS]`. Keep-alive HTTP/1.1; `/ServiceProviderConfig` offers Bulk
//! (1000 operations, 4 MB); a create answers 201 with a fresh id, a Bulk
//! request one `201` per operation (echoing its `bulkId`), a search an
//! empty list, anything else 204. `DELAY_MS` makes every write that slow
//! (the slow-LMS memory figure). `GET /_ops` answers the number of write
//! operations taken so far (a Bulk request counts its operations). Also
//! used by `benches/scim.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(18099);
    let delay = Duration::from_millis(args.next().and_then(|d| d.parse().ok()).unwrap_or(0));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    eprintln!("scim_null on 127.0.0.1:{port}, writes delayed {delay:?}");
    serve(listener, delay);
}

/// Serves on `listener` until the process ends.
pub fn serve(listener: TcpListener, delay: Duration) {
    let ids = Arc::new(AtomicU64::new(1));
    for conn in listener.incoming().flatten() {
        let ids = ids.clone();
        std::thread::spawn(move || {
            let _ = connection(conn, &ids, delay);
        });
    }
}

fn connection(conn: TcpStream, ids: &AtomicU64, delay: Duration) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        if method != "GET" && !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let (status, answer) = answer(&method, &path, &body, ids);
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        )?;
        out.write_all(answer.as_bytes())?;
    }
}

/// Write operations taken.
static OPS: AtomicU64 = AtomicU64::new(0);

fn answer(method: &str, path: &str, body: &[u8], ids: &AtomicU64) -> (u16, String) {
    if path.ends_with("/_ops") {
        return (200, OPS.load(Ordering::Relaxed).to_string());
    }
    if method != "GET" && !path.ends_with("/Bulk") {
        OPS.fetch_add(1, Ordering::Relaxed);
    }
    if path.contains("/ServiceProviderConfig") {
        return (
            200,
            r#"{"bulk":{"supported":true,"maxOperations":1000,"maxPayloadSize":4194304},"etag":{"supported":false},"filter":{"supported":true,"maxResults":1000},"patch":{"supported":true}}"#.into(),
        );
    }
    match method {
        "GET" => (
            200,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0,"Resources":[]}"#.into(),
        ),
        "POST" if path.ends_with("/Bulk") => {
            let mut ops = String::from(r#"{"Operations":["#);
            let finder = memchr::memmem::Finder::new(br#""bulkId":""#);
            for (n, at) in finder.find_iter(body).enumerate() {
                let start = at + 10;
                let end = start + body[start..].iter().position(|&b| b == b'"').unwrap_or(0);
                let bulk_id = std::str::from_utf8(&body[start..end]).unwrap_or_default();
                let id = ids.fetch_add(1, Ordering::Relaxed);
                OPS.fetch_add(1, Ordering::Relaxed);
                if n > 0 {
                    ops.push(',');
                }
                ops.push_str(&format!(
                    r#"{{"bulkId":"{bulk_id}","status":"201","location":"/v2/Users/{id}"}}"#
                ));
            }
            ops.push_str("]}");
            (200, ops)
        }
        "POST" => (
            201,
            format!(r#"{{"id":"{}"}}"#, ids.fetch_add(1, Ordering::Relaxed)),
        ),
        _ => (204, String::new()),
    }
}
