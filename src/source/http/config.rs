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
        user: Option<String>,
        /// An API key that is the user name (a BambooHR-style key).
        user_env: Option<String>,
        user_file: Option<PathBuf>,
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
    /// HTTP Basic. The user is a secret too: some APIs take a key as
    /// the user name.
    Basic {
        user: Secret,
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
/// `users.<timestamp>.csv`), its path under the base URL, and how its
/// body is read.
#[derive(Clone, Debug)]
pub struct HttpSnapshot {
    pub name: String,
    pub path: String,
    pub body: Body,
}

/// What an API's answer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The body is the CSV file, in one request.
    Csv,
    /// JSON pages: the records are the array at dot path `records` of
    /// each page (`""`: the page is the array), pulled page after page.
    Json { records: String, paging: Paging },
}

/// How the pages of a JSON snapshot follow each other (SPEC §10).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum Paging {
    /// One page.
    None,
    /// The next page's URL is the string at dot path `next` of the body
    /// (absolute, or relative to the page's URL); none, `null` or `""`
    /// on the last page.
    NextLink { next: String },
    /// The next page's URL is the `Link` header's `rel="next"` (RFC 8288).
    LinkHeader,
    /// The next page is the first page's URL with `param` set to the value
    /// at dot path `next` of the body; none, `null` or `""` on the last.
    Cursor { param: String, next: String },
    /// Pages of `limit` records: `offset_param` counts the records before
    /// the page; a page with fewer than `limit` records is the last.
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
    },
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
    /// pattern matches (`users.csv`; `users.jsonl` for JSON pages, which
    /// are kept one record a line).
    pub fn file_name(name: &str, body: &Body) -> String {
        match body {
            Body::Csv => format!("{name}.csv"),
            Body::Json { .. } => format!("{name}.jsonl"),
        }
    }
}

impl Body {
    /// The body of a `[[tenant.files]]` entry of an http source, from its
    /// `format`, `records` and `paging`.
    pub(crate) fn from_file(
        format: Option<&str>,
        records: Option<&str>,
        paging: Option<&Paging>,
    ) -> Result<Body, String> {
        match format {
            None | Some("csv") => {
                if records.is_some() || paging.is_some() {
                    return Err(
                        "`records` and `paging` are for format = \"json\" (a CSV body is the file)"
                            .into(),
                    );
                }
                Ok(Body::Csv)
            }
            Some("json") => {
                let records = records.unwrap_or_default().to_string();
                if records.split('.').any(str::is_empty) && !records.is_empty() {
                    return Err(format!("records {records:?}: a dot path has no empty part"));
                }
                let paging = paging.cloned().unwrap_or(Paging::None);
                match &paging {
                    Paging::NextLink { next } | Paging::Cursor { next, .. }
                        if next.is_empty() || next.split('.').any(str::is_empty) =>
                    {
                        return Err(format!("paging next {next:?}: a dot path into the body"));
                    }
                    Paging::Cursor { param, .. } if param.is_empty() => {
                        return Err("paging param: the query parameter the cursor goes in".into());
                    }
                    Paging::Offset {
                        offset_param,
                        limit_param,
                        limit,
                    } if offset_param.is_empty() || limit_param.is_empty() || *limit == 0 => {
                        return Err(
                            "paging offset: offset_param, limit_param and a limit of at least 1"
                                .into(),
                        );
                    }
                    _ => {}
                }
                Ok(Body::Json { records, paging })
            }
            Some(other) => Err(format!("format {other:?}: \"csv\" or \"json\"")),
        }
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
                user_env,
                user_file,
                password_env,
                password_file,
            }) => {
                let key = crate::secret::read("user", user_env, user_file, rel)?;
                let password = crate::secret::read("password", password_env, password_file, rel)?;
                match (user, key, password) {
                    (Some(user), None, Some(password)) => HttpAuth::Basic {
                        user: Secret::new(user.clone()),
                        password,
                    },
                    (Some(_), None, None) => {
                        return Err("auth type \"basic\" needs password_env or password_file".into())
                    }
                    // A key as the user name: the password is `x` unless given.
                    (None, Some(key), password) => HttpAuth::Basic {
                        user: key,
                        password: password.unwrap_or_else(|| Secret::new("x".into())),
                    },
                    (None, None, _) => {
                        return Err("auth type \"basic\" needs user (or user_env, user_file)".into())
                    }
                    (Some(_), Some(_), _) => {
                        return Err("give user, or user_env / user_file, not both".into())
                    }
                }
            }
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
