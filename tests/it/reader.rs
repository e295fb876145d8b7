//! The streaming reader against two oracles: the records the test meant to
//! write, and the `csv` crate reading the same bytes.

use std::io::{self, Read};

use muster::reader::{
    ChunkOptions, Position, ReaderOptions, Record, RecordProblem, SnapshotReader,
};
use proptest::prelude::*;

/// A `Read` that hands out the input in the given chunk sizes, to cross
/// every buffer boundary.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Ok(0);
        }
        let want = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn read_all<R: Read>(
    rdr: R,
    opts: ReaderOptions,
) -> Vec<(Position, Option<RecordProblem>, Vec<String>)> {
    let mut rdr = SnapshotReader::new(rdr, opts);
    let mut rec = Record::new();
    let mut out = Vec::new();
    while rdr.read_record(&mut rec).unwrap() {
        let fields = rec
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        out.push((rec.position(), rec.problem(), fields));
    }
    out
}

fn fields_of(data: &[u8]) -> Vec<Vec<String>> {
    read_all(data, ReaderOptions::default())
        .into_iter()
        .map(|r| r.2)
        .collect()
}

fn field_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'e'),
            1 => Just(','),
            1 => Just('"'),
            1 => Just('\n'),
            1 => Just('\r'),
            1 => Just(' '),
            1 => Just('é'),
        ],
        0..8,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

#[derive(Debug, Clone)]
struct Doc {
    records: Vec<Vec<String>>,
    quote_always: Vec<bool>,
    endings: Vec<u8>,
    blanks: Vec<u8>,
    final_terminator: bool,
    bom: bool,
}

fn doc_strategy() -> impl Strategy<Value = Doc> {
    proptest::collection::vec(proptest::collection::vec(field_strategy(), 1..6), 0..12)
        .prop_map(|mut records| {
            // A lone blank field would be a blank line, which is no record.
            for rec in &mut records {
                if rec.len() == 1 && rec[0].trim_matches([' ', '\t']).is_empty() {
                    rec[0].push('a');
                }
            }
            records
        })
        .prop_flat_map(|records| {
            let n = records.len();
            (
                Just(records),
                proptest::collection::vec(any::<bool>(), n * 6 + 1),
                proptest::collection::vec(0u8..3, n + 1),
                proptest::collection::vec(0u8..6, n + 1),
                any::<bool>(),
                any::<bool>(),
            )
        })
        .prop_map(
            |(records, quote_always, endings, blanks, final_terminator, bom)| Doc {
                records,
                quote_always,
                endings,
                blanks,
                final_terminator,
                bom,
            },
        )
}

fn ending(kind: u8) -> &'static str {
    match kind {
        0 => "\n",
        1 => "\r\n",
        _ => "\r",
    }
}

fn line_breaks(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\r' || (c == b'\n' && (i == 0 || b[i - 1] != b'\r')) {
            n += 1;
        }
    }
    n
}

/// Writes the document and returns the bytes and the line each record starts on.
fn render(doc: &Doc) -> (Vec<u8>, Vec<u64>) {
    let mut out = String::new();
    if doc.bom {
        out.push('\u{feff}');
    }
    let mut lines = Vec::new();
    let mut line = 1;
    for (r, rec) in doc.records.iter().enumerate() {
        // Blank lines before the record: empty or only spaces.
        for _ in 0..(doc.blanks[r] / 3) {
            let blank = if doc.blanks[r].is_multiple_of(2) {
                ""
            } else {
                "  "
            };
            out.push_str(blank);
            out.push_str(ending(doc.endings[r]));
            line += 1;
        }
        lines.push(line);
        let mut text = String::new();
        for (i, f) in rec.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            let must = f.contains([',', '"', '\n', '\r']);
            if must || doc.quote_always[(r * 6 + i) % doc.quote_always.len()] {
                text.push('"');
                text.push_str(&f.replace('"', "\"\""));
                text.push('"');
            } else {
                text.push_str(f);
            }
        }
        line += line_breaks(&text);
        out.push_str(&text);
        if r + 1 < doc.records.len() || doc.final_terminator {
            out.push_str(ending(doc.endings[r + 1]));
            line += 1;
        }
    }
    (out.into_bytes(), lines)
}

