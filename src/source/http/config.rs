//! `[tenant.source] type = "http"` as written, and checked: the HR API the
//! snapshots are pulled from (SPEC §10), its credentials, and the local
//! archive that stands for `processed/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// `[tenant.source]` with `type = "http"`, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpFile {
    /// The API's base URL; each file's `path` is relative to it. Required.
    base_url: String,
    /// The local folder of the pulled snapshots, their results and
    /// summaries (the `processed/` of an API). Required.
    archive: PathBuf,
    /// How muster signs in. Default: no credentials.
    #[serde(default)]
    auth: Option<AuthFile>,
    /// Seconds a request may take, its whole body included. Default 300.
    #[serde(default = "default_timeout")]
    timeout_s: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
enum AuthFile {
    Bearer {
        token_env: Option<String>,
        token_file: Option<PathBuf>,
    },
    Basic {
        user: String,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
    },
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret_env: Option<String>,
        client_secret_file: Option<PathBuf>,
        scope: Option<String>,
    },
}

fn default_timeout() -> u64 {
    300
}

/// How muster signs in to the API.
#[derive(Clone, Debug)]
pub enum HttpAuth {
    None,
    Bearer(Secret),
    Basic {
        user: String,
        password: Secret,
    },
    /// OAuth2 client credentials (RFC 6749 §4.4): a token fetched from
    /// `token_url`, kept until it expires, fetched again on a 401.
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        scope: Option<String>,
    },
}

/// One snapshot the API serves: its name (`users`: the archive's
/// `users.<timestamp>.csv`) and its path under the base URL.
#[derive(Clone, Debug)]
pub struct HttpSnapshot {
    pub name: String,
    pub path: String,
}

/// An HTTP source, checked.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub base_url: String,
    pub archive: PathBuf,
    pub auth: HttpAuth,
    pub timeout_s: u64,
    /// Filled from the tenant's `[[tenant.files]]`.
    pub snapshots: Vec<HttpSnapshot>,
}

impl HttpConfig {
    /// `name`'s file in the pickup folder: the name the tenant's file
    /// pattern matches.
    pub fn file_name(name: &str) -> String {
        format!("{name}.csv")
    }
}

impl HttpFile {
    /// Checks every setting and reads the secrets.
    pub(crate) fn validate(&self, rel: &dyn Fn(&Path) -> PathBuf) -> Result<HttpConfig, String> {
        let url = self.base_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("base_url {url:?} is not an http(s) URL"));
        }
        if crate::secret::has_user_info(url) {
            return Err("base_url must not carry a user or password: use `auth`".into());
        }
        let auth = match &self.auth {
            None => HttpAuth::None,
            Some(AuthFile::Bearer {
                token_env,
                token_file,
            }) => HttpAuth::Bearer(
                crate::secret::read("token", token_env, token_file, rel)?
                    .ok_or("auth type \"bearer\" needs token_env or token_file")?,
            ),
            Some(AuthFile::Basic {
                user,
                password_env,
                password_file,
            }) => HttpAuth::Basic {
                user: user.clone(),
                password: crate::secret::read("password", password_env, password_file, rel)?
                    .ok_or("auth type \"basic\" needs password_env or password_file")?,
            },
            Some(AuthFile::Oauth2 {
                token_url,
                client_id,
                client_secret_env,
                client_secret_file,
                scope,
            }) => {
                if !(token_url.starts_with("https://")
                    || token_url.starts_with("http://") && loopback(token_url))
                {
                    return Err(format!(
                        "auth token_url {token_url:?} must be https (the client secret crosses it)"
                    ));
                }
                HttpAuth::OAuth2 {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: crate::secret::read(
                        "client_secret",
                        client_secret_env,
                        client_secret_file,
                        rel,
                    )?
                    .ok_or("auth type \"oauth2\" needs client_secret_env or client_secret_file")?,
                    scope: scope.clone(),
                }
            }
        };
        if !matches!(auth, HttpAuth::None) && url.starts_with("http://") && !loopback(url) {
            return Err(format!(
                "base_url {url:?} is plain http: the credentials would cross the network in clear (use https)"
            ));
        }
        if self.timeout_s == 0 {
            return Err("timeout_s must be at least 1".into());
        }
        Ok(HttpConfig {
            base_url: url.to_string(),
            archive: rel(&self.archive),
            auth,
            timeout_s: self.timeout_s,
            snapshots: Vec::new(),
        })
    }
}

/// Whether a plain-http URL's host is this machine.
fn loopback(url: &str) -> bool {
    let rest = url.trim_start_matches("http://");
    if rest.starts_with("[::1]") {
        return true;
    }
    matches!(
        rest.split(['/', ':']).next(),
        Some("127.0.0.1" | "localhost")
    )
}
