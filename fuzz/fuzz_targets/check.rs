//! Plans arbitrary bytes with every preset and asserts the plan's
//! invariants (see `muster::testing::check_invariants`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    muster::testing::check_invariants(data);
});