fn csv_crate_fields(data: &[u8]) -> Vec<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    rdr.byte_records()
        .map(|r| {
            r.unwrap()
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect::<Vec<_>>()
        })
        // csv yields a whitespace-only line as a record; we skip it as blank.
        .filter(|r: &Vec<String>| {
            !(r.len() == 1 && !r[0].is_empty() && r[0].trim_matches([' ', '\t']).is_empty())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 512 } else { 4096 }))]

    #[test]
    fn reader_matches_intent_and_csv_crate(doc in doc_strategy(), sizes in proptest::collection::vec(1usize..40, 1..8), buffer in 64usize..200) {
        let (data, lines) = render(&doc);
        let opts = ReaderOptions { buffer_bytes: buffer, ..ReaderOptions::default() };
        let got = read_all(Chunked { data: &data, sizes, i: 0 }, opts);
        let fields: Vec<Vec<String>> = got.iter().map(|r| r.2.clone()).collect();
        prop_assert_eq!(&fields, &doc.records);
        prop_assert_eq!(&fields, &csv_crate_fields(&data));
        let got_lines: Vec<u64> = got.iter().map(|r| r.0.line).collect();
        prop_assert_eq!(got_lines, lines);
        for (i, r) in got.iter().enumerate() {
            prop_assert_eq!(r.0.record, i as u64);
            prop_assert_eq!(r.1, None);
        }
    }

    #[test]
    fn fuzz_body_holds_on_random_bytes(data in proptest::collection::vec(prop_oneof![
        Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'a'), Just(b'b'), any::<u8>()
    ], 0..300), buffer in 64usize..128) {
        let opts = ReaderOptions { buffer_bytes: buffer, max_record_bytes: 100, max_field_bytes: 50, ..ReaderOptions::default() };
        muster::testing::reader_roundtrip(&data, &opts);
    }

    #[test]
    fn fuzz_body_holds_on_rendered_documents(doc in doc_strategy()) {
        let (data, _) = render(&doc);
        muster::testing::reader_roundtrip(&data, &ReaderOptions::default());
    }
}

#[test]
fn bom_crlf_cr_and_blank_lines() {
    let data = b"\xEF\xBB\xBFa,b\r\n\r\n   \r\nc,d\re,f\n\n\t\ng,h";
    let got = read_all(&data[..], ReaderOptions::default());
    let lines: Vec<u64> = got.iter().map(|r| r.0.line).collect();
    assert_eq!(lines, vec![1, 4, 5, 8]);
    assert_eq!(got[0].2, vec!["a", "b"]);
    assert_eq!(got[3].2, vec!["g", "h"]);
    assert_eq!(got[0].0.byte, 3, "the BOM counts as bytes of the input");
}

#[test]
fn quoted_newlines_keep_the_start_line() {
    let data = b"1,\"multi\nline\r\nnote\",x\n2,\"a \"\"quoted\"\" word\",y\n";
    let got = read_all(&data[..], ReaderOptions::default());
    assert_eq!(got[0].2, vec!["1", "multi\nline\r\nnote", "x"]);
    assert_eq!(got[0].0.line, 1);
    assert_eq!(got[1].2, vec!["2", "a \"quoted\" word", "y"]);
    assert_eq!(got[1].0.line, 4);
}

#[test]
fn stray_quote_in_unquoted_field_is_literal() {
    assert_eq!(fields_of(b"O\"Brien,x\n"), vec![vec!["O\"Brien", "x"]]);
}

#[test]
fn trailing_delimiter_gives_an_empty_last_field() {
    assert_eq!(fields_of(b"a;b;\n"), vec![vec!["a;b;"]]);
    let opts = ReaderOptions {
        delimiter: b';',
        ..ReaderOptions::default()
    };
    let got = read_all(&b"a;b;\n"[..], opts);
    assert_eq!(got[0].2, vec!["a", "b", ""]);
}

#[test]
fn unterminated_quote_is_reported_once_at_its_start_line() {
    let data = b"a,b\nc,\"open\nd,e\nf,g\n";
    let got = read_all(&data[..], ReaderOptions::default());
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].0.line, 2);
    assert_eq!(got[1].1, Some(RecordProblem::UnterminatedQuote));
    assert_eq!(got[1].2[0], "c", "fields before the open quote are kept");
}

#[test]
fn closed_quote_at_end_of_input_without_newline_is_fine() {
    let got = read_all(&b"a,\"b\""[..], ReaderOptions::default());
    assert_eq!(got[0].1, None);
    assert_eq!(got[0].2, vec!["a", "b"]);
}

#[test]
fn quoted_fields_are_marked() {
    let mut rdr = SnapshotReader::new(&b"\" a \", b \n"[..], ReaderOptions::default());
    let mut rec = Record::new();
    assert!(rdr.read_record(&mut rec).unwrap());
    assert!(rec.is_quoted(0));
    assert!(!rec.is_quoted(1));
    assert_eq!(rec.get(0), Some(&b" a "[..]));
    assert_eq!(rec.get(1), Some(&b" b "[..]));
}

#[test]
fn oversized_record_is_reported_not_buffered() {
    let mut data = b"a,b\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 10_000));
    data.extend_from_slice(b",tail\nc,d\n");
    let opts = ReaderOptions {
        max_record_bytes: 1000,
        buffer_bytes: 64,
        ..ReaderOptions::default()
    };
    let got = read_all(&data[..], opts);
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[1].1,
        Some(RecordProblem::RecordTooLarge { limit: 1000 })
    );
    assert_eq!(got[2].2, vec!["c", "d"]);
    assert_eq!(got[2].0.line, 3);
}

