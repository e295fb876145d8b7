//! Differ benchmarks over generated `winningtemp-users` files: day 1 and a
//! shuffled day 2 (`gen --from --change-ratio 0.02`), made at bench time
//! into `target/bench-data/` (not committed). Groups:
//! - `read_day2`: the first phase of planning (map, fingerprint, duplicate
//!   detection) of day 2;
//! - `against_prior`: comparing day 2's plan with day 1's state;
//! - `diff_files`: what `muster diff` computes, end to end from the files.
//!
//! `MUSTER_BENCH_ROWS` overrides the row count (default 1,000,000).

use std::fs::File;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use muster::plan;
use muster::profile::{Date, Profile};
use muster::store::NoPrior;

fn files(profile: &Profile, rows: u64) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let day1 = dir.join(format!("{}-{rows}-seed1.csv", profile.name));
    let day2 = dir.join(format!("{}-{rows}-seed1-day2.csv", profile.name));
    if !day1.exists() {
        let tmp = day1.with_extension("tmp");
        muster::gen::generate(profile, rows, 1, 2026, File::create(&tmp).unwrap()).unwrap();
        std::fs::rename(&tmp, &day1).unwrap();
    }
    if !day2.exists() {
        let tmp = day2.with_extension("tmp");
        muster::gen::derive(
            profile,
            File::open(&day1).unwrap(),
            0.02,
            2,
            true,
            2026,
            File::create(&tmp).unwrap(),
        )
        .unwrap();
        std::fs::rename(&tmp, &day2).unwrap();
    }
    (day1, day2)
}

fn diff(c: &mut Criterion) {
    let rows = std::env::var("MUSTER_BENCH_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let profile = Profile::preset("winningtemp-users").unwrap();
    let (day1, day2) = files(&profile, rows);
    let today = Date::new(2026, 11, 21).unwrap();
    let day2_bytes = std::fs::read(&day2).unwrap();
    let mut old = plan::read(
        &profile,
        File::open(&day1).unwrap(),
        today,
        None,
        &mut |_| {},
    )
    .unwrap();
    old.against(&profile, &NoPrior);
    let prior = old.into_prior();

    let mut g = c.benchmark_group("winningtemp-users-1M-diff");
    g.throughput(Throughput::Bytes(day2_bytes.len() as u64));
    g.sample_size(10);
    let read_day2 = || {
        let size = Some(day2_bytes.len() as u64);
        plan::read(&profile, &day2_bytes[..], today, size, &mut |_| {}).unwrap()
    };
    g.bench_function("read_day2", |b| b.iter(|| black_box(read_day2().len())));
    g.bench_function("against_prior", |b| {
        b.iter_batched(
            read_day2,
            |mut p| {
                p.against(&profile, &prior);
                black_box(p.len())
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("diff_files", |b| {
        b.iter(|| {
            black_box(
                muster::plan::diff_files(&profile, &day1, &day2, today)
                    .unwrap()
                    .plan
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, diff);
criterion_main!(benches);
