//! The console (SPEC §8, `GET /`) in a real browser: Debian's Chromium,
//! driven through Debian's chromedriver with fantoccini (WebDriver), as
//! `scripts/test.sh` installs them. A daemon with a tenant in each state
//! (and filler tenants up to 1,000) is looked at as a person would: the
//! states in words, a filter, a held tenant's chart, the release of its
//! file through the button (a wrong token refused first) and the next run
//! applying it, and a run's failed lines. Screenshots go to
//! `target/console/` for review.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::daemon::{black_hole, every_second, Daemon};
use crate::run::{derive, gen, users_with_bad_emails};

const TOKEN: &str = "console-token-81d2";

/// chromedriver on a free port; killed when dropped.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Driver {
        for program in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run the tests with scripts/test.sh, which installs Debian's chromium and chromium-driver"
            );
        }
        let port = crate::scim::server::free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver(child, port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a Chromium session")
}

/// Waits until `ok` holds, for at most `secs`.
async fn until(what: &str, secs: u64, d: &Daemon, ok: impl AsyncFn() -> bool) {
    let started = Instant::now();
    while !ok().await {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; daemon log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, c.screenshot().await.unwrap()).unwrap();
    path
}

/// The Enter key, as WebDriver sends it.
fn enter() -> String {
    char::from(fantoccini::key::Key::Enter).to_string()
}

/// A `[[tenant]]` run only when asked (`POST …/run`): every_second's with
/// a schedule that never comes.
fn on_demand(dir: &Path, name: &str) -> String {
    every_second(dir, name).replace("* * * * * *", "0 0 0 1 1 *")
}