#[test]
fn oversized_field_is_reported() {
    let data = format!("a,{}\n", "y".repeat(200));
    let opts = ReaderOptions {
        max_field_bytes: 100,
        ..ReaderOptions::default()
    };
    let got = read_all(data.as_bytes(), opts);
    assert_eq!(
        got[0].1,
        Some(RecordProblem::FieldTooLarge {
            field: 1,
            limit: 100
        })
    );
}

#[test]
fn nul_byte_and_utf16_are_not_text() {
    let mut rec = Record::new();
    let mut rdr = SnapshotReader::new(&b"a,b\nc\0,d\n"[..], ReaderOptions::default());
    let err = loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => continue,
            Ok(false) => panic!("NUL byte not detected"),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("NUL byte at line 2, byte 5"),
        "{err}"
    );
    let mut rdr = SnapshotReader::new(&b"\xFF\xFEa\0"[..], ReaderOptions::default());
    assert!(rdr
        .read_record(&mut rec)
        .unwrap_err()
        .to_string()
        .contains("UTF-16"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 128 } else { 1024 }))]

    #[test]
    fn check_fuzz_body_holds(data in proptest::collection::vec(prop_oneof![
        Just(b','), Just(b';'), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'@'), Just(b'.'), Just(b'a'), Just(b'1'), any::<u8>()
    ], 0..400)) {
        muster::testing::check_invariants(&data);
    }
}

#[test]
fn escape_character_inside_quotes() {
    let opts = ReaderOptions {
        escape: Some(b'\\'),
        double_quote: false,
        ..ReaderOptions::default()
    };
    let got = read_all(&b"\"say \\\"hi\\\"\",b\nc,\"d\"\n"[..], opts);
    assert_eq!(got[0].2, vec!["say \"hi\"", "b"]);
    assert_eq!(got[1].2, vec!["c", "d"]);
    assert_eq!(got[1].0.line, 2);
}

fn chunks_strategy() -> impl Strategy<Value = ChunkOptions> {
    (1usize..96, 1usize..32).prop_map(|(block_bytes, piece_bytes)| ChunkOptions {
        block_bytes,
        piece_bytes,
    })
}

fn reader_options_strategy() -> impl Strategy<Value = ReaderOptions> {
    (
        0usize..4,
        64usize..160,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(delimiter, buffer_bytes, small_record, small_field, escape)| ReaderOptions {
                delimiter: [b',', b';', b'\t', b'|'][delimiter],
                buffer_bytes,
                max_record_bytes: if small_record { 40 } else { 1 << 20 },
                max_field_bytes: if small_field { 12 } else { 64 << 10 },
                escape: escape.then_some(b'\\'),
                double_quote: !escape,
                ..ReaderOptions::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 512 } else { 4096 }))]

    /// The chunked reader against the serial one, on documents with quoted
    /// line breaks, CRLF and CR endings, blank lines and a BOM, cut in every
    /// size from one byte up.
    #[test]
    fn chunked_reader_agrees_on_documents(doc in doc_strategy(), chunks in chunks_strategy()) {
        let (data, _) = render(&doc);
        muster::testing::chunked_agrees(&data, &ReaderOptions::default(), &chunks);
    }

    /// The same on bytes that break the quoting rules (stray quotes flip
    /// the parity guess), hold NUL bytes or an escape byte, with small size
    /// limits.
    #[test]
    fn chunked_reader_agrees_on_random_bytes(data in proptest::collection::vec(prop_oneof![
        3 => Just(b','), 3 => Just(b'"'), 3 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(b' '),
        4 => Just(b'a'), 1 => Just(b';'), 1 => Just(b'\\'), 1 => any::<u8>()
    ], 0..400), opts in reader_options_strategy(), chunks in chunks_strategy()) {
        muster::testing::chunked_agrees(&data, &opts, &chunks);
    }
}

/// A quoted field with line breaks longer than a whole block, and a stray
/// quote on the first line of a block: both still read as the serial reader
/// reads them.
#[test]
fn chunked_reader_long_quoted_field_and_stray_quote() {
    let mut data = b"a,\"".to_vec();
    data.extend(std::iter::repeat_n(b"x\n".as_slice(), 300).flatten());
    data.extend_from_slice(b"\",b\nO\"Brien,c\nd,e\n");
    for piece in [1, 7, 64] {
        let chunks = ChunkOptions {
            block_bytes: 64,
            piece_bytes: piece,
        };
        muster::testing::chunked_agrees(&data, &ReaderOptions::default(), &chunks);
    }
    // An unterminated quote longer than the record limit: read in bounded
    // memory to the end, as one record with its problem.
    let mut data = b"a,b\n\"".to_vec();
    data.extend(std::iter::repeat_n(b'y', 10_000));
    let opts = ReaderOptions {
        max_record_bytes: 100,
        ..ReaderOptions::default()
    };
    let chunks = ChunkOptions {
        block_bytes: 50,
        piece_bytes: 10,
    };
    muster::testing::chunked_agrees(&data, &opts, &chunks);
}

