//! The `csv` crate's reader as a peer in `scripts/bench-peers.sh`: reads a
//! `;`-separated file into one reused `ByteRecord` and prints the number of
//! records after the header. Usage: csv_count FILE
fn main() {
    let path = std::env::args().nth(1).expect("usage: csv_count FILE");
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b';')
        .flexible(true)
        .from_path(&path)
        .expect("a readable file");
    let mut rec = csv::ByteRecord::new();
    let mut n = 0u64;
    while rdr.read_byte_record(&mut rec).expect("a readable record") {
        n += 1;
    }
    println!("{n}");
}
