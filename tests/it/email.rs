//! E-mail notifications (SPEC §8) sent to a real SMTP server: aiosmtpd,
//! which `scripts/test.sh` installs into `target/scim-venv`, started on
//! loopback and a free port by `smtp_server.py` beside this file. It
//! offers STARTTLS with a throwaway CA's certificate, requires a login,
//! and writes each mail it accepts, parsed by Python's e-mail parser, as
//! JSON: the tests read the mail back as a person's mail client would.

use std::path::PathBuf;
use std::process::{Child, Command, Output};

use crate::run::{derive, gen, stderr, users_with_bad_emails, Tenant};

const PASSWORD: &str = "smtp-pw-7c1e0a";

/// A running `smtp_server.py`; killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start(args: &[&str]) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![dir.path().as_os_str()];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        let (child, port) = crate::run::python_server("smtp_server.py", &all, "aiosmtpd");
        SmtpServer { child, port, dir }
    }

    /// The CA that signed the server's certificate.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The mails it accepted, in order.
    fn mails(&self) -> Vec<serde_json::Value> {
        (1..)
            .map(|n| self.dir.path().join(format!("mail-{n}.json")))
            .take_while(|p| p.exists())
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(t: &Tenant) -> Output {
    Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["run", "--config"])
        .arg(t.path("muster.toml"))
        .args(["--today", crate::fixtures::TODAY])
        .env("MUSTER_TEST_SMTP_PASSWORD", PASSWORD)
        .env("RUST_LOG", "muster=info")
        .output()
        .unwrap()
}

/// `[[tenant.notify]]` of type email to `server`, with `more` lines.
fn target(server: &SmtpServer, more: &str) -> String {
    format!(
        "[[tenant.notify]]\ntype = \"email\"\nsmtp = \"127.0.0.1:{}\"\n\
         from = \"muster@lms.example.com\"\nto = [\"hr-it@client.example.com\", \"ops@lms.example.com\"]\n{more}",
        server.port
    )
}

#[test]
fn rejected_rows_and_a_held_file_are_mailed_over_starttls_with_the_results() {
    let server = SmtpServer::start(&[
        "--tls",
        "--user",
        "muster",
        "--password",
        PASSWORD,
        "--fail-first",
        "1",
    ]);
    let t = Tenant::with_extra(
        100,
        false,
        &format!(
            "{}[tenant.safety]\nmax_delete_ratio = 0.001\n",
            target(
                &server,
                &format!(
                    "user = \"muster\"\npassword_env = \"MUSTER_TEST_SMTP_PASSWORD\"\n\
                     on = [\"rows_failed\", \"held\"]\nattach_results = true\nca_file = {:?}\n",
                    server.ca()
                )
            )
        ),
    );
    let day1 = users_with_bad_emails(300, 6, &[5, 9]);
    std::fs::write(t.path("day1.csv"), &day1).unwrap();
    t.drop_file("wt_users.csv", &day1);
    let o = run(&t);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // The server refused the first try with a 451; the second went in.
    let mails = server.mails();
    assert_eq!(mails.len(), 1, "{}", stderr(&o));
    let mail = &mails[0];
    assert_eq!(mail["tls"], true, "STARTTLS was not used");
    assert_eq!(mail["login"], "muster");
    assert_eq!(mail["mail_from"], "muster@lms.example.com");
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["hr-it@client.example.com", "ops@lms.example.com"])
    );
    let subject = mail["subject"].as_str().unwrap();
    assert_eq!(subject, "muster t: wt_users.csv applied, some rows failed");
    let text = &mail["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(text.contains("wt_users.csv (300 records, profile winningtemp-users) was applied, but some of its rows failed"), "{text}");
    assert!(text.contains("First failed lines (2 of 2):"), "{text}");
    assert!(text.contains("  line 5, key "), "{text}");
    assert!(text.contains("  line 9, key "), "{text}");
    assert!(text.contains("invalid_email"), "{text}");
    // The attachment is the results file the run left in processed/.
    let results = t
        .processed()
        .into_iter()
        .find(|n| n.ends_with(".results.csv"))
        .unwrap();
    let attachments = mail["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{mail:#}");
    assert_eq!(attachments[0]["filename"], results.as_str());
    assert_eq!(attachments[0]["content_type"], "text/csv");
    assert_eq!(
        attachments[0]["content"].as_str().unwrap(),
        std::fs::read_to_string(t.path("inbox/processed").join(&results)).unwrap()
    );
    assert!(text.contains(&format!("{results} (attached)")), "{text}");

    // Day 2 deletes a fifth: held, said with the guard's reason.
    t.drop_file("wt_users.csv", &derive(&t.path("day1.csv"), "0.2"));
    let o = run(&t);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let mails = server.mails();
    assert_eq!(mails.len(), 2, "{}", stderr(&o));
    let held = &mails[1];
    assert_eq!(held["subject"], "muster t: wt_users.csv held");
    let text = &held["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        text.contains("was held by a safety guard: nothing of it was applied"),
        "{text}"
    );
    assert!(
        text.contains("Why:\n  ") && text.contains("max_delete_ratio"),
        "{text}"
    );
    assert!(text.contains("delete     held "), "{text}");
    assert_eq!(held["attachments"].as_array().unwrap().len(), 1);
    for mail in &mails {
        assert!(!mail["raw"].as_str().unwrap().contains(PASSWORD));
    }
    assert!(!stderr(&o).contains(PASSWORD));
}

