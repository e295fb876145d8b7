//! Invariant checks shared by the fuzz targets (`fuzz/`) and the property
//! tests, so both drive the same body. Not part of the stable API.

use crate::reader::{ReaderOptions, Record, SnapshotReader};
use crate::results::write_field;

/// Reads every record of `data` and panics if an invariant breaks:
/// positions strictly increase, and writing the records back (every field
/// quoted) and reading them again gives the same fields.
pub fn reader_roundtrip(data: &[u8], opts: &ReaderOptions) {
    let mut rdr = SnapshotReader::new(data, opts.clone());
    let mut rec = Record::new();
    let mut fields: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut last: Option<crate::reader::Position> = None;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => return, // not text: refused whole, nothing to check
        }
        let pos = rec.position();
        if let Some(prev) = last {
            assert!(pos.byte > prev.byte, "byte offsets must grow: {prev:?} then {pos:?}");
            assert!(pos.line > prev.line, "lines must grow: {prev:?} then {pos:?}");
            assert_eq!(pos.record, prev.record + 1, "record index must count up");
        } else {
            assert_eq!(pos.record, 0);
        }
        assert!(pos.byte < data.len() as u64);
        last = Some(pos);
        if rec.problem().is_none() {
            fields.push(rec.iter().map(|f| f.to_vec()).collect());
        }
    }
    let mut out = Vec::new();
    for row in &fields {
        for (i, f) in row.iter().enumerate() {
            if i > 0 {
                out.push(opts.delimiter);
            }
            write_field(&mut out, f, opts.delimiter, opts.quote, true);
        }
        out.extend_from_slice(b"\r\n");
    }
    let mut again = Vec::new();
    // Quoting every field makes records longer: re-read without size limits.
    let unlimited = ReaderOptions {
        max_record_bytes: usize::MAX / 4,
        max_field_bytes: usize::MAX / 4,
        ..opts.clone()
    };
    let mut rdr = SnapshotReader::new(&out[..], unlimited);
    while rdr.read_record(&mut rec).expect("re-read") {
        assert_eq!(rec.problem(), None);
        again.push(rec.iter().map(|f| f.to_vec()).collect::<Vec<_>>());
    }
    assert_eq!(fields, again, "records must survive a write and a re-read");
}
