//! An e-mail target (SPEC §8): the event said in words (the file, what
//! happened to it, its counts, why it was held, its first failed lines),
//! sent over SMTP by lettre. Port 465 is TLS from the first byte; any
//! other port upgrades with STARTTLS when the server offers it. A login
//! is only ever sent encrypted: with one, STARTTLS is required unless the
//! server is on loopback. The results CSV is attached when asked, up to
//! [`MAX_ATTACHMENT`] bytes; a bigger one is named, not attached.

use std::io::Read;
use std::path::PathBuf;

use super::Event;
use crate::secret::Secret;

/// The largest results CSV attached (about 100,000 lines).
const MAX_ATTACHMENT: usize = 10 << 20;
/// The failed lines an e-mail quotes.
const FIRST_FAILED: usize = 10;

/// A validated e-mail target. (Without the `notify` feature it is only
/// checked: nothing sends it.)
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "notify"), allow(dead_code))]
pub struct Mail {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<Secret>,
    from: String,
    to: Vec<String>,
    attach: bool,
    /// PEM certificates trusted besides the public roots.
    ca: Option<Vec<u8>>,
}

impl Mail {
    /// Checks an `[[tenant.notify]]` e-mail target; what is wrong names
    /// the key.
    pub(super) fn new(
        smtp: &str,
        user: Option<String>,
        password: Option<Secret>,
        from: &str,
        to: &[String],
        attach: bool,
        ca_file: Option<PathBuf>,
    ) -> Result<Mail, String> {
        let (host, port) = match smtp.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) if port > 0 => (host, port),
                _ => {
                    return Err(format!(
                    "notify smtp {smtp:?}: the port should be a number (e.g. smtp.example.com:587)"
                ))
                }
            },
            None => (smtp, 587),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || smtp.contains("://") {
            return Err(format!(
                "notify smtp {smtp:?} should be host:port (e.g. smtp.example.com:587)"
            ));
        }
        match (&user, &password) {
            (Some(_), None) => {
                return Err("notify user is set: give password_env or password_file".into())
            }
            (None, Some(_)) => return Err("notify password is set: give the user too".into()),
            _ => {}
        }
        if to.is_empty() {
            return Err("notify to: give at least one address".into());
        }
        for (key, address) in
            std::iter::once(("from", from)).chain(to.iter().map(|t| ("to", t.as_str())))
        {
            check_address(key, address)?;
        }
        let ca = match ca_file {
            Some(f) => Some(
                std::fs::read(&f).map_err(|e| format!("notify ca_file {}: {e}", f.display()))?,
            ),
            None => None,
        };
        let mail = Mail {
            host: host.to_string(),
            port,
            user,
            password,
            from: from.to_string(),
            to: to.to_vec(),
            attach,
            ca,
        };
        mail.check_tls()?;
        Ok(mail)
    }

    /// Whether the server is this machine.
    #[cfg_attr(not(feature = "notify"), allow(dead_code))]
    fn loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Sends `event`, trying a few times; what could not be delivered is
    /// logged. `results` opens the results CSV the event names.
    pub(super) fn send(
        &self,
        event: &Event,
        results: &mut dyn FnMut(&str) -> Option<Box<dyn Read + Send>>,
    ) {
        let failed = failed_total(event);
        let peek = match &event.results {
            Some(location) if failed > 0 || self.attach => results(location)
                .map(|r| peek(r, self.attach))
                .and_then(|p| {
                    p.map_err(|e| tracing::warn!(results = %location, error = %e, "the results could not be read for an e-mail"))
                        .ok()
                }),
            _ => None,
        };
        let text = words(event, failed, peek.as_ref());
        let subject = subject(event);
        let attachment = peek.and_then(|p| p.bytes);
        self.deliver(event, &subject, text, attachment);
    }
}

fn check_address(key: &str, address: &str) -> Result<(), String> {
    #[cfg(feature = "notify")]
    {
        address
            .parse::<lettre::message::Mailbox>()
            .map(|_| ())
            .map_err(|e| format!("notify {key} {address:?} is not an e-mail address: {e}"))
    }
    #[cfg(not(feature = "notify"))]
    {
        match address.contains('@') {
            true => Ok(()),
            false => Err(format!("notify {key} {address:?} is not an e-mail address")),
        }
    }
}

