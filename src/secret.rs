//! Passwords, keys and tokens: read from an environment variable or a file,
//! never from the config itself, and never shown by `Debug`.

use std::path::{Path, PathBuf};

/// A password, key or token: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reads a secret from the environment variable `env` or the file `file`
/// (at most one given); `what` names it in errors, which never hold it.
/// `rel` resolves a relative file path (against the config's folder).
pub(crate) fn read(
    what: &str,
    env: &Option<String>,
    file: &Option<PathBuf>,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<Secret>, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err(format!("give {what}_env or {what}_file, not both")),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err(format!(
                "{what}_env names the environment variable {var:?}, which is not set"
            )),
        },
        (None, Some(f)) => {
            let f = rel(f);
            std::fs::read_to_string(&f)
                .map(|s| Some(Secret(s.trim_end_matches(['\r', '\n']).to_string())))
                .map_err(|e| format!("{what}_file {}: {e}", f.display()))
        }
        (None, None) => Ok(None),
    }
}

/// Where the user info of `url` (`user:password@`) is, if it has one: the
/// bytes between `://` and the last `@` of the authority.
fn user_info(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |e| start + e);
    let at = url[start..authority_end].rfind('@')?;
    Some(start..start + at)
}

/// Whether `url` carries a user name or password (`user:password@host`).
pub fn has_user_info(url: &str) -> bool {
    user_info(url).is_some()
}

/// `url` as messages may show it: its user info, if any, as `***`.
pub fn redact_url(url: &str) -> String {
    match user_info(url) {
        Some(r) => format!("{}***{}", &url[..r.start], &url[r.end..]),
        None => url.to_string(),
    }
}

/// `url` with its password, if any, left out and its user kept
/// (`postgres://muster@db/m`): for messages naming a database login.
pub fn without_password(url: &str) -> String {
    match user_info(url) {
        Some(r) => {
            let user = url[r.clone()].split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..r.start], &url[r.end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_found_and_hidden() {
        let cases = [
            ("http://alice:PW@host/v2", true, "http://***@host/v2"),
            (
                "https://alice@host:8443/scim",
                true,
                "https://***@host:8443/scim",
            ),
            (
                "https://a:p@ss@host/v2?x=@y",
                true,
                "https://***@host/v2?x=@y",
            ),
            (
                "https://host/v2?user=a@b",
                false,
                "https://host/v2?user=a@b",
            ),
            ("https://host/v2", false, "https://host/v2"),
            ("not a url", false, "not a url"),
        ];
        for (url, has, shown) in cases {
            assert_eq!(has_user_info(url), has, "{url}");
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