#[test]
fn the_console_shows_each_state_charts_runs_and_releases_a_held_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The tenants, one per state; their states made by `muster run` before
    // the daemon starts (the running one is the daemon's).
    let held = on_demand(root, "gamma-held") + "[tenant.safety]\nmax_delete_ratio = 0.001\n";
    let failed = on_demand(root, "epsilon-failed").replace(
        "type = \"jsonl\"\npath = \"epsilon-failed/outbox.jsonl\"",
        &format!(
            "type = \"scim\"\nurl = \"http://127.0.0.1:{}/v2\"\ntoken_env = \"MUSTER_TEST_SCIM\"\nmax_attempts = 1",
            crate::scim::server::free_port()
        ),
    );
    let prep = [
        on_demand(root, "acme-ok"),
        on_demand(root, "beta-rows"),
        held,
        on_demand(root, "delta-refused"),
        failed,
        on_demand(root, "eta-never"),
    ]
    .concat();
    let inbox = |t: &str| root.join(t).join("inbox/wt_users.csv");
    std::fs::write(root.join("day1.csv"), gen(200, 41)).unwrap();
    std::fs::copy(root.join("day1.csv"), inbox("acme-ok")).unwrap();
    std::fs::copy(root.join("day1.csv"), inbox("gamma-held")).unwrap();
    std::fs::write(inbox("beta-rows"), users_with_bad_emails(120, 42, &[4, 7])).unwrap();
    std::fs::write(inbox("delta-refused"), "who;what\n1;2\n").unwrap();
    std::fs::write(inbox("epsilon-failed"), gen(10, 43)).unwrap();
    std::fs::write(root.join("prep.toml"), &prep).unwrap();
    let muster = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--config"])
            .arg(root.join("prep.toml"))
            .args(["--today", crate::fixtures::TODAY])
            .args(args)
            .env("MUSTER_TEST_SCIM", "t")
            .output()
            .unwrap()
    };
    muster(&[]);
    std::fs::write(inbox("gamma-held"), derive(&root.join("day1.csv"), "0.2")).unwrap();
    let o = muster(&["--tenant", "gamma-held"]);
    assert_eq!(o.status.code(), Some(4), "{}", crate::run::stderr(&o));

    let running = every_second(root, "zeta-running").replace(
        "type = \"jsonl\"\npath = \"zeta-running/outbox.jsonl\"",
        &format!(
            "type = \"scim\"\nurl = \"http://127.0.0.1:{}/v2\"\ntoken_env = \"MUSTER_TEST_SCIM\"\ntimeout_ms = 120000",
            black_hole()
        ),
    );
    std::fs::write(inbox("zeta-running"), gen(10, 44)).unwrap();
    // Filler tenants up to 1,000, never run: the page must stay paged.
    let mut config = format!(
        "[daemon]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"MUSTER_TEST_OPS\"\n{prep}{running}",
        port = 0
    );
    for i in 0..993 {
        config.push_str(&format!(
            "[[tenant]]\nname = \"filler{i:03}\"\nstate = \"filler/{i:03}.redb\"\nschedule = \"0 0 0 1 1 *\"\n\
             [tenant.source]\ntype = \"dir\"\npath = \"filler/{i:03}\"\ncreate = true\n\
             [[tenant.files]]\npattern = \"*.csv\"\nprofile = \"winningtemp-users\"\n\
             [tenant.sink]\ntype = \"jsonl\"\npath = \"filler/{i:03}.jsonl\"\n"
        ));
    }
    let port = crate::scim::server::free_port();
    let config = config.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(root.join("muster.toml"), config).unwrap();
    let d = Daemon::start_with(
        &root.join("muster.toml"),
        &[("MUSTER_TEST_OPS", TOKEN), ("MUSTER_TEST_SCIM", "t")],
    );
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        let base = format!("http://127.0.0.1:{port}");
        until("the endpoint", 30, &d, async || {
            c.goto(&format!("{base}/")).await.is_ok() && count(&c, "#tenants tbody tr").await > 0
        })
        .await;

        // Every state, in words, as a person sees it.
        c.find(Locator::Css("#filter-name"))
            .await
            .unwrap()
            .send_keys("-")
            .await
            .unwrap();
        let state = |t: &'static str| {
            let c = &c;
            async move { text(c, &format!("tr[data-tenant=\"{t}\"] .state")).await }
        };
        until("zeta-running to be running", 30, &d, async || {
            state("zeta-running").await == "running"
        })
        .await;
        for (tenant, words) in [
            ("acme-ok", "ok"),
            ("beta-rows", "rows failed"),
            ("gamma-held", "held"),
            ("delta-refused", "refused"),
            ("epsilon-failed", "failed"),
            ("zeta-running", "running"),
            ("eta-never", "never run"),
        ] {
            assert_eq!(state(tenant).await, words, "{tenant}");
        }
        assert_eq!(
            text(&c, "tr[data-tenant=\"gamma-held\"] td:last-child").await,
            "wt_users.csv"
        );
        screenshot(&c, "tenants.png").await;
        // 1,000 tenants, 50 in the page.
        let name = c.find(Locator::Css("#filter-name")).await.unwrap();
        name.clear().await.unwrap();
        until("the unfiltered list", 10, &d, async || {
            text(&c, "#page-of")
                .await
                .starts_with("Page 1 of 20 · 1000 of 1000")
        })
        .await;
        assert_eq!(count(&c, "#tenants tbody tr").await, 50);
        // The state filter.
        c.find(Locator::Css("#filter-state"))
            .await
            .unwrap()
            .select_by_value("held")
            .await
            .unwrap();
        assert_eq!(count(&c, "#tenants tbody tr").await, 1);
        assert_eq!(
            c.find(Locator::Css("#tenants tbody tr"))
                .await
                .unwrap()
                .attr("data-tenant")
                .await
                .unwrap()
                .as_deref(),
            Some("gamma-held")
        );

        // The held tenant's page: one point per run and series.
        c.find(Locator::Css("tr[data-tenant=\"gamma-held\"] a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the held tenant's chart", 20, &d, async || {
            count(&c, "#chart g[data-series=\"delete\"] circle").await == 2
        })
        .await;
        for series in ["create", "update", "deactivate", "delete", "reject"] {
            assert_eq!(
                count(&c, &format!("#chart g[data-series=\"{series}\"] circle")).await,
                2,
                "{series}"
            );
        }
        assert_eq!(
            count(&c, "#chart circle.held").await,
            5,
            "the held run's points"
        );
        screenshot(&c, "tenant.png").await;

        // Release with the keyboard: the button, a wrong token, then the right one.
        let button = c
            .find(Locator::Css("button[data-release=\"wt_users.csv\"]"))
            .await
            .unwrap();
        button.send_keys(&enter()).await.unwrap();
        until("the release dialog", 10, &d, async || {
            count(&c, "#release-dialog[open]").await == 1
        })
        .await;
        let what = text(&c, "#release-what").await;
        assert!(
            what.contains("deletion") && what.contains("deactivation"),
            "{what}"
        );
        assert!(what.contains("max_delete_ratio"), "{what}");
        let token = c.find(Locator::Css("#release-token")).await.unwrap();
        token.send_keys("wrong").await.unwrap();
        token.send_keys(&enter()).await.unwrap();
        until("the wrong token refused", 10, &d, async || {
            text(&c, "#release-error")
                .await
                .contains("The token was refused")
        })
        .await;
        assert_eq!(count(&c, "#release-dialog[open]").await, 1);
        token.clear().await.unwrap();
        token.send_keys(TOKEN).await.unwrap();
        token.send_keys(&enter()).await.unwrap();
        until("the file released", 10, &d, async || {
            text(&c, "#live").await.contains("wt_users.csv released")
        })
        .await;
        assert_eq!(count(&c, "#release-dialog[open]").await, 0);
        // Run now (the token is kept for the tab): the next run applies it.
        c.find(Locator::Css("#run-now"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the released file applied", 30, &d, async || {
            ["ok", "rows failed"].contains(&text(&c, "h1 .state").await.as_str())
                && count(&c, "#chart g[data-series=\"delete\"] circle").await == 3
        })
        .await;
        assert_eq!(count(&c, "#held").await, 0, "the held file is still listed");

        // A run's results lines, filtered by outcome.
        c.goto(&format!("{base}/#/t/beta-rows")).await.unwrap();
        until("beta-rows's runs", 20, &d, async || {
            count(&c, "#runs a[href^=\"#/t/beta-rows/r/\"]").await == 1
        })
        .await;
        c.find(Locator::Css("#runs a[href^=\"#/t/beta-rows/r/\"]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until("the results", 20, &d, async || {
            text(&c, "#matched").await.starts_with("120 of 120 lines")
        })
        .await;
        c.find(Locator::Css("#filter-outcome"))
            .await
            .unwrap()
            .select_by_value("failed")
            .await
            .unwrap();
        until("the failed lines", 20, &d, async || {
            text(&c, "#matched").await.starts_with("2 of 120 lines")
        })
        .await;
        let rows = text(&c, "#results tbody").await;
        assert!(rows.contains("invalid_email"), "{rows}");
        assert_eq!(count(&c, "#results tbody tr").await, 2);
        let href = c
            .find(Locator::Css("#download"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        assert!(href.ends_with("/files/0/results.csv"), "{href}");
        screenshot(&c, "results.png").await;
        c.close().await.unwrap();
    });
    // Nothing of the page came from elsewhere: the daemon sent its policy.
    let resp = ureq::get(&format!("http://127.0.0.1:{port}/"))
        .call()
        .unwrap();
    let policy = resp
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"));
}
