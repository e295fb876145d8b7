//! One pass over the start of the unread input: where the line ends, where
//! its delimiters are, and two facts the mapper would otherwise find field
//! by field — whether the line is ASCII and whether any field starts or ends
//! with a space or a tab.
//!
//! # Design
//!
//! The bytes are classified 64 at a time into bit masks (delimiter; line
//! break or quote, which stop the line; space or tab; high bit), with AVX2
//! where the CPU has it and SSE2 (baseline on x86_64) otherwise; other
//! targets classify byte by byte. The delimiter bits below the first stop
//! are walked into field bounds. A field edge is blank when a space or tab
//! sits just after a delimiter (or at the line's start) or just before one
//! (or at the line's end); the carries between two 64-byte words are kept
//! as single bits. A line holding a quote is not split here: the caller
//! reads it with the quoting rules.

/// What [`scan_line`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineScan {
    /// A line of `len` bytes without a quote, ended by the line break at
    /// `len`, or by the end of the input when `len == input.len()` and the
    /// caller said it is the end. Its fields' bounds were pushed.
    Plain { len: usize, flags: u8 },
    /// A quote at byte `at`, before any line break: nothing was pushed.
    Quote { at: usize },
    /// No line break and no quote in the input (and it is not the end):
    /// nothing was pushed.
    Open,
}

/// [`LineScan::Plain`] flags: every byte of the line is ASCII.
pub(crate) const ASCII: u8 = 1;
/// [`LineScan::Plain`] flags: no field starts or ends with a space or tab.
pub(crate) const NO_BLANK_EDGE: u8 = 2;

/// The masks of one 64-byte word.
#[derive(Clone, Copy, Default)]
struct Word {
    delim: u64,
    /// Line feeds, carriage returns and quotes.
    stop: u64,
    /// Spaces and tabs.
    blank: u64,
    /// Bytes with the high bit set.
    high: u64,
}

