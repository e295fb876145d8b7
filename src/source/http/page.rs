//! One page of a JSON snapshot (SPEC §10): its records, the value that
//! says where the next page is, and the `Link` header's `rel="next"`.
//! Records are written to the pulled snapshot one a line ([`compact`]),
//! the JSON Lines a JSON profile reads.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

/// The records of a page and the value at its `next` path.
pub(crate) struct Page<'a> {
    pub records: Vec<&'a RawValue>,
    /// The next link or cursor: `None` when the path is missing, `null`
    /// or `""` (the last page).
    pub next: Option<String>,
}

/// Reads a page: the array at dot path `records` (`""`: the page is the
/// array) and, when `next` is given, the string or number at that path.
/// What does not fit is an error saying what the page holds instead.
pub(crate) fn parse<'a>(
    body: &'a [u8],
    records: &str,
    next: Option<&str>,
) -> Result<Page<'a>, String> {
    let whole: &RawValue = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        format!(
            "the page is not JSON ({e}); it starts {:?}",
            start.trim_end()
        )
    })?;
    let list = at_path(whole, records)?.ok_or_else(|| {
        format!("the page has no `{records}` (the `records` path): is this the right API path?")
    })?;
    let records_of = || {
        if records.is_empty() {
            "the page".to_string()
        } else {
            format!("`{records}`")
        }
    };
    let records: Vec<&RawValue> = serde_json::from_str(list.get())
        .map_err(|_| format!("{} is not an array of records", records_of()))?;
    let next = match next {
        None => None,
        Some(path) => match at_path(whole, path)? {
            None => None,
            Some(v) => match v.get().as_bytes().first() {
                Some(b'n') => None,
                Some(b'"') => Some(serde_json::from_str::<String>(v.get()).unwrap_or_default()),
                Some(b'-' | b'0'..=b'9') => Some(v.get().to_string()),
                _ => {
                    return Err(format!(
                        "`{path}` (the next page) is not a link or a cursor"
                    ))
                }
            }
            .filter(|n| !n.is_empty()),
        },
    };
    Ok(Page { records, next })
}

/// The value at dot path `path` of `value` (`""`: `value` itself), or
/// `None` when a key is missing or a value on the way is `null`.
fn at_path<'a>(value: &'a RawValue, path: &str) -> Result<Option<&'a RawValue>, String> {
    let mut at = value;
    if path.is_empty() {
        return Ok(Some(at));
    }
    for key in path.split('.') {
        if at.get().starts_with('n') {
            return Ok(None);
        }
        let object: BTreeMap<String, &RawValue> = serde_json::from_str(at.get())
            .map_err(|_| format!("the page has no object where `{path}` goes through `{key}`"))?;
        match object.get(key) {
            Some(v) => at = v,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// Appends `json` (valid JSON text) without the blanks between its tokens:
/// one record, one line.
pub(crate) fn compact(json: &str, out: &mut Vec<u8>) {
    let (mut in_string, mut escaped) = (false, false);
    for &b in json.as_bytes() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
}

/// The target of the `rel="next"` link of a `Link` header (RFC 8288).
pub(crate) fn link_next(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        let params = &after[..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &after[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_next_are_found_by_path() {
        let body = br#"{"data": [ {"id": "a", "n": [1, 2]}, {"id":"b"} ],
                       "links": {"next": "/people?page=2"}}"#;
        let page = parse(body, "data", Some("links.next")).unwrap();
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.next.as_deref(), Some("/people?page=2"));
        let mut line = Vec::new();
        compact(page.records[0].get(), &mut line);
        assert_eq!(line, br#"{"id":"a","n":[1,2]}"#);

        let last = parse(
            br#"{"data": [], "links": {"next": null}}"#,
            "data",
            Some("links.next"),
        );
        assert_eq!(last.unwrap().next, None);
        let cursor = parse(
            br#"{"meta": {"next": 42}, "x": []}"#,
            "x",
            Some("meta.next"),
        );
        assert_eq!(cursor.unwrap().next.as_deref(), Some("42"));
        assert_eq!(parse(br#"[{"id":1}]"#, "", None).unwrap().records.len(), 1);
    }

    #[test]
    fn a_page_that_does_not_fit_says_what_it_is() {
        let err = |body: &[u8], records: &str| parse(body, records, None).err().unwrap();
        assert!(err(b"<html>502</html>", "data").contains("not JSON"));
        assert!(err(br#"{"error": "x"}"#, "data").contains("has no `data`"));
        assert!(err(br#"{"data": {"a": 1}}"#, "data").contains("not an array"));
        assert!(err(br#"{"data": 3}"#, "data.rows").contains("no object where"));
    }

    #[test]
    fn compacting_keeps_strings_whole() {
        let mut out = Vec::new();
        compact(
            "{ \"a b\" : \"x \\\" \\n y\" ,\n \"c\":[ 1 , true ] }",
            &mut out,
        );
        assert_eq!(out, br#"{"a b":"x \" \n y","c":[1,true]}"#);
    }

    #[test]
    fn the_next_link_header_is_found_among_others() {
        let h = r#"<https://a.example/p?page=1>; rel="prev", <https://a.example/p?page=3>; rel="next last""#;
        assert_eq!(link_next(h).as_deref(), Some("https://a.example/p?page=3"));
        assert_eq!(
            link_next(r#"</p?page=2>;rel=next"#).as_deref(),
            Some("/p?page=2")
        );
        assert_eq!(
            link_next(r#"<https://a.example/p?page=1>; rel="prev""#),
            None
        );
    }
}
