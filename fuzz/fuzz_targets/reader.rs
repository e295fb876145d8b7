//! Reads every record of arbitrary bytes and asserts the reader's
//! invariants (see `muster::testing::reader_roundtrip`). The first byte picks
//! the delimiter and small buffer and size limits, so chunk boundaries and
//! limits are crossed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::reader::ReaderOptions;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let opts = ReaderOptions {
        delimiter: [b',', b';', b'\t', b'|'][(knob & 3) as usize],
        buffer_bytes: 64 + (knob as usize >> 2),
        max_record_bytes: if knob & 0x80 != 0 { 64 } else { 1 << 20 },
        max_field_bytes: if knob & 0x40 != 0 { 16 } else { 64 << 10 },
        ..ReaderOptions::default()
    };
    muster::testing::reader_roundtrip(data, &opts);
});