/// Found by the `chunked` fuzz target: after a record that csv-core read
/// (it ends in a CR), the serial reader named the line of a later NUL byte
/// one too early.
#[test]
fn nul_byte_line_after_a_quoted_record() {
    let mut data =
        b"~\"\xf1\n\n\"\xf1\n\n~\"\xff\xff\"\xec\x81\r\r\r\r\r\x11\r\r\r~\"+\xff\"".to_vec();
    data.extend(std::iter::repeat_n(b'\n', 27));
    data.extend_from_slice(b"0\n\n\n\n\n\n\n\n\n\0\0\n");
    let chunks = ChunkOptions {
        block_bytes: 17,
        piece_bytes: 4,
    };
    let opts = ReaderOptions {
        buffer_bytes: 64,
        ..ReaderOptions::default()
    };
    muster::testing::chunked_agrees(&data, &opts, &chunks);
    let mut rdr = SnapshotReader::new(&data[..], opts);
    let mut rec = Record::new();
    let err = loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => continue,
            Ok(false) => panic!("the NUL byte must be refused"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("a NUL byte at line 49"), "{err}");
}

/// Found by the `chunked` fuzz target: a UTF-8 byte-order mark at the
/// start of a record that is not the file's first is data, whichever part
/// of the reader reads the record.
#[test]
fn byte_order_mark_inside_the_file_is_data() {
    // The second record is read by csv-core (its quoted field holds a line
    // break), which drops a mark from the first bytes it is given.
    let data = b"a,b\n\xEF\xBB\xBFa,\"x\ny\"\n";
    let got = read_all(&data[..], ReaderOptions::default());
    assert_eq!(got[1].2, vec!["\u{feff}a", "x\ny"]);
    for piece in 1..data.len() {
        let chunks = ChunkOptions {
            block_bytes: 16,
            piece_bytes: piece,
        };
        muster::testing::chunked_agrees(data, &ReaderOptions::default(), &chunks);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Generated files of every preset (quoted fields, line breaks inside
    /// quotes, duplicates): planned in tiny pieces on the pool, they give
    /// the plan the serial read gives (`testing::check_invariants`).
    #[test]
    fn chunked_plan_agrees_on_generated_files(seed in any::<u64>(), rows in 1u64..600) {
        for (name, _) in muster::profile::PRESETS {
            let profile = muster::profile::Profile::preset(name).unwrap();
            let mut data = Vec::new();
            muster::gen::generate(&profile, rows, seed, 2026, &mut data).unwrap();
            muster::testing::check_invariants(&data);
        }
    }
}

/// `RecordsAt` reads the same records whether it seeks to each or reads
/// through the file, and they are the records the plan found there.
#[test]
fn records_at_seeking_or_reading_through_agree() {
    use muster::snapshot::RecordsAt;
    for (name, _) in muster::profile::PRESETS {
        let profile = muster::profile::Profile::preset(name).unwrap();
        let mut data = b"\xEF\xBB\xBF".to_vec();
        muster::gen::generate(&profile, 300, 7, 2026, &mut data).unwrap();
        let today = muster::profile::Date::new(2026, 11, 21).unwrap();
        let plan = muster::plan::check(&profile, &data[..], today).unwrap();
        // Every record as the serial reader gives it, by its start.
        let mut snapshot = muster::snapshot::Snapshot::open(&profile, &data[..]).unwrap();
        let mut rec = Record::new();
        let mut all = std::collections::BTreeMap::new();
        while snapshot.read_record(&mut rec).unwrap() {
            all.insert(
                rec.position().byte,
                rec.iter().map(<[u8]>::to_vec).collect::<Vec<_>>(),
            );
        }
        let wanted: Vec<u64> = (0..plan.records as usize)
            .step_by(7)
            .map(|i| plan.record_start(i))
            .collect();
        for seek in [true, false] {
            let mut file = RecordsAt::open(&profile, io::Cursor::new(&data), seek).unwrap();
            for &at in &wanted {
                assert!(
                    file.read_at(at, &mut rec).unwrap(),
                    "{name}: a record at {at}"
                );
                let fields: Vec<Vec<u8>> = rec.iter().map(<[u8]>::to_vec).collect();
                assert_eq!(
                    Some(&fields),
                    all.get(&at),
                    "{name}, seek {seek}: record at {at}"
                );
            }
        }
    }
}
