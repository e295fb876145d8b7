//! The hot loop allocates nothing per row once its buffers have grown.

use muster::profile::{MappedRow, Profile};
use muster::reader::{Record, SnapshotReader};

use crate::ALLOCATIONS;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn reader_and_mapper_allocate_nothing_per_row_in_the_steady_state() {
    let profile = Profile::preset("winningtemp-users").unwrap();
    let mut data = Vec::new();
    muster::gen::generate(&profile, 20_000, 5, 2026, &mut data).unwrap();
    let mut rdr = SnapshotReader::new(&data[..], profile.reader_options(&data));
    let mut rec = Record::new();
    rdr.read_record(&mut rec).unwrap();
    let layout = profile.layout(Some(&rec)).unwrap();
    let mut row = MappedRow::new();
    // Warm up: buffers grow to the widest row seen.
    for _ in 0..5_000 {
        assert!(rdr.read_record(&mut rec).unwrap());
        profile.map(&rec, &layout, &mut row).unwrap();
    }
    let before = allocations();
    let mut rows = 0;
    while rdr.read_record(&mut rec).unwrap() {
        profile.map(&rec, &layout, &mut row).unwrap();
        rows += 1;
    }
    let during = allocations() - before;
    assert_eq!(rows, 15_000);
    // A rare row wider than all before it may grow a buffer once.
    assert!(during <= 3, "{during} allocations for {rows} rows");
}
