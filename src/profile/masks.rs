//! Bit masks over a short value: bit `i` tells whether byte `i` is of a
//! kind. The value checks (e-mails, lists) read their structure off these
//! masks instead of branching on every byte; values of more than
//! [`Masks::MAX`] bytes go the byte-by-byte way.

/// The masks of one value of at most [`Masks::MAX`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Masks {
    /// Bytes equal to the first needle.
    pub a: u64,
    /// Bytes equal to the second needle.
    pub b: u64,
    /// Spaces and control bytes (`<= 0x20`).
    pub space: u64,
    /// Bytes of multi-byte characters (`>= 0x80`).
    pub high: u64,
    /// ASCII capitals.
    pub upper: u64,
}

impl Masks {
    pub const MAX: usize = 64;

    /// The masks of `s` for needles `a` and `b`, or `None` when `s` is longer
    /// than [`Masks::MAX`].
    #[inline]
    pub fn of(s: &[u8], a: u8, b: u8) -> Option<Masks> {
        if s.len() > Self::MAX {
            return None;
        }
        let len = s.len();
        let all = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        let mut m = Masks::default();
        let mut put = |c: [u32; 5], at: usize| {
            m.a |= (c[0] as u64) << at;
            m.b |= (c[1] as u64) << at;
            m.space |= (c[2] as u64) << at;
            m.high |= (c[3] as u64) << at;
            m.upper |= (c[4] as u64) << at;
        };
        if len < 16 {
            // Copied into a zeroed chunk with fixed-size moves (a call to
            // `memcpy` would cost more than the masks).
            let mut buf = [0u8; 16];
            if len >= 8 {
                buf[..8].copy_from_slice(&s[..8]);
                buf[len - 8..len].copy_from_slice(&s[len - 8..]);
            } else if len >= 4 {
                buf[..4].copy_from_slice(&s[..4]);
                buf[len - 4..len].copy_from_slice(&s[len - 4..]);
            } else {
                buf[..len].copy_from_slice(s);
            }
            put(chunk16(&buf, a, b), 0);
        } else {
            let mut at = 0;
            while at + 16 <= len {
                put(chunk16(&s[at..], a, b), at);
                at += 16;
            }
            if at < len {
                // The last 16 bytes, overlapping the chunk before: keep
                // their bits from `at` on.
                let c = chunk16(&s[len - 16..], a, b).map(|m| m >> (at + 16 - len));
                put(c, at);
            }
        }
        // Padding bytes are zeros: spaces to the mask, never needles (a
        // needle of 0 is not used).
        m.space &= all;
        Some(m)
    }
}

/// The five 16-bit masks of one 16-byte chunk: `a`, `b`, space or control,
/// high bit, capital.
#[inline]
fn chunk16(chunk: &[u8], a: u8, b: u8) -> [u32; 5] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_set1_epi8, _mm_sub_epi8,
        };
        assert!(chunk.len() >= 16);
        // SAFETY: SSE2 is part of the x86_64 baseline; the assertion above
        // keeps the one 16-byte unaligned load inside `chunk`.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr() as *const __m128i);
            let eq = |n: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(n as i8))) as u32;
            // Unsigned `x <= k` is `min(x, k) == x`.
            let le = |x: __m128i, k: u8| {
                _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(k as i8)), x)) as u32
            };
            let from_a = _mm_sub_epi8(v, _mm_set1_epi8(b'A' as i8));
            [
                eq(a),
                eq(b),
                le(v, b' '),
                _mm_movemask_epi8(v) as u32,
                le(from_a, b'Z' - b'A'),
            ]
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = [0u32; 5];
        for (i, &c) in chunk[..16].iter().enumerate() {
            m[0] |= ((c == a) as u32) << i;
            m[1] |= ((c == b) as u32) << i;
            m[2] |= ((c <= b' ') as u32) << i;
            m[3] |= ((c >= 0x80) as u32) << i;
            m[4] |= (c.is_ascii_uppercase() as u32) << i;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::Masks;
    use proptest::prelude::*;

    fn oracle(s: &[u8], a: u8, b: u8) -> Masks {
        let mask = |f: &dyn Fn(u8) -> bool| {
            s.iter()
                .enumerate()
                .fold(0u64, |m, (i, &c)| m | ((f(c) as u64) << i))
        };
        Masks {
            a: mask(&|c| c == a),
            b: mask(&|c| c == b),
            space: mask(&|c| c <= b' '),
            high: mask(&|c| c >= 0x80),
            upper: mask(&|c| c.is_ascii_uppercase()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn masks_agree_with_a_byte_by_byte_oracle(
            s in proptest::collection::vec(prop_oneof![
                Just(b'@'), Just(b'.'), Just(b' '), Just(b'A'), Just(b'Z'), Just(b'@' + 1),
                Just(b'Z' + 1), Just(0x7f), Just(0x80), Just(0), any::<u8>()
            ], 0..80),
        ) {
            let got = Masks::of(&s, b'@', b'.');
            if s.len() > Masks::MAX {
                prop_assert_eq!(got, None);
            } else {
                prop_assert_eq!(got, Some(oracle(&s, b'@', b'.')));
            }
        }
    }
}
