//! Invariant checks shared by the fuzz targets (`fuzz/`) and the property
//! tests, so both drive the same body. Not part of the stable API.

use crate::reader::{
    read_chunked, ChunkOptions, Position, ReaderOptions, Record, RecordProblem, SnapshotReader,
};
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
            assert!(
                pos.byte > prev.byte,
                "byte offsets must grow: {prev:?} then {pos:?}"
            );
            assert!(
                pos.line > prev.line,
                "lines must grow: {prev:?} then {pos:?}"
            );
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

/// A record as the reader gave it: position, problem, fields.
type ReadRecord = (Position, Option<RecordProblem>, Vec<Vec<u8>>);

fn as_read(rec: &Record) -> ReadRecord {
    (
        rec.position(),
        rec.problem(),
        rec.iter().map(<[u8]>::to_vec).collect(),
    )
}

/// Reads `data` with the serial reader and with [`read_chunked`] cut as
/// `chunks` says, and panics unless both give the same records (fields,
/// positions, problems) and the same error.
pub fn chunked_agrees(data: &[u8], opts: &ReaderOptions, chunks: &ChunkOptions) {
    let mut serial = Vec::new();
    let mut rdr = SnapshotReader::new(data, opts.clone());
    let mut rec = Record::new();
    let serial_error = loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => serial.push(as_read(&rec)),
            Ok(false) => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    let mut chunked = Vec::new();
    let outcome = read_chunked(
        data,
        opts,
        chunks,
        |piece| {
            let mut rec = Record::new();
            let mut rows = Vec::new();
            while piece.read_record(&mut rec)? {
                rows.push(as_read(&rec));
            }
            Ok(rows)
        },
        |rows, at| {
            chunked.extend(
                rows.into_iter()
                    .map(|(p, problem, f)| (at.apply(p), problem, f)),
            );
        },
    );
    let (end, chunked_error) = match outcome {
        Ok(end) => (Some((end.byte, end.record)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    assert_eq!(
        chunked_error, serial_error,
        "chunked and serial errors differ"
    );
    if serial_error.is_none() {
        assert_eq!(chunked, serial, "chunked and serial records differ");
        let serial_end = (rdr.byte_offset(), serial.len() as u64);
        assert_eq!(end, Some(serial_end), "chunked and serial ends differ");
    } else {
        // Both stop at the error, each after the records it had read.
        let n = chunked.len().min(serial.len());
        assert_eq!(
            chunked[..n],
            serial[..n],
            "chunked and serial records differ"
        );
    }
}

/// Plans `data` with every preset and panics if an invariant breaks: one
/// plan line per record, lines in increasing order, a rejected line always
/// carries a code, nothing but rejects, creates and unchanged rows against
/// an empty store, and a refused file is refused for its header or for not
/// being text.
pub fn check_invariants(data: &[u8]) {
    let today = crate::profile::Date::new(2026, 11, 21).unwrap_or(crate::profile::Date {
        year: 2026,
        month: 1,
        day: 1,
    });
    for (name, _) in crate::profile::PRESETS {
        let Some(profile) = crate::profile::Profile::preset(name) else {
            panic!("preset {name} does not compile");
        };
        let plan = match crate::plan::check(&profile, data, today) {
            Ok(plan) => plan,
            Err(crate::plan::FileError::Header(_))
            | Err(crate::plan::FileError::Read(crate::reader::ReadError::NotText { .. })) => {
                continue
            }
            Err(e) => panic!("{name}: unexpected error {e}"),
        };
        // Read in tiny pieces on the pool or serially: the same plan.
        let plan_as = |opts: crate::plan::ReadOptions<'_>| {
            let mut plan = crate::plan::read_with(&profile, data, today, opts, &mut |_| {})
                .unwrap_or_else(|e| panic!("{name}: {e} on the second read"));
            plan.against(&profile, &crate::store::NoPrior);
            let rows: Vec<_> = plan
                .rows()
                .enumerate()
                .map(|(i, r)| {
                    (
                        r.line,
                        r.key.map(str::to_string),
                        r.action,
                        r.code,
                        r.message.to_string(),
                        plan.fingerprint(i),
                    )
                })
                .collect();
            (rows, plan.records, plan.bytes, plan.decoded_rows)
        };
        let chunks = crate::reader::ChunkOptions {
            block_bytes: 1 + data.len() / 3,
            piece_bytes: 1 + data.len() / 17,
        };
        let chunked = plan_as(crate::plan::ReadOptions {
            chunks,
            ..Default::default()
        });
        let serial = plan_as(crate::plan::ReadOptions {
            serial: true,
            ..Default::default()
        });
        assert_eq!(chunked, serial, "{name}: chunked and serial plans differ");
        assert_eq!(
            plan.len() as u64,
            plan.records,
            "{name}: one line per record"
        );
        let mut last = 0;
        for row in plan.rows() {
            assert!(row.line > last, "{name}: lines must increase");
            last = row.line;
            use crate::model::Action;
            match row.action {
                Action::Reject => assert!(row.code.is_some(), "{name}: a reject needs a code"),
                Action::Create | Action::Unchanged => {}
                other => panic!("{name}: {other:?} against an empty store"),
            }
        }
    }
}

/// A point where crash tests end the process as `kill -9` would: when the
/// environment variable `MUSTER_CRASH_AT` names it, the process aborts
/// there (no unwinding, no destructor, nothing flushed). One look at the
/// environment; nothing else happens otherwise. The points: `after-writes`
/// (a file's writes all acknowledged and committed, its results not yet
/// written).
pub fn crash_point(name: &str) {
    if std::env::var_os("MUSTER_CRASH_AT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}