/// Scans `input` from its start for one line (see [`LineScan`]). `eof`:
/// the input ends where `input` does, so a line without a break ends there.
/// Bounds are pushed onto `bounds` as `(start, end)` byte ranges of `input`.
#[inline]
pub(crate) fn scan_line(
    input: &[u8],
    delim: u8,
    quote: u8,
    eof: bool,
    bounds: &mut Vec<(usize, usize)>,
) -> LineScan {
    #[cfg(target_arch = "x86_64")]
    {
        // (std caches what it detected: one load and a bit test.)
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked at run time just above).
            return unsafe { scan_avx2(input, delim, quote, eof, bounds) };
        }
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe { scan_sse2(input, delim, quote, eof, bounds) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    scan_with(input, delim, quote, eof, bounds, word_scalar)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(
    input: &[u8],
    delim: u8,
    quote: u8,
    eof: bool,
    bounds: &mut Vec<(usize, usize)>,
) -> LineScan {
    scan_with(input, delim, quote, eof, bounds, |bytes, d, q| {
        // SAFETY: this function is only called where the CPU has AVX2.
        unsafe { word_avx2(bytes, d, q) }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn scan_sse2(
    input: &[u8],
    delim: u8,
    quote: u8,
    eof: bool,
    bounds: &mut Vec<(usize, usize)>,
) -> LineScan {
    scan_with(input, delim, quote, eof, bounds, |bytes, d, q| {
        // SAFETY: SSE2 is baseline on x86_64.
        unsafe { word_sse2(bytes, d, q) }
    })
}

/// The scan, given how to classify 64 bytes.
#[inline(always)]
fn scan_with(
    input: &[u8],
    delim: u8,
    quote: u8,
    eof: bool,
    bounds: &mut Vec<(usize, usize)>,
    word: impl Fn(&[u8; 64], u8, u8) -> Word,
) -> LineScan {
    let first = bounds.len();
    let n = input.len();
    let mut at = 0usize;
    let mut field_start = 0usize;
    let (mut high, mut edge) = (0u64, 0u64);
    // A delimiter in the last bit of the word before (a field starts at
    // bit 0 of this one; the line's start counts as one), and a blank in
    // the last bit of the word before (a field ends there if this word
    // starts with a delimiter).
    let (mut delim_carry, mut blank_carry) = (1u64, 0u64);
    let mut tail = [0u8; 64];
    loop {
        let left = n - at;
        let w = if let Some(bytes) = input.get(at..at + 64) {
            word(bytes.try_into().expect("64 bytes"), delim, quote)
        } else {
            // The last bytes, in a zeroed word: a NUL is never in text (the
            // reader refuses it), so the padding matches nothing.
            tail[..left].copy_from_slice(&input[at..]);
            tail[left..].fill(0);
            word(&tail, delim, quote)
        };
        let valid = if left >= 64 {
            u64::MAX
        } else {
            (1u64 << left) - 1
        };
        let stop = w.stop & valid;
        // The bits of this word that are inside the line.
        let (inside, ended) = if stop != 0 {
            let s = stop.trailing_zeros();
            let stop_at = at + s as usize;
            if input[stop_at] == quote {
                bounds.truncate(first);
                return LineScan::Quote { at: stop_at };
            }
            ((1u64 << s) - 1, Some(stop_at))
        } else if left <= 64 {
            if !eof {
                bounds.truncate(first);
                return LineScan::Open;
            }
            (valid, Some(n))
        } else {
            (u64::MAX, None)
        };
        let d = w.delim & inside;
        let b = w.blank & inside;
        high |= w.high & inside;
        // Blank just after a delimiter (or the line's start), or just
        // before one.
        edge |= b & ((d << 1) | delim_carry);
        edge |= b & (d >> 1);
        edge |= blank_carry & d & 1;
        delim_carry = d >> 63;
        blank_carry = b >> 63;
        let mut bits = d;
        while bits != 0 {
            let i = at + bits.trailing_zeros() as usize;
            bounds.push((field_start, i));
            field_start = i + 1;
            bits &= bits - 1;
        }
        if let Some(end) = ended {
            // A blank last byte ends the last field.
            if end > 0 && matches!(input[end - 1], b' ' | b'\t') {
                edge |= 1;
            }
            bounds.push((field_start, end));
            let mut flags = 0;
            if high == 0 {
                flags |= ASCII;
            }
            if edge == 0 {
                flags |= NO_BLANK_EDGE;
            }
            return LineScan::Plain { len: end, flags };
        }
        at += 64;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn word_avx2(bytes: &[u8; 64], delim: u8, quote: u8) -> Word {
    use std::arch::x86_64::*;
    let (d, q) = (_mm256_set1_epi8(delim as i8), _mm256_set1_epi8(quote as i8));
    let (lf, cr) = (_mm256_set1_epi8(b'\n' as i8), _mm256_set1_epi8(b'\r' as i8));
    let (sp, tab) = (_mm256_set1_epi8(b' ' as i8), _mm256_set1_epi8(b'\t' as i8));
    let mut w = Word::default();
    for k in 0..2 {
        // SAFETY: 32 bytes at 32 * k of 64, an unaligned load.
        let v = unsafe { _mm256_loadu_si256(bytes.as_ptr().add(32 * k) as *const __m256i) };
        let stop = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, lf), _mm256_cmpeq_epi8(v, cr)),
            _mm256_cmpeq_epi8(v, q),
        );
        let blank = _mm256_or_si256(_mm256_cmpeq_epi8(v, sp), _mm256_cmpeq_epi8(v, tab));
        let shift = 32 * k;
        let m = |x: i32| u64::from(x as u32) << shift;
        w.delim |= m(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, d)));
        w.stop |= m(_mm256_movemask_epi8(stop));
        w.blank |= m(_mm256_movemask_epi8(blank));
        w.high |= m(_mm256_movemask_epi8(v));
    }
    w
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
unsafe fn word_sse2(bytes: &[u8; 64], delim: u8, quote: u8) -> Word {
    use std::arch::x86_64::*;
    let (d, q) = (_mm_set1_epi8(delim as i8), _mm_set1_epi8(quote as i8));
    let (lf, cr) = (_mm_set1_epi8(b'\n' as i8), _mm_set1_epi8(b'\r' as i8));
    let (sp, tab) = (_mm_set1_epi8(b' ' as i8), _mm_set1_epi8(b'\t' as i8));
    let mut w = Word::default();
    for k in 0..4 {
        // SAFETY: 16 bytes at 16 * k of 64, an unaligned load.
        let v = unsafe { _mm_loadu_si128(bytes.as_ptr().add(16 * k) as *const __m128i) };
        let stop = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)),
            _mm_cmpeq_epi8(v, q),
        );
        let blank = _mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, tab));
        let shift = 16 * k;
        let m = |x: i32| u64::from(x as u16) << shift;
        w.delim |= m(_mm_movemask_epi8(_mm_cmpeq_epi8(v, d)));
        w.stop |= m(_mm_movemask_epi8(stop));
        w.blank |= m(_mm_movemask_epi8(blank));
        w.high |= m(_mm_movemask_epi8(v));
    }
    w
}

