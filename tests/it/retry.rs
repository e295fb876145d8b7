//! The retry file (SPEC §11, `retry_file`): the rows a run rejected or
//! failed, byte for byte as the client sent them, after the header line,
//! in `processed/<stem>.<timestamp>.retry.csv`; none when nothing failed.

use crate::run::{gen, stderr, Tenant};

/// `record` with its e-mail (the 5th field) made invalid.
fn bad_email(record: &str) -> String {
    let mut fields: Vec<&str> = record.split(';').collect();
    fields[4] = "not-an-address";
    fields.join(";")
}

#[test]
fn the_rows_that_failed_come_back_as_they_were_in_a_retry_file() {
    let t = Tenant::new(100);
    let text = String::from_utf8(gen(30, 61)).unwrap();
    // Records without quotes, so a split on `;` finds their fields.
    let mut records: Vec<String> = text
        .lines()
        .filter(|l| !l.contains('"'))
        .map(str::to_string)
        .collect();
    // A rejected row whose quoted title runs over two lines; another one;
    // and the last record, rejected, with no line break after it.
    let mut fields: Vec<String> = bad_email(&records[3])
        .split(';')
        .map(String::from)
        .collect();
    fields[6] = "\"Nurse;\r\nnight shift\"".into();
    records[3] = fields.join(";");
    records[9] = bad_email(&records[9]);
    let last = records.len() - 1;
    records[last] = bad_email(&records[last]);
    let file = records.join("\r\n");
    t.drop_file("wt_users.csv", file.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let names = t.processed();
    let retry = names
        .iter()
        .find(|n| n.ends_with(".retry.csv"))
        .unwrap_or_else(|| panic!("no retry file in {names:?}"));
    let results = names.iter().find(|n| n.ends_with(".results.csv")).unwrap();
    assert_eq!(
        retry.trim_end_matches(".retry.csv"),
        results.trim_end_matches(".results.csv"),
        "the retry file is named like the results"
    );
    let got = std::fs::read_to_string(t.path("inbox/processed").join(retry)).unwrap();
    let want = format!(
        "{}\r\n{}\r\n{}\r\n{}\r\n",
        records[0], records[3], records[9], records[last]
    );
    assert_eq!(got, want);
    // The client fixes the rows and drops that file back as it is named:
    // its rows are applied, nobody missing from it is deleted, and it
    // leaves no retry file of its own.
    let fixed = want
        .split("not-an-address")
        .enumerate()
        .map(|(i, part)| match i {
            0 => part.to_string(),
            i => format!("fixed{i}@example.com{part}"),
        })
        .collect::<String>();
    t.drop_file(retry, fixed.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let outbox = std::fs::read_to_string(t.path("outbox.jsonl")).unwrap();
    let day2: Vec<&str> = outbox.lines().filter(|l| l.contains("fixed")).collect();
    assert_eq!(day2.len(), 3, "{outbox}");
    assert!(day2.iter().all(|l| l.contains("\"action\":\"create\"")));
    assert!(!outbox.contains("\"action\":\"delete\""), "{outbox}");
    let names = t.processed();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".retry.csv")).count(),
        1,
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(retry.trim_end_matches(".csv")) && n.ends_with("Z.csv")),
        "the retry file applied is in processed/: {names:?}"
    );
}

/// A few failed rows in a bigger file are each read alone from where they
/// start (many are read in one pass, above): the same bytes either way.
#[test]
fn a_few_failed_rows_of_a_big_file_come_back_as_they_were() {
    let t = Tenant::new(1000);
    let text = String::from_utf8(gen(3000, 62)).unwrap();
    let mut records: Vec<String> = text.lines().map(str::to_string).collect();
    let bad = [
        (1..records.len())
            .find(|&i| !records[i].contains('"'))
            .unwrap(),
        (2500..records.len())
            .find(|&i| !records[i].contains('"'))
            .unwrap(),
    ];
    for &i in &bad {
        records[i] = bad_email(&records[i]);
    }
    let file = records.join("\n") + "\n";
    assert!(
        file.len() > 2 * 64 * 1024,
        "the file should be sparse in failures"
    );
    t.drop_file("wt_users.csv", file.as_bytes());
    let o = t.run(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let retry = t
        .processed()
        .into_iter()
        .find(|n| n.ends_with(".retry.csv"))
        .unwrap();
    let got = std::fs::read_to_string(t.path("inbox/processed").join(retry)).unwrap();
    assert_eq!(
        got,
        format!("{}\n{}\n{}\n", records[0], records[bad[0]], records[bad[1]])
    );
}
