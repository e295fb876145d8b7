//! Profiles: the presets, the TOML format, and what a row maps to.

use muster::profile::MappedRow;
use muster::profile::{Cell, Profile, PRESETS};
use muster::reader::Record;
use muster::snapshot::Snapshot;

/// Maps the first record of `text` (after its header, if any).
fn map_row(profile: &Profile, text: &str) -> Result<MappedRow, String> {
    let mut snapshot = Snapshot::open(profile, text.as_bytes()).map_err(|e| e.to_string())?;
    let mut rec = Record::new();
    assert!(snapshot.read_record(&mut rec).unwrap());
    let mut row = MappedRow::new();
    profile
        .map(&rec, snapshot.layout(), &mut row)
        .map_err(|e| format!("{}: {}", e.code, e.describe(snapshot.layout())))?;
    Ok(row)
}

fn map_one(profile: &Profile, text: &str) -> Result<Vec<Option<String>>, String> {
    let row = map_row(profile, text)?;
    Ok((0..profile.slots.len())
        .map(|s| row.get(s).map(str::to_string))
        .collect())
}

fn value(profile: &Profile, row: &[Option<String>], field: &str) -> Option<String> {
    let slot = profile
        .slots
        .iter()
        .position(|s| s.field.to_string() == field)
        .unwrap();
    row[slot].clone()
}

#[test]
fn every_preset_compiles_and_its_shipped_toml_is_the_same_profile() {
    for (name, text) in PRESETS {
        let p = Profile::preset(name).unwrap_or_else(|| panic!("{name} does not compile"));
        let path = format!("{}/profiles/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(&std::fs::read_to_string(&path).unwrap(), text);
        let from_file = Profile::load(&path).unwrap();
        assert_eq!(format!("{:?}", from_file.slots), format!("{:?}", p.slots));
    }
}

#[test]
fn values_are_normalised() {
    let p = Profile::preset("mobietrain").unwrap();
    let row = map_one(
        &p,
        "  E1 ,Émilie,Dupont, Emilie.DUPONT@Acme.Example ,,\" Nurse \",b; a ;b;;c,fr,\n",
    )
    .unwrap();
    assert_eq!(
        value(&p, &row, "external_id").as_deref(),
        Some("E1"),
        "unquoted values are trimmed"
    );
    assert_eq!(
        value(&p, &row, "email").as_deref(),
        Some("emilie.dupont@acme.example")
    );
    assert_eq!(
        value(&p, &row, "title").as_deref(),
        Some(" Nurse "),
        "quoted values keep their spaces"
    );
    assert_eq!(
        value(&p, &row, "groups").as_deref(),
        Some("b;a;c"),
        "lists: trimmed, no empties, no duplicates, first order"
    );
    assert_eq!(value(&p, &row, "phone"), None);
}

#[test]
fn dates_in_other_formats_are_stored_as_iso() {
    let toml = r#"
object = "user"
columns = ["external_id", "first_name", "last_name", "birth_date"]
date_formats = ["%d/%m/%Y"]
"#;
    let p = Profile::from_toml("t", toml).unwrap();
    let row = map_one(&p, "1,A,B,07/03/1990\n").unwrap();
    assert_eq!(value(&p, &row, "birth_date").as_deref(), Some("1990-03-07"));
    assert!(map_one(&p, "1,A,B,1990-03-07\n")
        .unwrap_err()
        .starts_with("invalid_date"));
}

#[test]
fn by_name_headers_ignore_case_spaces_and_unknown_columns() {
    let p = Profile::preset("lucca-360learning").unwrap();
    let row = map_one(
        &p,
        "Extra;LAST NAME;First Name;E-Mail;Email;UNIQUEID\nx;Roux;Amélie;?;a.roux@x.example;42\n",
    )
    .unwrap();
    assert_eq!(value(&p, &row, "external_id").as_deref(), Some("42"));
    assert_eq!(value(&p, &row, "last_name").as_deref(), Some("Roux"));
    assert_eq!(
        value(&p, &row, "status"),
        None,
        "an absent status column says nothing"
    );
}

#[test]
fn profile_errors_name_what_is_wrong() {
    let cases = [
        ("object = \"user\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\nfoo = 1\n", "unknown field `foo`"),
        ("object = \"user\"\ncolumns = [\"external_id\", \"first_name\", \"nom\"]\n", "unknown user field `nom`"),
        ("object = \"user\"\ncolumns = [\"external_id\", \"first_name\"]\n", "field `last_name` is not in `columns`"),
        ("object = \"group\"\ncolumns = [\"external_id\", \"name\"]\ndate_formats = [\"%d/%m\"]\n", "must name the year"),
        ("object = \"user\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\ntime_zone = \"Mars/Olympus\"\n", "time_zone"),
        ("object = \"user\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\nencoding_fallback = \"latin-9\"\n", "windows-1252"),
        ("object = \"user\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\n[safety]\nmax_delete_ratio = 2.0\n", "max_delete_ratio"),
        ("object = \"user\"\nformat = \"json\"\nheader = \"name\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\n", "`header` is for CSV files"),
        ("object = \"user\"\nformat = \"json\"\ndelimiter = \";\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\n", "`delimiter` is for CSV files"),
        ("object = \"user\"\nformat = \"json\"\ncolumns = [\"external_id\", \"-\", \"first_name\", \"last_name\"]\n", "columns[1]: a JSON profile names the fields it reads"),
        ("object = \"user\"\nformat = \"json\"\ncolumns = [\"external_id\", { field = \"first_name\", name = \"n\", aliases = [\"m\"] }, \"last_name\"]\n", "`aliases` and `optional` are for CSV headers"),
        ("object = \"user\"\nformat = \"json\"\ncolumns = [\"external_id\", { field = \"first_name\", name = \"name..first\" }, \"last_name\"]\n", "JSON path \"name..first\" has an empty part"),
        ("object = \"user\"\nformat = \"xml\"\ncolumns = [\"external_id\", \"first_name\", \"last_name\"]\n", "unknown variant `xml`"),
    ];
    for (toml, expected) in cases {
        let err = Profile::from_toml("t", toml).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
    }
}

#[test]
fn empty_cells_and_absent_columns_differ() {
    let p = Profile::preset("lucca-360learning").unwrap();
    let row = map_row(
        &p,
        "uniqueId,email,firstName,lastName,title\n1,a@x.example,A,B,\n",
    )
    .unwrap();
    let slot = |f: &str| {
        p.slots
            .iter()
            .position(|s| s.field.to_string() == f)
            .unwrap()
    };
    assert_eq!(row.cell(slot("title")), Cell::Empty);
    assert_eq!(row.cell(slot("language")), Cell::Absent);
}

#[test]
fn email_syntax_is_local_at_domain_with_a_dot_and_no_spaces() {
    use muster::profile::is_valid_email;
    for ok in [
        "a@b.co",
        "first.last+tag@sub.example.org",
        "ÉMILIE@exämple.be",
        "x@a.b",
    ] {
        assert!(is_valid_email(ok), "{ok} should be valid");
    }
    for bad in [
        "",
        "a",
        "@b.co",
        "a@",
        "a@b",
        "a@.bc",
        "a@bc.",
        "a@b..c",
        "a@@b.c",
        "a@b@c.d",
        "a b@c.d",
        "a@b.c ",
        "a\t@b.c",
        "a@b\u{a0}c.d",
    ] {
        assert!(!is_valid_email(bad), "{bad:?} should be invalid");
    }
}
