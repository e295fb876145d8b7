//! The parser alone: a delimited snapshot read as a stream of records, each
//! with its position, then mapped and validated through a profile — what a
//! service that only needs clean rows takes from muster
//! (`muster = { version = "…", default-features = false }` builds no SSH,
//! TLS or HTTP code).
//!
//! `cargo run --example reader_only [FILE]` reads FILE through the
//! `winningtemp-users` preset (the embedded sample without one); `cargo
//! test` runs it on the sample.

use muster::profile::{MappedRow, Profile};
use muster::reader::{Record, SnapshotReader};

/// A Winningtemp users file: a header, a quoted name with the delimiter in
/// it, a blank line (no record), and a row with a bad e-mail.
const SAMPLE: &str = "\
ID;First;Last;Username;Email;Phone;Title;Birth;Since;Until;Gender;Groups;Admins;Segments;Status;Lang
u1;\"Dupont; Émilie\";Martin;emilie;emilie@example.com;;;;;;;sales,north;;;Active;fr

u2;Mark;Jones;mark;not-an-email;;;;;;;;;;Active;en
";

/// What one record came to: its line, its key, and its problem if any.
#[derive(Debug, PartialEq)]
struct Row {
    line: u64,
    key: Option<String>,
    problem: Option<String>,
}

fn read(input: &[u8]) -> Vec<Row> {
    let profile = Profile::preset("winningtemp-users").expect("a preset");
    // The profile says how to read the file (delimiter, quoting) …
    let opts = profile.reader_options(input);
    let mut reader = SnapshotReader::new(input, opts);
    let mut record = Record::new();
    // … and the header line gives the layout of the columns.
    reader.read_record(&mut record).expect("a readable header");
    let layout = profile.layout(Some(&record)).expect("a header that fits");
    let mut row = MappedRow::new();
    let mut rows = Vec::new();
    // One record buffer and one row buffer, reused for every record.
    while reader.read_record(&mut record).expect("readable records") {
        let mapped = profile.map(&record, &layout, &mut row);
        rows.push(Row {
            line: record.position().line,
            key: row.key_as_read().map(str::to_string),
            problem: mapped
                .err()
                .map(|issue| format!("{}: {}", issue.code, issue.describe(&layout))),
        });
    }
    rows
}

#[cfg_attr(test, allow(dead_code))]
fn main() {
    let input = match std::env::args().nth(1) {
        Some(path) => std::fs::read(&path).expect("a readable file"),
        None => SAMPLE.as_bytes().to_vec(),
    };
    for row in read(&input) {
        let key = row.key.as_deref().unwrap_or("");
        match row.problem {
            None => println!("line {}: {key} ok", row.line),
            Some(problem) => println!("line {}: {key} rejected: {problem}", row.line),
        }
    }
}

#[test]
fn reads_the_sample() {
    let rows = read(SAMPLE.as_bytes());
    assert_eq!(rows.len(), 2, "the blank line is no record: {rows:?}");
    assert_eq!((rows[0].line, rows[0].key.as_deref()), (2, Some("u1")));
    assert_eq!(rows[0].problem, None);
    assert_eq!((rows[1].line, rows[1].key.as_deref()), (4, Some("u2")));
    let problem = rows[1].problem.as_deref().unwrap_or_default();
    assert!(problem.starts_with("invalid_email"), "{problem}");
    main();
}