#[cfg(feature = "notify")]
impl Mail {
    /// The transport's TLS, built now so a bad `ca_file` is a
    /// configuration error.
    fn check_tls(&self) -> Result<(), String> {
        self.tls().map(|_| ())
    }

    fn tls(&self) -> Result<lettre::transport::smtp::client::Tls, String> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let mut params = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| format!("notify ca_file: not a PEM certificate: {e}"))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build_rustls()
            .map_err(|e| format!("notify smtp: TLS: {e}"))?;
        Ok(if self.port == 465 {
            Tls::Wrapper(params)
        } else if self.user.is_some() && !self.loopback() {
            Tls::Required(params)
        } else {
            Tls::Opportunistic(params)
        })
    }

    fn deliver(&self, event: &Event, subject: &str, text: String, attachment: Option<Vec<u8>>) {
        use lettre::message::header::ContentType;
        use lettre::message::{Attachment, Message, MultiPart, SinglePart};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::Transport;

        let server = format!("{}:{}", self.host, self.port);
        let fail = |error: String| {
            tracing::warn!(smtp = %server, event = %event.event, error = %error, "e-mail notification not delivered");
        };
        let mut builder = Message::builder().subject(subject);
        for (to, address) in
            std::iter::once((false, &self.from)).chain(self.to.iter().map(|t| (true, t)))
        {
            let Ok(mailbox) = address.parse() else {
                return fail(format!("{address:?} is not an e-mail address"));
            };
            builder = match to {
                false => builder.from(mailbox),
                true => builder.to(mailbox),
            };
        }
        let text = SinglePart::plain(text);
        let message = match attachment {
            Some(bytes) => {
                let name = event
                    .results
                    .as_deref()
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or("results.csv")
                    .to_string();
                let csv = ContentType::parse("text/csv; charset=utf-8").expect("a valid type");
                builder.multipart(
                    MultiPart::mixed()
                        .singlepart(text)
                        .singlepart(Attachment::new(name).body(bytes, csv)),
                )
            }
            None => builder.singlepart(text),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => return fail(e.to_string()),
        };
        let tls = match self.tls() {
            Ok(tls) => tls,
            Err(e) => return fail(e),
        };
        let mut transport = lettre::SmtpTransport::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            transport = transport.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        let transport = transport.build();
        let mut last = String::new();
        for attempt in 1..=super::ATTEMPTS {
            match transport.send(&message) {
                Ok(_) => {
                    tracing::info!(smtp = %server, event = %event.event, to = self.to.len(), "e-mail notification delivered");
                    return;
                }
                // The server refused it for good (an address, the login):
                // trying again would be refused the same.
                Err(e) if e.is_permanent() => return fail(e.to_string()),
                Err(e) => last = e.to_string(),
            }
            if attempt < super::ATTEMPTS {
                std::thread::sleep(super::backoff(attempt));
            }
        }
        fail(format!("{last} (after {} attempts)", super::ATTEMPTS));
    }
}

#[cfg(not(feature = "notify"))]
impl Mail {
    fn check_tls(&self) -> Result<(), String> {
        Ok(())
    }

    fn deliver(&self, event: &Event, _: &str, _: String, _: Option<Vec<u8>>) {
        tracing::warn!(smtp = %self.host, event = %event.event, "e-mail notification not sent: this muster was built without the `notify` feature");
    }
}

/// The lines with outcome `failed`, as the counts tell.
fn failed_total(event: &Event) -> u64 {
    event
        .counts
        .values()
        .filter_map(|by| by.get("failed").and_then(|n| n.as_u64()))
        .sum()
}

fn subject(event: &Event) -> String {
    match &event.file {
        Some(file) => format!("muster {}: {file} {}", event.tenant, said(&event.event)),
        None => format!("muster {}: the run failed", event.tenant),
    }
}

