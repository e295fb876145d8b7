//! Parse benchmarks over a generated 1M-row `winningtemp-users` file.
//!
//! The file is generated from a seed at bench time (not committed) into
//! `target/bench-data/`. Groups:
//! - `read`: the streaming reader alone (records out);
//! - `read_map_validate`: reader + profile mapping and validation of every row;
//! - `check`: the whole stateless plan (`muster check` without writing results);
//! - `csv_crate_byte_record`: the `csv` crate's reader, as a peer for scale.
//!
//! `MUSTER_BENCH_ROWS` overrides the row count (default 1,000,000).

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use muster::profile::{Date, MappedRow, Profile};
use muster::reader::{read_chunked, ChunkOptions, Record, SnapshotReader};

fn data_file(profile: &Profile, rows: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{rows}-seed1.csv", profile.name));
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        muster::gen::generate(profile, rows, 1, 2026, File::create(&tmp).unwrap()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

fn parse(c: &mut Criterion) {
    let rows = std::env::var("MUSTER_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let profile = Profile::preset("winningtemp-users").unwrap();
    let path = data_file(&profile, rows);
    let mut data = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut data).unwrap();
    let today = Date::new(2026, 11, 21).unwrap();

    let mut g = c.benchmark_group("winningtemp-users-1M");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("read", |b| {
        b.iter(|| {
            let mut rdr = SnapshotReader::new(&data[..], profile.reader_options(&data));
            let mut rec = Record::new();
            let mut n = 0u64;
            while rdr.read_record(&mut rec).unwrap() {
                n += rec.len() as u64;
            }
            black_box(n)
        })
    });
    // A peer for scale: the `csv` crate's reader into a reused ByteRecord.
    g.bench_function("csv_crate_byte_record", |b| {
        b.iter(|| {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(b';')
                .from_reader(&data[..]);
            let mut rec = csv::ByteRecord::new();
            let mut n = 0u64;
            while rdr.read_byte_record(&mut rec).unwrap() {
                n += rec.len() as u64;
            }
            black_box(n)
        })
    });
    g.bench_function("read_map_validate", |b| {
        b.iter(|| {
            let mut rdr = SnapshotReader::new(&data[..], profile.reader_options(&data));
            let mut rec = Record::new();
            rdr.read_record(&mut rec).unwrap();
            let layout = profile.layout(Some(&rec)).unwrap();
            let mut row = MappedRow::new();
            let mut ok = 0u64;
            while rdr.read_record(&mut rec).unwrap() {
                ok += profile.map(&rec, &layout, &mut row).is_ok() as u64;
            }
            black_box(ok)
        })
    });
    // The same work in pieces on the rayon pool (both cores here): the
    // header is read first, then `read_chunked` over the rest.
    g.bench_function("read_map_validate_chunked", |b| {
        let opts = profile.reader_options(&data);
        let mut rdr = SnapshotReader::new(&data[..], opts.clone());
        let mut rec = Record::new();
        rdr.read_record(&mut rec).unwrap();
        let layout = profile.layout(Some(&rec)).unwrap();
        let body = &data[rdr.byte_offset() as usize..];
        let chunks = ChunkOptions::default();
        b.iter(|| {
            let mut ok = 0u64;
            read_chunked(
                body,
                &opts,
                &chunks,
                |piece| {
                    let (mut rec, mut row, mut ok) = (Record::new(), MappedRow::new(), 0u64);
                    while piece.read_record(&mut rec)? {
                        ok += profile.map(&rec, &layout, &mut row).is_ok() as u64;
                    }
                    Ok(ok)
                },
                |n, _| ok += n,
            )
            .unwrap();
            black_box(ok)
        })
    });
    g.bench_function("check", |b| {
        b.iter(|| {
            black_box(
                muster::plan::check(&profile, &data[..], today)
                    .unwrap()
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
