//! A real SCIM server for the tests: `scim2-server` from PyPI, which
//! `scripts/test.sh` installs into `target/scim-venv`, started on a free
//! loopback port with muster's extension schemas and stopped on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub const TOKEN: &str = "muster-test-token-5f1c9a";

/// The scim2-server program: `MUSTER_SCIM2_SERVER`, or the one
/// `scripts/test.sh` installs.
fn program() -> PathBuf {
    let path = std::env::var_os("MUSTER_SCIM2_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/scim-venv/bin/scim2-server")
        });
    assert!(
        path.is_file(),
        "{} is missing: run the tests with scripts/test.sh, which installs scim2-server",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ScimServer {
    child: Child,
    pub port: u16,
}

impl ScimServer {
    pub fn start() -> ScimServer {
        let port = free_port();
        let scim = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scim");
        let child = Command::new(program())
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", TOKEN])
            .arg("--schema")
            .arg(scim.join("schemas.json"))
            .arg("--resource-type")
            .arg(scim.join("resource-types.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = ScimServer { child, port };
        let started = Instant::now();
        loop {
            if let Ok(r) = server.get("/ServiceProviderConfig") {
                if r["bulk"]["supported"] == true {
                    return server;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "scim2-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    fn get(&self, path: &str) -> Result<Json, String> {
        let mut resp = ureq::get(format!("{}{path}", self.url()))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .map_err(|e| e.to_string())?;
        resp.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_json()
            .map_err(|e| e.to_string())
    }

    /// Every resource of an endpoint (`/Users`, `/Groups`), page by page.
    pub fn list(&self, endpoint: &str) -> Vec<Json> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let page = self
                .get(&format!("{endpoint}?startIndex={start}&count=1000"))
                .unwrap();
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap() as usize;
            start += items.len();
            let done = items.is_empty() || start > total;
            out.extend(items);
            if done {
                return out;
            }
        }
    }

    /// Deletes every user and group.
    pub fn clear(&self) {
        for endpoint in ["/Users", "/Groups"] {
            for r in self.list(endpoint) {
                let id = r["id"].as_str().unwrap();
                ureq::delete(format!("{}{endpoint}/{id}", self.url()))
                    .header("Authorization", format!("Bearer {TOKEN}"))
                    .call()
                    .unwrap();
            }
        }
    }

    /// Creates a user directly, as an LMS admin would.
    pub fn create_user(&self, user_name: &str, email: &str) -> String {
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "emails": [{"value": email, "primary": true}],
        });
        let mut resp = ureq::post(format!("{}/Users", self.url()))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/scim+json")
            .send_json(&body)
            .unwrap();
        let v: Json = resp.body_mut().read_json().unwrap();
        v["id"].as_str().unwrap().to_string()
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
