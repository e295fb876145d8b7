//! Reads, maps and validates a file through a preset, printing the number of
//! records and of valid rows: a fixed workload for profilers
//! (`valgrind --tool=callgrind`) and the streaming figure of BENCHMARKS.md.
//! The file is read in pieces on the rayon pool (`read_chunked`): memory
//! stays flat whatever its size.
//! Usage: cargo run --release --example map_file -- PRESET FILE [--serial]

use std::fs::File;

use muster::profile::{MappedRow, Profile};
use muster::reader::{read_chunked, ChunkOptions, Record, SnapshotReader};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (preset, path) = (&args[1], &args[2]);
    let serial = args.get(3).is_some_and(|a| a == "--serial");
    let profile = Profile::preset(preset).expect("a preset name");
    let mut head = vec![0; 8 << 10];
    let n = std::io::Read::read(&mut File::open(path).expect("a readable file"), &mut head)
        .expect("a readable file");
    let opts = profile.reader_options(&head[..n]);
    // The header gives the layout; the records follow it.
    let mut reader = SnapshotReader::new(File::open(path).expect("a readable file"), opts.clone());
    let mut rec = Record::new();
    reader.read_record(&mut rec).expect("a header");
    let layout = profile.layout(Some(&rec)).expect("a header that fits");
    let (mut records, mut ok) = (0u64, 0u64);
    if serial {
        let mut row = MappedRow::new();
        while reader.read_record(&mut rec).expect("readable records") {
            records += 1;
            ok += profile.map(&rec, &layout, &mut row).is_ok() as u64;
        }
    } else {
        let mut file = File::open(path).expect("a readable file");
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(reader.byte_offset()))
            .expect("a seekable file");
        read_chunked(
            file,
            &opts,
            &ChunkOptions::default(),
            |piece| {
                let (mut rec, mut row, mut n, mut ok) = (Record::new(), MappedRow::new(), 0, 0);
                while piece.read_record(&mut rec)? {
                    n += 1;
                    ok += profile.map(&rec, &layout, &mut row).is_ok() as u64;
                }
                Ok((n, ok))
            },
            |(n, k), _| {
                records += n;
                ok += k;
            },
        )
        .expect("readable records");
    }
    println!("{records} records, {ok} valid");
}
