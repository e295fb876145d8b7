//! Reads arbitrary bytes with the chunked reader and with the serial one and
//! asserts both give the same records and errors (see
//! `muster::testing::chunked_agrees`). The first two bytes pick the
//! delimiter, the quoting rules, size limits and tiny block and piece sizes,
//! so every cut is tried.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::reader::{ChunkOptions, ReaderOptions};

fuzz_target!(|data: &[u8]| {
    let [knob, sizes, data @ ..] = data else {
        return;
    };
    let escape = knob & 0x20 != 0;
    let opts = ReaderOptions {
        delimiter: [b',', b';', b'\t', b'|'][(knob & 3) as usize],
        buffer_bytes: 64 + (*knob as usize >> 2),
        max_record_bytes: if knob & 0x80 != 0 { 64 } else { 1 << 20 },
        max_field_bytes: if knob & 0x40 != 0 { 16 } else { 64 << 10 },
        escape: escape.then_some(b'\\'),
        double_quote: !escape,
        ..ReaderOptions::default()
    };
    let chunks = ChunkOptions {
        block_bytes: 1 + (*sizes as usize >> 3) * 4,
        piece_bytes: 1 + (*sizes as usize & 7) * 3,
    };
    muster::testing::chunked_agrees(data, &opts, &chunks);
});
