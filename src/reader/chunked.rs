//! Parallel reading of one input: cut into pieces at record boundaries, the
//! pieces parsed on the rayon pool, their results handed back in input order.
//!
//! # Design
//!
//! The input is read in blocks ([`ChunkOptions::block_bytes`], 4 MiB by
//! default), never whole, so memory stays flat for any file size. Within a
//! block, record boundaries are found by *quote parity*: counted from the
//! block's start (a record boundary), a line feed after an even number of
//! quote bytes ends a record when the file follows RFC 4180 quoting. Cutting
//! on `\n` alone would split the records whose quoted fields hold line
//! breaks, which HR files do carry.
//!
//! Parity is a guess: a quote inside an unquoted field (`O"Brien`) or an
//! escape byte is literal and flips it. So every piece is checked. Each is
//! read by its own [`SnapshotReader`] from its start, and must end with its
//! last record closed: a piece cut inside a quoted field ends in an
//! unterminated quote. By induction from the input's start, every piece
//! accepted in order starts and ends on a true record boundary, and its
//! records are the ones the serial reader gives. At the first piece that
//! fails the check, the rest of the block is read serially up to a record
//! end, and the next block starts from there: a file full of stray quotes is
//! read at the serial reader's speed, never wrongly.
//!
//! Cuts are made only after a line feed, so a CRLF is never split. Positions
//! inside a piece count from the piece's start; [`Offset`] moves them to the
//! input's. A piece's line count is known once it is read, so the offsets
//! are summed in order as the pieces are handed back.

use std::io::Read;

use memchr::{memchr2, memrchr2};
use rayon::prelude::*;

use super::{Position, ReadError, ReaderOptions, Record, RecordProblem, Rest, SnapshotReader};

/// How [`read_chunked`] cuts its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Bytes read at a time: what a read holds besides its pieces' results.
    /// A record longer than a block makes that block grow to hold it.
    pub block_bytes: usize,
    /// About the size of one piece, the unit of parallel work.
    pub piece_bytes: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        if cfg!(debug_assertions) {
            // Tiny pieces in debug builds, so every test that reads a file
            // crosses piece and block boundaries.
            ChunkOptions {
                block_bytes: 256,
                piece_bytes: 48,
            }
        } else {
            ChunkOptions {
                block_bytes: 4 << 20,
                piece_bytes: 256 << 10,
            }
        }
    }
}

/// Where a piece starts in the input: what to add to the positions its
/// reader gives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    /// Bytes before the piece.
    pub byte: u64,
    /// Lines before the piece (line breaks inside records count).
    pub line: u64,
    /// Records before the piece.
    pub record: u64,
}

impl Offset {
    /// A position of the piece's reader, as a position in the input.
    pub fn apply(self, p: Position) -> Position {
        Position {
            byte: self.byte + p.byte,
            line: self.line + p.line,
            record: self.record + p.record,
        }
    }

    fn apply_error(self, e: ReadError) -> ReadError {
        match e {
            ReadError::NotText { what, line, byte } => ReadError::NotText {
                what,
                line: self.line + line,
                byte: self.byte + byte,
            },
            e => e,
        }
    }
}

/// The reader of one piece. Positions count from the piece's start: see
/// [`Offset`].
pub struct Piece<'a> {
    reader: SnapshotReader<Box<dyn Read + 'a>>,
    len: usize,
    /// Whether a record ran to the piece's end inside quotes.
    open_quote: bool,
}