/// An event's word, as a subject says it.
fn said(event: &str) -> &'static str {
    match event {
        "ok" => "applied",
        "rows_failed" => "applied, some rows failed",
        "held" => "held",
        "refused" => "refused",
        _ => "failed",
    }
}

/// The body of the mail.
fn words(event: &Event, failed: u64, peek: Option<&Peek>) -> String {
    let mut out = String::new();
    let run = event
        .run_id
        .map_or(String::new(), |id| format!(", run {id}"));
    match &event.file {
        None => out.push_str(&format!(
            "Tenant {}{run}: the run failed before it could finish a file.\n",
            event.tenant
        )),
        Some(file) => {
            let what = match event.event.as_str() {
                "ok" => "was applied",
                "rows_failed" => "was applied, but some of its rows failed (they are in the results, with why)",
                "held" => "was held by a safety guard: nothing of it was applied. It stays in the inbox until it is released (`muster release`) or a newer file supersedes it",
                "refused" => "was refused whole: nothing of it was applied",
                _ => "could not be applied: the LMS could not be reached. The next run tries again",
            };
            let profile = event
                .profile
                .as_deref()
                .map_or(String::new(), |p| format!(", profile {p}"));
            out.push_str(&format!(
                "Tenant {}{run}: {file} ({}{profile}) {what}.\n",
                event.tenant,
                crate::model::counted(event.records, "record"),
            ));
        }
    }
    if !event.reasons.is_empty() {
        out.push_str("\nWhy:\n");
        for reason in &event.reasons {
            out.push_str(&format!("  {reason}\n"));
        }
    }
    if !event.counts.is_empty() {
        out.push_str("\nLines by action and outcome:\n");
        for (action, by) in &event.counts {
            let outcomes: Vec<String> = by
                .as_object()
                .into_iter()
                .flatten()
                .map(|(outcome, n)| format!("{outcome} {n}"))
                .collect();
            out.push_str(&format!("  {action:<10} {}\n", outcomes.join(", ")));
        }
    }
    if let Some(peek) = peek.filter(|p| !p.failed.is_empty()) {
        out.push_str(&format!(
            "\nFirst failed lines ({} of {failed}):\n",
            peek.failed.len()
        ));
        for line in &peek.failed {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(results) = &event.results {
        let note = match peek {
            Some(p) if p.bytes.is_some() => " (attached)",
            Some(p) if p.too_big => " (too big to attach)",
            _ => "",
        };
        out.push_str(&format!("\nResults: {results}{note}\n"));
    }
    out
}

/// What a mail takes from a results CSV.
struct Peek {
    /// The first failed lines, in words.
    failed: Vec<String>,
    /// The whole file, when it is to be attached and not too big.
    bytes: Option<Vec<u8>>,
    too_big: bool,
}

/// Reads a results CSV (SPEC §4) for its first failed lines and, when
/// `attach`, its bytes; it stops once it has what it needs.
fn peek(reader: Box<dyn Read + Send>, attach: bool) -> std::io::Result<Peek> {
    let mut tee = Tee {
        inner: reader,
        copy: attach.then(Vec::new),
        too_big: false,
    };
    let mut failed = Vec::new();
    crate::results::read_lines(&mut tee, |l| {
        if l.outcome == "failed" && failed.len() < FIRST_FAILED {
            let at = match l.line.is_empty() {
                true => format!("key {} (not in the file)", l.key),
                false => format!("line {}, key {}", l.line, l.key),
            };
            failed.push(format!("{at}: {} {}: {}", l.action, l.code, l.message));
        }
        failed.len() < FIRST_FAILED
    })?;
    if tee.copy.is_some() {
        std::io::copy(&mut tee, &mut std::io::sink())?;
    }
    Ok(Peek {
        failed,
        bytes: tee.copy,
        too_big: tee.too_big,
    })
}

/// A reader that keeps a copy of what it reads, up to [`MAX_ATTACHMENT`].
struct Tee {
    inner: Box<dyn Read + Send>,
    copy: Option<Vec<u8>>,
    too_big: bool,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy {
            copy.extend_from_slice(&buf[..n]);
            if copy.len() > MAX_ATTACHMENT {
                self.copy = None;
                self.too_big = true;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(counts: serde_json::Value) -> Event {
        Event {
            event: "rows_failed".into(),
            tenant: "acme".into(),
            run_id: Some(3),
            file: Some("users.csv".into()),
            profile: Some("hr".into()),
            records: 3,
            counts: counts.as_object().cloned().unwrap_or_default(),
            reasons: vec![],
            results: Some("/in/processed/users.20261206T000000Z.results.csv".into()),
        }
    }

    #[test]
    fn the_first_failed_lines_are_read_from_quoted_results() {
        let csv = "line,key,action,outcome,code,message\n\
                   2,u1,create,ok,,\n\
                   3,u2,reject,failed,invalid_email,\"email \"\"x\"\", not an address, column 3\"\n\
                   4,\"u,3\",update,failed,sink_rejected,\"HTTP 400:\nbad\"\n\
                   ,u9,delete,ok,,not in the file\n";
        let p = peek(
            Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())),
            true,
        )
        .unwrap();
        assert_eq!(
            p.failed,
            [
                "line 3, key u2: reject invalid_email: email \"x\", not an address, column 3",
                "line 4, key u,3: update sink_rejected: HTTP 400:\nbad",
            ]
        );
        assert_eq!(p.bytes.as_deref(), Some(csv.as_bytes()));
        let text = words(
            &event(
                serde_json::json!({"create": {"ok": 1}, "reject": {"failed": 1}, "update": {"failed": 1}}),
            ),
            2,
            Some(&p),
        );
        assert!(text.contains("First failed lines (2 of 2):"), "{text}");
        assert!(text.contains("(attached)"), "{text}");
        assert!(
            text.contains("users.csv (3 records, profile hr) was applied, but some"),
            "{text}"
        );
    }

    #[test]
    fn a_results_file_too_big_is_named_not_attached() {
        let mut csv = b"line,key,action,outcome,code,message\n".to_vec();
        let mut n = 0;
        while csv.len() <= MAX_ATTACHMENT {
            n += 1;
            csv.extend_from_slice(format!("{n},user{n},create,ok,,\n").as_bytes());
        }
        csv.extend_from_slice(b"9999999,late,reject,failed,missing_field,email is empty\n");
        let p = peek(Box::new(std::io::Cursor::new(csv)), true).unwrap();
        assert!(p.bytes.is_none() && p.too_big);
        assert_eq!(
            p.failed,
            ["line 9999999, key late: reject missing_field: email is empty"]
        );
    }

    #[test]
    fn a_login_is_never_sent_in_clear_off_loopback() {
        let mail = |smtp: &str, user: Option<&str>| {
            Mail::new(
                smtp,
                user.map(str::to_string),
                user.map(|_| Secret::new("pw".into())),
                "muster@lms.example.com",
                &["hr@client.example.com".to_string()],
                false,
                None,
            )
        };
        assert!(mail("smtp.example.com:587", Some("muster")).is_ok());
        assert!(mail("smtp.example.com", None).is_ok_and(|m| m.port == 587));
        assert!(mail("smtp.example.com:x", None)
            .unwrap_err()
            .contains("port"));
        assert!(mail("smtp://smtp.example.com:25", None).is_err());
        #[cfg(feature = "notify")]
        {
            use lettre::transport::smtp::client::Tls;
            let tls = |m: Mail| m.tls().unwrap();
            assert!(matches!(
                tls(mail("smtp.example.com:587", Some("u")).unwrap()),
                Tls::Required(_)
            ));
            assert!(matches!(
                tls(mail("127.0.0.1:2525", Some("u")).unwrap()),
                Tls::Opportunistic(_)
            ));
            assert!(matches!(
                tls(mail("smtp.example.com:587", None).unwrap()),
                Tls::Opportunistic(_)
            ));
            assert!(matches!(
                tls(mail("smtp.example.com:465", Some("u")).unwrap()),
                Tls::Wrapper(_)
            ));
        }
    }
}
