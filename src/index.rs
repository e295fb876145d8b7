//! Sorted key indexes: how keys are found without hash tables.
//!
//! A file's keys and a prior's keys are `(key_hash(key), row or slot)`
//! pairs sorted by hash, compared with one sequential merge, where a hash
//! table would cost a cache miss per row on a 1M-row file. A run of equal
//! hashes is resolved by comparing the keys themselves, so a hash collision
//! is never taken for equality. The prefetch hints are for loops that know
//! which random entry they will read a few iterations ahead.

/// The hash the sorted key indexes are ordered by: xxh3-64 of the key (an
/// e-mail key lower-cased first). In the crate's unit tests it keeps 3 bits,
/// so that collisions are common and their handling is tested.
#[inline]
pub fn key_hash(key: &str) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    if cfg!(test) {
        h & 7
    } else {
        h
    }
}

/// The range of `sorted` (ordered by hash) whose hash is `h`.
#[inline]
pub fn hash_run(sorted: &[(u64, u32)], h: u64) -> &[(u64, u32)] {
    let start = sorted.partition_point(|&(eh, _)| eh < h);
    let len = sorted[start..].partition_point(|&(eh, _)| eh == h);
    &sorted[start..start + len]
}

/// Sorts `(hash, id)` pairs by hash, then id.
pub fn sort_index(v: &mut [(u64, u32)]) {
    sort_by_hash(v, |&(h, _)| h);
}

/// Sorts items whose order starts with a uniform 64-bit hash (`hash`), in
/// place: one pass counts the items per bucket of the hash's top 11 bits,
/// one moves each item into its bucket (American flag sort: 2,048 write
/// positions stay in cache), then the buckets — a few hundred items each
/// for 1M — are sorted on the rayon pool. About three times faster than a
/// comparison sort of the whole, with no second buffer.
pub fn sort_by_hash<T: Copy + Ord + Send>(v: &mut [T], hash: impl Fn(&T) -> u64) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    if v.len() < 1 << 14 {
        v.sort_unstable();
        return;
    }
    let bucket = |t: &T| (hash(t) >> (64 - BITS)) as usize;
    let mut ends = vec![0usize; BUCKETS];
    for t in v.iter() {
        ends[bucket(t)] += 1;
    }
    let mut heads = vec![0usize; BUCKETS];
    let mut total = 0;
    for b in 0..BUCKETS {
        heads[b] = total;
        total += ends[b];
        ends[b] = total;
    }
    let starts = heads.clone();
    for b in 0..BUCKETS {
        while heads[b] < ends[b] {
            // Carry the item at the head of bucket `b` to its bucket, and
            // the one it displaces on, until one belongs in `b`.
            let mut t = v[heads[b]];
            loop {
                let d = bucket(&t);
                if d == b {
                    break;
                }
                std::mem::swap(&mut t, &mut v[heads[d]]);
                heads[d] += 1;
            }
            v[heads[b]] = t;
            heads[b] += 1;
        }
    }
    let mut rest = v;
    let mut parts = Vec::with_capacity(BUCKETS);
    for b in 0..BUCKETS {
        let (part, tail) = rest.split_at_mut(ends[b] - starts[b]);
        parts.push(part);
        rest = tail;
    }
    use rayon::prelude::*;
    parts.into_par_iter().for_each(|p| p.sort_unstable());
}

/// Asks the CPU to start loading the cache line of `r`: a hint that changes
/// nothing the program computes, for loops that know which random address
/// they will read a few iterations ahead.
#[inline(always)]
pub(crate) fn prefetch<T: ?Sized>(r: &T) {
    prefetch_at((r as *const T).cast());
}

/// The hint of [`prefetch`] for the cache line of `p`, which is never read.
#[inline(always)]
fn prefetch_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch has no effect visible to the program and cannot
    // fault, whatever the address; callers pass addresses inside live data.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] of the whole of `*r` when it may straddle two cache lines
/// (a 48-byte plan entry does two times in three): its first and last
/// bytes' lines.
#[inline(always)]
pub(crate) fn prefetch_both_ends<T>(r: &T) {
    prefetch_span((r as *const T).cast(), std::mem::size_of::<T>());
}

/// The hints for the first and the last byte of `len` bytes at `first`.
#[inline(always)]
fn prefetch_span(first: *const u8, len: usize) {
    prefetch_at(first);
    prefetch_at(first.wrapping_add(len.max(1) - 1));
}

/// [`prefetch`] of the text `start..start + len` of `arena` (its first and
/// last bytes' cache lines: a key may straddle two). Not of a `&str` sliced
/// out of it: slicing a `str` checks that both ends are on character
/// boundaries, which reads the bytes there: the hint would become a load
/// that waits for memory.
#[inline(always)]
pub(crate) fn prefetch_text(arena: &str, start: u32, len: u32) {
    if let Some(b) = arena.as_bytes().get(start as usize) {
        prefetch_span(b, len as usize);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// The bucket sort against the standard library's, on inputs large
        /// enough to take the bucket path, with hashes uniform or crowded
        /// into few buckets.
        #[test]
        fn sort_by_hash_sorts(seed in any::<u64>(), len in 1usize << 14..1 << 17, crowd in 0u32..64) {
            let mut x = seed | 1;
            let v: Vec<(u64, u32)> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> crowd, i as u32 % 1000)
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            let mut got = v;
            super::sort_by_hash(&mut got, |&(h, _)| h);
            prop_assert_eq!(got, want);
        }
    }
}
