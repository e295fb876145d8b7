//! Reads, maps and validates a file through a preset, printing the number of
//! valid rows: a fixed workload for profilers (`valgrind --tool=callgrind`).
//! Usage: cargo run --release --example map_file -- PRESET FILE

use muster::profile::{MappedRow, Profile};
use muster::reader::Record;
use muster::snapshot::Snapshot;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (preset, path) = (&args[1], &args[2]);
    let profile = Profile::preset(preset).expect("a preset name");
    let data = std::fs::read(path).expect("a readable file");
    let mut snapshot = Snapshot::open(&profile, &data[..]).expect("a header that fits");
    let layout = snapshot.layout().clone();
    let mut rec = Record::new();
    let mut row = MappedRow::new();
    let mut ok = 0u64;
    while snapshot.read_record(&mut rec).unwrap() {
        ok += profile.map(&rec, &layout, &mut row).is_ok() as u64;
    }
    println!("{ok}");
}
