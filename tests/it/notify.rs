//! Webhook notifications (SPEC §8): the event of each file of a run POSTed
//! as JSON to a loopback receiver, signed with HMAC-SHA256, retried after
//! a failure; an unreachable webhook never fails the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use crate::run::{derive, gen, stderr, Tenant};

const SECRET: &str = "hook-secret-5e1d";

/// A request the receiver got: its headers (names lower-cased) and body.
pub type Got = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A loopback HTTP receiver: answers 503 to its first request, 200 to
/// the others.
pub fn receiver() -> (u16, Got) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Got = Default::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let first = {
                let mut seen = seen.lock().unwrap();
                seen.push((headers, body));
                seen.len() == 1
            };
            let status = if first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, got)
}

fn run(t: &Tenant) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(t.path("muster.toml"))
        .args(["--today", crate::fixtures::TODAY])
        .env("MUSTER_TEST_HOOK_SECRET", SECRET)
        .env("RUST_LOG", "muster=info")
        .output()
        .unwrap()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn each_run_is_told_to_the_webhook_signed_and_retried() {
    use hmac::{Hmac, Mac};
    let (port, got) = receiver();
    let t = Tenant::with_extra(
        100,
        false,
        &format!(
            "[[tenant.notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             secret_env = \"MUSTER_TEST_HOOK_SECRET\"\non = [\"ok\", \"rows_failed\", \"held\"]\n\
             [tenant.safety]\nmax_delete_ratio = 0.001\n"
        ),
    );
    std::fs::write(t.path("day1.csv"), gen(300, 6)).unwrap();
    t.drop_file("wt_users.csv", &gen(300, 6));
    let o = run(&t);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    t.drop_file("wt_users.csv", &derive(&t.path("day1.csv"), "0.2"));
    let o = run(&t);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    let got = got.lock().unwrap().clone();
    // Day 1's event twice (refused with a 503 once, then delivered), then
    // day 2's.
    assert_eq!(
        got.len(),
        3,
        "{:?}",
        got.iter()
            .map(|g| String::from_utf8_lossy(&g.1).into_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(got[0].1, got[1].1, "the retry sent another body");
    for (headers, body) in &got {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            header(headers, "x-muster-signature"),
            Some(format!("sha256={want}").as_str())
        );
        assert_eq!(header(headers, "content-type"), Some("application/json"));
        assert!(!String::from_utf8_lossy(body).contains(SECRET));
    }
    let day1: serde_json::Value = serde_json::from_slice(&got[1].1).unwrap();
    let day2: serde_json::Value = serde_json::from_slice(&got[2].1).unwrap();
    assert!(
        ["ok", "rows_failed"].contains(&day1["event"].as_str().unwrap()),
        "{day1:#}"
    );
    assert_eq!(day1["tenant"], "t");
    assert_eq!(day1["file"], "wt_users.csv");
    assert_eq!(day1["profile"], "winningtemp-users");
    assert_eq!(day1["records"], 300);
    assert!(
        day1["counts"]["create"]["ok"].as_u64().unwrap() > 250,
        "{day1:#}"
    );
    assert!(day1["results"].as_str().unwrap().ends_with(".results.csv"));
    assert_eq!(day2["event"], "held", "{day2:#}");
    assert!(day2["run_id"].as_u64() > day1["run_id"].as_u64());
    assert!(day2["reasons"][0]
        .as_str()
        .unwrap()
        .contains("max_delete_ratio"));
    assert!(day2["counts"]["delete"]["held"].as_u64().unwrap() > 0);
}

#[test]
fn a_webhook_that_cannot_be_reached_never_fails_the_run() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Tenant::with_extra(
        100,
        false,
        &format!(
            "[[tenant.notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\non = [\"ok\", \"rows_failed\"]\n"
        ),
    );
    t.drop_file("wt_users.csv", &gen(50, 7));
    let o = run(&t);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("notification not delivered"),
        "{}",
        stderr(&o)
    );
    assert_eq!(t.processed().len(), 3);
}

/// A target's settings are checked when the config loads.
#[test]
fn a_bad_webhook_setting_is_a_configuration_error() {
    for (line, says) in [
        ("url = \"ftp://x\"\n", "should start with https://"),
        ("url = \"https://u:pw@x\"\n", "user name or password"),
        (
            "url = \"https://x\"\non = [\"sometimes\"]\n",
            "unknown event \"sometimes\"",
        ),
        (
            "url = \"https://x\"\nsecret_env = \"MUSTER_TEST_NO_SUCH_VAR\"\n",
            "not set",
        ),
    ] {
        let t = Tenant::with_extra(
            100,
            false,
            &format!("[[tenant.notify]]\ntype = \"webhook\"\n{line}"),
        );
        let o = run(&t);
        assert_eq!(o.status.code(), Some(2), "{line}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{line}: {}", stderr(&o));
        assert!(!stderr(&o).contains("pw@"), "{}", stderr(&o));
    }
}
