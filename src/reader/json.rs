//! JSON Lines snapshots (SPEC §10): each line one JSON object, the record
//! of one user, group or segment. A JSON profile names its columns by dot
//! paths into the object (`manager.id`); [`JsonColumns::decode`] turns the
//! line the reader read into a [`Record`] holding those values in column
//! order, so everything after the reader — profiles, the plan, the results
//! — treats it as a CSV row.
//!
//! Values: a string is its text; a number or boolean its JSON text as
//! written (`1.50` stays `1.50`); `null` or a missing field is an empty
//! cell; an array of strings (numbers, booleans) is a list, its items
//! joined with the profile's list separator. An object, or an array
//! holding one, is a [`JsonProblem`] for that column: the profile must
//! name a field inside it.
//!
//! The lines are read by the ordinary reader with a delimiter and a quote
//! byte that valid JSON text never holds raw (the control characters US
//! and RS), so each line is one field, lines are cut for parallel reading
//! as any plain file's are, and positions (`line`, `byte`) are the file's.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{Record, RecordProblem};

/// The delimiter and quote bytes a JSON Lines file is read with: control
/// characters JSON text never holds raw.
pub(crate) const LINE_DELIMITER: u8 = 0x1F;
pub(crate) const LINE_QUOTE: u8 = 0x1E;

/// Why a JSON line gives no value for a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonProblem {
    /// The line is not JSON; `at` is the 1-based character where the
    /// parser stopped.
    Syntax { at: usize },
    /// The line is JSON but not an object.
    NotObject,
    /// Column `field`'s path leads to an object (or an array holding
    /// objects or arrays), not a value.
    Object { field: usize },
    /// A part of column `field`'s path before its last is not an object
    /// (`manager.id` where `manager` is text).
    NotParent { field: usize },
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonProblem::Syntax { at } => {
                write!(f, "the line is not valid JSON (stopped at character {at})")
            }
            JsonProblem::NotObject => f.write_str("the line is JSON but not an object"),
            JsonProblem::Object { .. } => f.write_str(
                "an object (or a list holding one), not a value: name a field inside it, as `manager.id`",
            ),
            JsonProblem::NotParent { .. } => {
                f.write_str("the path goes through a value that is not an object")
            }
        }
    }
}

/// The dot paths a JSON profile reads, compiled into a tree walked once
/// per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonColumns {
    root: Node,
    columns: usize,
    list_separator: u8,
    max_field_bytes: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    /// The column whose path ends here.
    column: Option<usize>,
    children: Vec<(String, Node)>,
}

impl Node {
    fn child(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }

    /// The first column under this node (for a problem's column).
    fn first_below(&self) -> usize {
        self.children
            .iter()
            .map(|(_, n)| n.column.unwrap_or(usize::MAX).min(n.first_below()))
            .min()
            .unwrap_or(usize::MAX)
    }
}

