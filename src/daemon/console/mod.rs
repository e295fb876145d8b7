//! The console (SPEC §8, `GET /`): a page for people, served from the
//! binary. Three files, compiled in: the page, its style and its script,
//! which reads the same JSON API as scripts do and draws the run chart as
//! SVG itself. Nothing is fetched from outside the daemon (the page's
//! Content-Security-Policy says so to the browser too).

/// A console file by its path: its content type and its bytes.
pub(super) fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" => Some(("text/html; charset=utf-8", include_str!("index.html"))),
        "/console.js" => Some(("text/javascript; charset=utf-8", include_str!("console.js"))),
        "/console.css" => Some(("text/css; charset=utf-8", include_str!("console.css"))),
        _ => None,
    }
}

/// What the browser may load for the console: its own files, and its
/// API, only.
pub(super) const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";