impl<'a> Piece<'a> {
    fn new(data: &'a [u8], opts: &ReaderOptions) -> Piece<'a> {
        let opts = ReaderOptions {
            // The reader copies the piece through its buffer, which grows
            // for a longer record: a small one is enough.
            buffer_bytes: opts.buffer_bytes.min(32 << 10).min(data.len() + 1),
            ..opts.clone()
        };
        Piece::reading(Box::new(data), data.len(), opts)
    }

    fn reading(input: Box<dyn Read + 'a>, len: usize, opts: ReaderOptions) -> Piece<'a> {
        Piece {
            reader: SnapshotReader::continuing(input, opts),
            len,
            open_quote: false,
        }
    }

    /// The piece's length in bytes (to size what is made from it).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the piece's next record into `rec`, as
    /// [`SnapshotReader::read_record`] does.
    pub fn read_record(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        let more = self.reader.read_record(rec)?;
        if more && rec.problem() == Some(RecordProblem::UnterminatedQuote) {
            self.open_quote = true;
        }
        Ok(more)
    }

    /// Reads what the caller left unread. Returns whether the piece ended
    /// on a record boundary, and what it consumed.
    fn finish(mut self) -> Result<(bool, Offset), ReadError> {
        let mut rec = Record::new();
        while self.read_record(&mut rec)? {}
        Ok((!self.open_quote, self.reader.consumed()))
    }
}

/// Reads `input` from its start in pieces on the rayon pool: `parse` reads
/// each piece (positions relative to the piece) and returns what it made;
/// `emit` gets these in input order with each piece's [`Offset`]. The records
/// are exactly those [`SnapshotReader`] gives with the same options.
///
/// The first error in input order stops the read; pieces before it were
/// emitted.
pub fn read_chunked<R, T, P, E>(
    input: R,
    opts: &ReaderOptions,
    chunks: &ChunkOptions,
    parse: P,
    emit: E,
) -> Result<Offset, ReadError>
where
    R: Read,
    T: Send,
    P: Fn(&mut Piece<'_>) -> Result<T, ReadError> + Sync,
    E: FnMut(T, Offset),
{
    let rest = SnapshotReader::new(input, opts.clone()).into_rest()?;
    read_rest(rest, opts, chunks, parse, emit)
}

/// A piece read and checked, waiting to be handed on.
struct Outcome<T> {
    parsed: Result<T, ReadError>,
    /// Bytes, lines and records of the piece (unused after an error).
    consumed: Offset,
}

/// What reading one piece gave: its outcome and whether it ended on a
/// record boundary.
fn read_piece<T>(
    mut piece: Piece<'_>,
    parse: &(impl Fn(&mut Piece<'_>) -> Result<T, ReadError> + ?Sized),
) -> (Outcome<T>, bool) {
    let failed = |e| {
        let outcome = Outcome {
            parsed: Err(e),
            consumed: Offset::default(),
        };
        (outcome, true)
    };
    match parse(&mut piece) {
        Ok(value) => match piece.finish() {
            Ok((closed, consumed)) => {
                let outcome = Outcome {
                    parsed: Ok(value),
                    consumed,
                };
                (outcome, closed)
            }
            Err(e) => failed(e),
        },
        Err(e) => failed(e),
    }
}

/// Hands the pieces of `pending` on, in order, moving `at` past each.
fn hand_on<T>(
    pending: &mut Vec<Outcome<T>>,
    at: &mut Offset,
    emit: &mut impl FnMut(T, Offset),
) -> Result<(), ReadError> {
    for o in pending.drain(..) {
        let value = o.parsed.map_err(|e| at.apply_error(e))?;
        emit(value, *at);
        // A piece's own count, not its slice's length: the last piece of
        // a file read serially has no known length.
        at.byte += o.consumed.byte;
        at.line += o.consumed.line;
        at.record += o.consumed.record;
    }
    Ok(())
}

/// [`read_chunked`] from where a [`SnapshotReader`] stopped (after a
/// header). Returns where the input ended.
///
/// The work is pipelined: while the pool reads the pieces of one block,
/// this thread hands on the pieces of the block before and reads the next
/// block from the input.
pub(crate) fn read_rest<R, T, P, E>(
    rest: Rest<R>,
    opts: &ReaderOptions,
    chunks: &ChunkOptions,
    parse: P,
    mut emit: E,
) -> Result<Offset, ReadError>
where
    R: Read,
    T: Send,
    P: Fn(&mut Piece<'_>) -> Result<T, ReadError> + Sync,
    E: FnMut(T, Offset),
{
    let Rest {
        buffered: mut buf,
        mut input,
        mut eof,
        mut at,
    } = rest;
    let block = chunks.block_bytes.max(1);
    let quote = opts.quote;
    let mut want = block;
    // Pieces read and checked, not handed on yet.
    let mut pending: Vec<Outcome<T>> = Vec::new();
    let mut next: Vec<u8> = Vec::new();
    fill(&mut buf, want, &mut input, &mut eof)?;
    loop {
        if buf.is_empty() {
            hand_on(&mut pending, &mut at, &mut emit)?;
            return Ok(at);
        }
        let end = if eof {
            buf.len()
        } else {
            last_boundary(&buf, quote)
        };
        if end == 0 {
            // No line feed at even parity: a stray quote, or one record
            // longer than the block. Read serially to a record end.
            hand_on(&mut pending, &mut at, &mut emit)?;
            let safe = serial_end(&buf, opts, chunks.piece_bytes, eof);
            if safe > 0 {
                let (outcome, _) = read_piece(Piece::new(&buf[..safe], opts), &parse);
                pending.push(outcome);
                buf.drain(..safe);
                want = block;
            } else if buf.len() >= block.saturating_add(opts.max_record_bytes.saturating_mul(2)) {
                // A record past the size limit (an unterminated quote?):
                // the rest is read serially, in the reader's bounded
                // memory, as one piece.
                let rest: Box<dyn Read + '_> =
                    Box::new(std::io::Cursor::new(std::mem::take(&mut buf)).chain(&mut input));
                let (outcome, _) = read_piece(Piece::reading(rest, 0, opts.clone()), &parse);
                pending.push(outcome);
                hand_on(&mut pending, &mut at, &mut emit)?;
                return Ok(at);
            } else {
                want = buf.len() * 2;
            }
            fill(&mut buf, want, &mut input, &mut eof)?;
            continue;
        }
        want = block;
        let cuts = cut(&buf[..end], chunks.piece_bytes.max(1), quote);
        let block_eof = eof;
        // The pool reads this block's pieces; meanwhile this thread hands
        // on the last block's and reads the next block after the cut.
        next.clear();
        next.extend_from_slice(&buf[end..]);
        let mut outcomes = Vec::new();
        let (mut handed, mut filled) = (Ok(()), Ok(()));
        rayon::in_place_scope(|s| {
            s.spawn(|_| {
                outcomes = cuts
                    .par_windows(2)
                    .map(|w| read_piece(Piece::new(&buf[w[0]..w[1]], opts), &parse))
                    .collect();
            });
            handed = hand_on(&mut pending, &mut at, &mut emit);
            filled = fill(&mut next, want, &mut input, &mut eof);
        });
        handed?;
        filled?;
        let mut done = 0;
        let mut failed = false;
        for (w, (outcome, closed)) in cuts.windows(2).zip(outcomes) {
            let last_of_input = block_eof && w[1] == buf.len();
            let error = outcome.parsed.is_err();
            // An error is real: the piece starts on a record boundary.
            if !error && !closed && !last_of_input {
                failed = true;
                break;
            }
            pending.push(outcome);
            done = w[1];
            if error {
                hand_on(&mut pending, &mut at, &mut emit)?;
            }
        }
        if failed {
            // Parity was wrong: read on serially to a record end at or
            // after the block's cut. What follows joins the next block.
            let region = &buf[done..];
            let safe = serial_end(region, opts, end - done, block_eof);
            if safe > 0 {
                let (outcome, _) = read_piece(Piece::new(&region[..safe], opts), &parse);
                pending.push(outcome);
                done += safe;
            }
            // `next` holds the block's tail (`buf[end..]`) and more: go on
            // from `done` in `buf[..end]` followed by `next`.
            if done <= end {
                buf.truncate(end);
                buf.drain(..done);
                buf.extend_from_slice(&next);
            } else {
                next.drain(..done - end);
                std::mem::swap(&mut buf, &mut next);
            }
            if safe == 0 {
                want = buf.len() * 2;
                fill(&mut buf, want, &mut input, &mut eof)?;
            }
        } else {
            std::mem::swap(&mut buf, &mut next);
        }
    }
}

/// Reads `input` onto `buf` until it holds `want` bytes or the input ends.
fn fill<R: Read>(
    buf: &mut Vec<u8>,
    want: usize,
    input: &mut R,
    eof: &mut bool,
) -> Result<(), ReadError> {
    if *eof || buf.len() >= want {
        return Ok(());
    }
    let more = want - buf.len();
    buf.reserve_exact(more);
    let got = input.by_ref().take(more as u64).read_to_end(buf)?;
    if got < more {
        *eof = true;
    }
    Ok(())
}

/// Quote bytes in `bytes`. HR files quote few fields, so a search beats a
/// counting loop.
fn quotes_in(bytes: &[u8], quote: u8) -> usize {
    memchr::memchr_iter(quote, bytes).count()
}

/// Just past the last line feed of `buf` preceded by an even number of
/// quotes, or 0.
fn last_boundary(buf: &[u8], quote: u8) -> usize {
    let total = quotes_in(buf, quote);
    let mut after = 0;
    let mut end = buf.len();
    while let Some(i) = memrchr2(b'\n', quote, &buf[..end]) {
        if buf[i] == quote {
            after += 1;
        } else if (total - after).is_multiple_of(2) {
            return i + 1;
        }
        end = i;
    }
    0
}

/// Cuts `data` (whole records, by parity) into pieces of about `piece`
/// bytes: the offsets `0, c1, …, data.len()`, each `ci` just past a line
/// feed at even quote parity.
fn cut(data: &[u8], piece: usize, quote: u8) -> Vec<usize> {
    let targets: Vec<usize> = (1..data.len().div_ceil(piece)).map(|k| k * piece).collect();
    // Quote parity at each target, from counts per segment on the pool.
    let counts: Vec<usize> = targets
        .par_iter()
        .enumerate()
        .map(|(k, &t)| {
            let from = if k == 0 { 0 } else { targets[k - 1] };
            quotes_in(&data[from..t], quote)
        })
        .collect();
    let mut cuts = vec![0];
    let mut before = 0;
    for (&t, n) in targets.iter().zip(counts) {
        before += n;
        let mut odd = before % 2 == 1;
        let mut i = t;
        while let Some(j) = memchr2(b'\n', quote, &data[i..]) {
            let at = i + j;
            if data[at] == quote {
                odd = !odd;
            } else if !odd {
                let c = at + 1;
                if c > *cuts.last().unwrap_or(&0) && c < data.len() {
                    cuts.push(c);
                }
                break;
            }
            i = at + 1;
        }
    }
    cuts.push(data.len());
    cuts
}

/// Reads `region` (from a record boundary) serially, and returns the end of
/// the first record that ends at or after `past` bytes, or of the last one
/// that surely ended (its end is not the region's, unless the input ended
/// there); 0 when no record surely ended.
fn serial_end(region: &[u8], opts: &ReaderOptions, past: usize, eof: bool) -> usize {
    let mut reader = SnapshotReader::continuing(region, opts.clone());
    let mut rec = Record::new();
    let mut safe = 0;
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => {
                let at = reader.byte_offset() as usize;
                if at >= region.len() {
                    return if eof { region.len() } else { safe };
                }
                safe = at;
                if at >= past {
                    return safe;
                }
            }
            Ok(false) => return if eof { region.len() } else { safe },
            // Not text: the piece read next reports it, from its start.
            Err(_) => return if safe == 0 { region.len() } else { safe },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_outside_quotes() {
        let data = b"a,\"x\ny\"\nb,c\n\"p\nq\",r\ns,t\n";
        for piece in 1..data.len() + 1 {
            let cuts = cut(data, piece, b'"');
            for &c in &cuts[1..cuts.len() - 1] {
                assert!([8, 12, 20].contains(&c), "piece {piece}: cut at {c}");
            }
            assert_eq!(cuts.first(), Some(&0));
            assert_eq!(cuts.last(), Some(&data.len()));
        }
        assert_eq!(last_boundary(data, b'"'), data.len());
        assert_eq!(last_boundary(b"a\n\"b\nc", b'"'), 2);
        assert_eq!(last_boundary(b"\"b\nc", b'"'), 0);
    }
}