#[test]
fn a_mail_server_that_is_down_or_not_trusted_never_fails_the_run() {
    // Offers STARTTLS with a certificate no configured CA signed.
    let untrusted = SmtpServer::start(&["--tls"]);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Tenant::with_extra(
        100,
        false,
        &format!(
            "{}[[tenant.notify]]\ntype = \"email\"\nsmtp = \"127.0.0.1:{closed}\"\n\
             from = \"muster@lms.example.com\"\nto = [\"hr-it@client.example.com\"]\non = [\"ok\", \"rows_failed\"]\n",
            target(&untrusted, "on = [\"ok\", \"rows_failed\"]\n")
        ),
    );
    t.drop_file("wt_users.csv", &gen(50, 7));
    let o = run(&t);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.matches("e-mail notification not delivered").count(),
        2,
        "{err}"
    );
    assert!(untrusted.mails().is_empty());
    assert_eq!(t.processed().len(), 3);
}

/// An e-mail target's settings are checked when the config loads.
#[test]
fn a_bad_email_setting_is_a_configuration_error() {
    let base = "type = \"email\"\nfrom = \"muster@lms.example.com\"\n";
    for (lines, says) in [
        (
            "smtp = \"mail:x\"\nto = [\"a@b.example\"]\n",
            "the port should be a number",
        ),
        ("smtp = \"mail:25\"\nto = []\n", "at least one address"),
        (
            "smtp = \"mail:25\"\nto = [\"nobody\"]\n",
            "\"nobody\" is not an e-mail address",
        ),
        (
            "smtp = \"mail:25\"\nto = [\"a@b.example\"]\nuser = \"u\"\n",
            "give password_env or password_file",
        ),
        (
            "smtp = \"mail:25\"\nto = [\"a@b.example\"]\nca_file = \"no-such.pem\"\n",
            "notify ca_file",
        ),
        (
            "smtp = \"mail:25\"\nto = [\"a@b.example\"]\ncc = [\"x\"]\n",
            "unknown field `cc`",
        ),
    ] {
        let t = Tenant::with_extra(100, false, &format!("[[tenant.notify]]\n{base}{lines}"));
        let o = run(&t);
        assert_eq!(o.status.code(), Some(2), "{lines}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{lines}: {}", stderr(&o));
    }
}