/// Byte by byte: the classification for targets without a vector path, and
/// the oracle of the vector ones in the tests.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn word_scalar(bytes: &[u8; 64], delim: u8, quote: u8) -> Word {
    let mut w = Word::default();
    for (i, &c) in bytes.iter().enumerate() {
        let bit = 1u64 << i;
        if c == delim {
            w.delim |= bit;
        }
        if c == b'\n' || c == b'\r' || c == quote {
            w.stop |= bit;
        }
        if c == b' ' || c == b'\t' {
            w.blank |= bit;
        }
        if c >= 0x80 {
            w.high |= bit;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The scan as its definition reads, byte by byte.
    fn oracle(input: &[u8], delim: u8, quote: u8, eof: bool) -> (LineScan, Vec<(usize, usize)>) {
        let end = input
            .iter()
            .position(|&c| c == b'\n' || c == b'\r' || c == quote);
        let len = match end {
            Some(i) if input[i] == quote => return (LineScan::Quote { at: i }, vec![]),
            Some(i) => i,
            None if eof => input.len(),
            None => return (LineScan::Open, vec![]),
        };
        let line = &input[..len];
        let mut bounds = vec![];
        let mut start = 0;
        for (i, &c) in line.iter().enumerate() {
            if c == delim {
                bounds.push((start, i));
                start = i + 1;
            }
        }
        bounds.push((start, len));
        let blank = |c: u8| c == b' ' || c == b'\t';
        let edge = bounds
            .iter()
            .any(|&(s, e)| s < e && (blank(line[s]) || blank(line[e - 1])));
        let mut flags = 0;
        if line.is_ascii() {
            flags |= ASCII;
        }
        if !edge {
            flags |= NO_BLANK_EDGE;
        }
        (LineScan::Plain { len, flags }, bounds)
    }

    fn check(input: &[u8], delim: u8, eof: bool) -> Result<(), TestCaseError> {
        let want = oracle(input, delim, b'"', eof);
        let mut bounds = vec![(7, 7)];
        let got = scan_line(input, delim, b'"', eof, &mut bounds);
        prop_assert_eq!(got, want.0, "{:?}", String::from_utf8_lossy(input));
        prop_assert_eq!(&bounds[1..], &want.1[..]);
        let mut bounds = vec![];
        let scalar = scan_with(input, delim, b'"', eof, &mut bounds, word_scalar);
        prop_assert_eq!(scalar, want.0);
        prop_assert_eq!(bounds, want.1);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Lines of delimiters, blanks, accents and a few breaks or quotes,
        /// short and across several 64-byte words, agree with the oracle.
        #[test]
        fn the_scan_is_the_byte_by_byte_one(
            input in proptest::collection::vec(prop_oneof![
                8 => proptest::sample::select(b"ab;; \t,".to_vec()),
                1 => proptest::sample::select(vec![0xc3u8, 0xa9, b'\n', b'\r', b'"']),
            ], 0..200),
            eof in any::<bool>(),
            comma in any::<bool>(),
        ) {
            check(&input, if comma { b',' } else { b';' }, eof)?;
        }
    }

    #[test]
    fn blank_edges_across_words() {
        // A blank as the last byte of a word, before a delimiter that starts
        // the next; and a delimiter last, before a blank that starts the next.
        for at in [62usize, 63, 64, 126, 127] {
            let mut line = vec![b'a'; 130];
            line[at] = b' ';
            line[at + 1] = b';';
            check(&line, b';', true).unwrap();
            let mut line = vec![b'a'; 130];
            line[at] = b';';
            line[at + 1] = b'\t';
            check(&line, b';', true).unwrap();
        }
    }
}