impl JsonColumns {
    /// The tree of `paths` (column `i` reads `paths[i]`). A path is keys
    /// joined by `.`; an empty key is an error naming the path.
    pub fn new(
        paths: &[&str],
        list_separator: u8,
        max_field_bytes: usize,
    ) -> Result<JsonColumns, String> {
        let mut root = Node::default();
        for (column, path) in paths.iter().enumerate() {
            let mut node = &mut root;
            for key in path.split('.') {
                if key.is_empty() {
                    return Err(format!("JSON path {path:?} has an empty part"));
                }
                let at = match node.children.iter().position(|(k, _)| k == key) {
                    Some(at) => at,
                    None => {
                        node.children.push((key.to_string(), Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            if node.column.is_some() {
                return Err(format!("JSON path {path:?} is read twice"));
            }
            node.column = Some(column);
        }
        Ok(JsonColumns {
            root,
            columns: paths.len(),
            list_separator,
            max_field_bytes,
        })
    }

    /// Replaces the raw line in `rec` by its values, one field per column.
    /// `line` is scratch the caller keeps from record to record. A line
    /// that gives no values leaves `rec` without fields and with its
    /// [`RecordProblem::Json`]; a value that is not one leaves the others.
    pub(crate) fn decode(&self, rec: &mut Record, line: &mut Vec<u8>) {
        if rec.problem.is_some() {
            // Too large: what was read is not the whole line.
            rec.len = 0;
            rec.bounds.clear();
            rec.quoted.clear();
            return;
        }
        std::mem::swap(line, &mut rec.bytes);
        let raw_len = rec.len;
        (rec.len, rec.flags) = (0, 0);
        rec.bounds.clear();
        rec.quoted.clear();
        let text = &line[..raw_len];
        let mut values: Vec<Option<&RawValue>> = vec![None; self.columns];
        let mut problem = None;
        let mut de = serde_json::Deserializer::from_slice(text);
        let picked = Pick {
            node: &self.root,
            out: &mut values,
            problem: &mut problem,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if let Err(e) = picked {
            rec.problem = Some(RecordProblem::Json(if e.is_data() {
                JsonProblem::NotObject
            } else {
                JsonProblem::Syntax { at: e.column() }
            }));
            return;
        }
        let mut scratch = String::new();
        for (column, value) in values.iter().enumerate() {
            let start = rec.len;
            if let Some(raw) = value {
                if let Err(p) = self.push_value(rec, raw.get(), column, &mut scratch) {
                    problem.get_or_insert(p);
                }
            }
            if rec.len - start > self.max_field_bytes && problem.is_none() {
                rec.problem = Some(RecordProblem::FieldTooLarge {
                    field: column,
                    limit: self.max_field_bytes,
                });
            }
            rec.bounds.push((start, rec.len));
            rec.quoted.push(false);
        }
        if let Some(p) = problem {
            rec.problem = Some(RecordProblem::Json(p));
        }
    }

    /// Appends the text of one JSON value to `rec`.
    fn push_value(
        &self,
        rec: &mut Record,
        raw: &str,
        column: usize,
        scratch: &mut String,
    ) -> Result<(), JsonProblem> {
        match raw.as_bytes().first() {
            Some(b'n') => Ok(()),
            Some(b'"') => {
                push(rec, &unescape(raw));
                Ok(())
            }
            Some(b'{') => Err(JsonProblem::Object { field: column }),
            Some(b'[') => {
                let items: Vec<&RawValue> =
                    serde_json::from_str(raw).map_err(|_| JsonProblem::Object { field: column })?;
                scratch.clear();
                for item in items {
                    let item = item.get();
                    let text = match item.as_bytes().first() {
                        Some(b'n') => continue,
                        Some(b'"') => unescape(item),
                        Some(b'{' | b'[') => return Err(JsonProblem::Object { field: column }),
                        _ => Cow::Borrowed(item),
                    };
                    if text.is_empty() {
                        continue;
                    }
                    if !scratch.is_empty() {
                        scratch.push(self.list_separator as char);
                    }
                    scratch.push_str(&text);
                }
                push(rec, scratch);
                Ok(())
            }
            // A number or a boolean, as written.
            _ => {
                push(rec, raw);
                Ok(())
            }
        }
    }
}

/// The text of a JSON string (already checked by the parser).
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(&raw[1..raw.len() - 1]);
    }
    Cow::Owned(serde_json::from_str::<String>(raw).unwrap_or_default())
}

fn push(rec: &mut Record, text: &str) {
    rec.reserve_bytes(text.len());
    rec.bytes[rec.len..rec.len + text.len()].copy_from_slice(text.as_bytes());
    rec.len += text.len();
}

/// Walks one object, keeping the raw values of the keys `node` names.
struct Pick<'n, 'o, 'a> {
    node: &'n Node,
    out: &'o mut [Option<&'a RawValue>],
    problem: &'o mut Option<JsonProblem>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Pick<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Pick<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let Some(child) = self.node.child(&key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let raw: &'de RawValue = map.next_value()?;
            if let Some(column) = child.column {
                self.out[column] = Some(raw);
            }
            if child.children.is_empty() {
                continue;
            }
            match raw.get().as_bytes().first() {
                Some(b'{') => {
                    let mut de = serde_json::Deserializer::from_str(raw.get());
                    Pick {
                        node: child,
                        out: self.out,
                        problem: self.problem,
                    }
                    .deserialize(&mut de)
                    .map_err(serde::de::Error::custom)?;
                }
                Some(b'n') => {}
                _ => {
                    self.problem.get_or_insert(JsonProblem::NotParent {
                        field: child.first_below(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// An object's key, borrowed from the line when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(paths: &[&str], line: &str) -> (Vec<String>, Option<RecordProblem>) {
        let cols = JsonColumns::new(paths, b';', 64).unwrap();
        let mut rec = Record::new();
        push(&mut rec, line);
        rec.bounds.push((0, rec.len));
        let mut scratch = Vec::new();
        cols.decode(&mut rec, &mut scratch);
        let fields = rec
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect();
        (fields, rec.problem())
    }

    #[test]
    fn values_are_read_by_dot_path() {
        let (fields, problem) = decode(
            &[
                "id",
                "name.first",
                "manager.id",
                "groups",
                "age",
                "active",
                "gone",
            ],
            r#"{"id":"e1","name":{"first":"Ana","last":"X"},"manager":null,"groups":["a","b\u00e9",null,3],"age":1.50,"active":true,"other":{"x":[1]}}"#,
        );
        assert_eq!(problem, None);
        assert_eq!(fields, ["e1", "Ana", "", "a;bé;3", "1.50", "true", ""]);
    }

    #[test]
    fn a_value_that_is_an_object_is_a_problem_of_its_column() {
        let (_, problem) = decode(&["id", "manager"], r#"{"id":"e1","manager":{"id":"m"}}"#);
        assert_eq!(
            problem,
            Some(RecordProblem::Json(JsonProblem::Object { field: 1 }))
        );
        let (_, problem) = decode(&["id", "manager.id"], r#"{"id":"e1","manager":"m"}"#);
        assert_eq!(
            problem,
            Some(RecordProblem::Json(JsonProblem::NotParent { field: 1 }))
        );
    }

    #[test]
    fn a_line_that_is_not_an_object_is_refused_whole() {
        let (fields, problem) = decode(&["id"], r#"{"id":"e1""#);
        assert!(fields.is_empty());
        assert!(matches!(
            problem,
            Some(RecordProblem::Json(JsonProblem::Syntax { .. }))
        ));
        let (_, problem) = decode(&["id"], r#"["e1"]"#);
        assert_eq!(problem, Some(RecordProblem::Json(JsonProblem::NotObject)));
    }

    /// What a path reads from `value`, as the module's doc says.
    fn model(value: &serde_json::Value, path: &str) -> Result<String, ()> {
        use serde_json::Value;
        let mut at = value;
        for key in path.split('.') {
            at = match at {
                Value::Object(map) => match map.get(key) {
                    Some(v) => v,
                    None => return Ok(String::new()),
                },
                Value::Null => return Ok(String::new()),
                _ => return Err(()),
            };
        }
        let text = |v: &Value| match v {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            Value::Number(_) | Value::Bool(_) => Ok(Some(v.to_string())),
            _ => Err(()),
        };
        match at {
            Value::Array(items) => {
                let items: Result<Vec<_>, _> = items.iter().map(text).collect();
                let items = items?.into_iter().flatten().filter(|i| !i.is_empty());
                Ok(items.collect::<Vec<_>>().join(";"))
            }
            v => Ok(text(v)?.unwrap_or_default()),
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let key = prop::sample::select(vec!["a", "b", "c", "d\"e"]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z;é\"\\\n ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone().prop_map(String::from), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Any object, any paths: each column is what the model reads,
        /// or the record carries a problem where the model finds none.
        #[test]
        fn decoding_agrees_with_a_model(
            record in proptest::collection::btree_map(
                proptest::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
                json_value(),
                0..4,
            ),
            paths in proptest::sample::subsequence(
                vec!["a", "b", "c", "a.a", "a.b", "b.c", "c.a.b", "d\"e", "a.d\"e"], 1..6),
        ) {
            let paths: Vec<&str> = paths;
            let value = serde_json::Value::Object(record.into_iter().collect());
            let line = serde_json::to_string(&value).unwrap();
            let cols = JsonColumns::new(&paths, b';', 1 << 20).unwrap();
            let mut rec = Record::new();
            push(&mut rec, &line);
            rec.bounds.push((0, rec.len));
            cols.decode(&mut rec, &mut Vec::new());
            let expected: Vec<Result<String, ()>> = paths.iter().map(|p| model(&value, p)).collect();
            match rec.problem() {
                None => {
                    let got: Vec<String> = rec.iter().map(|f| String::from_utf8(f.to_vec()).unwrap()).collect();
                    prop_assert!(expected.iter().all(|e| e.is_ok()), "a problem not found: {:?}", expected);
                    let expected: Vec<String> = expected.into_iter().map(|e| e.unwrap()).collect();
                    prop_assert_eq!(got, expected);
                }
                Some(RecordProblem::Json(JsonProblem::Object { field } | JsonProblem::NotParent { field })) => {
                    prop_assert!(expected[field].is_err(), "column {} refused, the model reads it", field);
                }
                Some(p) => prop_assert!(false, "{:?}", p),
            }
        }
    }

    #[test]
    fn paths_are_checked() {
        assert!(JsonColumns::new(&["a..b"], b';', 1).is_err());
        assert!(JsonColumns::new(&["a.b", "a.b"], b';', 1).is_err());
        assert!(JsonColumns::new(&["a", "a.b"], b';', 1).is_ok());
    }
}
