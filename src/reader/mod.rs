//! The streaming snapshot reader: bytes in, [`Record`]s out.
//!
//! # Design
//!
//! HR exports are mostly plain lines: no quotes, one record per line. The
//! reader takes a fast path for those — `memchr` finds the line end, checks the
//! line holds no quote byte, and splits it on the delimiter — and hands every
//! line that holds a quote to `csv-core`, which follows the quoting rules of
//! RFC 4180 across line breaks. Both paths agree on every input (a property
//! test checks this against the `csv` crate).
//!
//! The reader owns one buffer that grows only to the longest record (bounded
//! by [`ReaderOptions::max_record_bytes`]); the caller owns the [`Record`] it
//! reads into, so reading allocates nothing in the steady state.
//!
//! Lines end with LF, CRLF or a lone CR. Blank lines (empty or only spaces
//! and tabs) are not records. A UTF-8 byte-order mark at the start is skipped;
//! a UTF-16 one, or a NUL byte anywhere, means the input is not text and is a
//! [`ReadError::NotText`].

pub(crate) mod chunked;
pub mod json;
mod record;
mod scan;

pub use chunked::{read_chunked, ChunkOptions, Offset, Piece};
pub use json::{JsonColumns, JsonProblem};
pub use record::{Position, Record, RecordProblem};

use std::io::{self, Read};

use memchr::{memchr, memchr2};

/// How to read a delimited file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderOptions {
    pub delimiter: u8,
    pub quote: u8,
    /// An escape byte inside quoted fields (e.g. `\`), besides doubled quotes.
    pub escape: Option<u8>,
    /// Whether `""` inside a quoted field is one quote (RFC 4180). Default true.
    pub double_quote: bool,
    /// A raw record longer than this is reported as
    /// [`RecordProblem::RecordTooLarge`] instead of growing memory. Default 1 MiB.
    pub max_record_bytes: usize,
    /// A field longer than this is reported as [`RecordProblem::FieldTooLarge`].
    /// Default 64 KiB.
    pub max_field_bytes: usize,
    /// Initial buffer size. Default 256 KiB.
    pub buffer_bytes: usize,
    /// The input is JSON Lines: each line is decoded into these columns
    /// (see [`json`]). Default none: the input is delimited text.
    pub json: Option<std::sync::Arc<JsonColumns>>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            delimiter: b',',
            quote: b'"',
            escape: None,
            double_quote: true,
            max_record_bytes: 1 << 20,
            max_field_bytes: 64 << 10,
            buffer_bytes: 256 << 10,
            json: None,
        }
    }
}

/// An error that stops reading the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A NUL byte or a UTF-16 byte-order mark: the file is not a text file.
    #[error("not a text file: {what} at line {line}, byte {byte}")]
    NotText {
        what: &'static str,
        line: u64,
        byte: u64,
    },
}

/// Reads records from any [`io::Read`] in bounded memory.
pub struct SnapshotReader<R> {
    rdr: R,
    /// csv-core's reader for the records the fast path leaves to it, made
    /// on first use (building it costs more than a small piece's lines).
    core: Core,
    opts: ReaderOptions,
    buf: Vec<u8>,
    /// Unread data is `buf[pos..end]`.
    pos: usize,
    end: usize,
    eof: bool,
    /// Absolute offset of `buf[0]` in the input.
    base: u64,
    /// Line number of `buf[pos]`.
    line: u64,
    records: u64,
    started: bool,
    /// Whether this reader sees the start of the input (byte-order marks
    /// are looked for there); false for a [`SnapshotReader::continuing`] one.
    first: bool,
    done: bool,
    /// Output sink for fields of a record past its size limit.
    scratch: Vec<u8>,
    /// Line breaks consumed so far inside the record being read by
    /// csv-core, and whether the last byte consumed was a CR: a NUL found
    /// mid-record is reported on its own line.
    record_breaks: u64,
    pending_cr: bool,
    /// Whether csv-core has been given no input yet.
    core_fresh: bool,
    /// The raw line of a JSON Lines record, while it is decoded.
    json_line: Vec<u8>,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(rdr: R, opts: ReaderOptions) -> SnapshotReader<R> {
        let cap = opts.buffer_bytes.max(64);
        SnapshotReader {
            rdr,
            core: Core(None),
            buf: vec![0; cap],
            opts,
            pos: 0,
            end: 0,
            eof: false,
            base: 0,
            line: 1,
            records: 0,
            started: false,
            first: true,
            done: false,
            scratch: Vec::new(),
            record_breaks: 0,
            pending_cr: false,
            core_fresh: true,
            json_line: Vec::new(),
        }
    }

    /// A reader of input that continues a file at a record boundary (a
    /// piece of [`read_chunked`]): no byte-order mark is looked for, and
    /// positions count from the piece's start.
    pub(crate) fn continuing(rdr: R, opts: ReaderOptions) -> SnapshotReader<R> {
        let mut reader = SnapshotReader::new(rdr, opts);
        (reader.started, reader.first) = (true, false);
        reader
    }

    /// What was consumed so far: bytes, lines (line breaks inside records
    /// count) and records.
    pub(crate) fn consumed(&self) -> Offset {
        Offset {
            byte: self.byte_offset(),
            line: self.line - 1,
            record: self.records,
        }
    }

    /// Stops reading: the bytes read ahead, the input, and where the next
    /// record starts — for [`read_chunked`] to go on from there.
    pub(crate) fn into_rest(mut self) -> Result<Rest<R>, ReadError> {
        if !self.started {
            self.start()?;
        }
        Ok(Rest {
            buffered: self.buf[self.pos..self.end].to_vec(),
            input: self.rdr,
            eof: self.eof || self.done,
            at: Offset {
                byte: self.base + self.pos as u64,
                line: self.line - 1,
                record: self.records,
            },
        })
    }

    pub fn options(&self) -> &ReaderOptions {
        &self.opts
    }

    /// Bytes consumed so far (the start of the next record).
    pub fn byte_offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads the next record into `rec`. Returns `Ok(false)` at the end of
    /// the input. A record with a [`RecordProblem`] is still returned.
    #[inline]
    pub fn read_record(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        let more = self.read_raw(rec)?;
        if more {
            if let Some(json) = &self.opts.json {
                json.decode(rec, &mut self.json_line);
            }
        }
        Ok(more)
    }

    /// [`SnapshotReader::read_record`] before a JSON line is decoded.
    fn read_raw(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        if !self.started {
            self.start()?;
        }
        rec.clear();
        if self.done {
            return Ok(false);
        }
        loop {
            // What a try before this one pushed.
            rec.bounds.clear();
            let avail = &self.buf[self.pos..self.end];
            if avail.is_empty() && self.eof {
                self.done = true;
                return Ok(false);
            }
            // One pass finds the line's end and, for a line without quotes,
            // its fields and flags; a quote sends the line to the quoting rules.
            let (opts, eof) = (&self.opts, self.eof);
            let scanned = scan::scan_line(avail, opts.delimiter, opts.quote, eof, &mut rec.bounds);
            let (has_quote, found, flags) = match scanned {
                scan::LineScan::Plain { len, flags } => {
                    (false, (len < avail.len()).then_some(len), flags)
                }
                scan::LineScan::Quote { at } => {
                    (true, memchr2(b'\n', b'\r', &avail[at..]).map(|i| at + i), 0)
                }
                scan::LineScan::Open => (false, None, 0),
            };
            let (line_len, term_len) = match found {
                Some(i) => {
                    if avail[i] == b'\r' && i + 1 == avail.len() && !self.eof {
                        // A CR at the end of the buffer: is it CRLF?
                        self.fill()?;
                        continue;
                    }
                    let crlf = avail[i] == b'\r' && avail.get(i + 1) == Some(&b'\n');
                    (i, 1 + crlf as usize)
                }
                None if self.eof => (avail.len(), 0),
                None => {
                    if avail.len() >= self.opts.max_record_bytes {
                        return self.read_slow(rec);
                    }
                    self.fill()?;
                    continue;
                }
            };
            if line_len > self.opts.max_record_bytes {
                // Too large, however much of it the buffer holds: csv-core
                // reads it and keeps the fields before the limit.
                return self.read_slow(rec);
            }
            let line = &avail[..line_len];
            if is_blank(line) {
                self.pos += line_len + term_len;
                self.line += 1;
                continue;
            }
            rec.reserve_bytes(line_len);
            if has_quote {
                if self.opts.escape.is_some()
                    || !self.opts.double_quote
                    || !split_quoted_line(line, self.opts.delimiter, self.opts.quote, rec)
                {
                    // A quoted field runs past the line (or the quoting
                    // rules are not RFC 4180): csv-core takes the record.
                    return self.read_slow(rec);
                }
            } else {
                // The scan pushed the fields' bounds: the line is copied
                // once, and they are ranges of the copy.
                rec.bytes[..line_len].copy_from_slice(line);
                rec.len = line_len;
                rec.quoted.resize(rec.bounds.len(), false);
                rec.flags = flags | record::SCANNED;
            }
            rec.position = Position {
                byte: self.base + self.pos as u64,
                line: self.line,
                record: self.records,
            };
            self.pos += line_len + term_len;
            self.line += 1;
            self.records += 1;
            self.check_fields(rec);
            return Ok(true);
        }
    }

    /// Reads one record through csv-core, starting at `self.pos`.
    fn read_slow(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        // Whatever the fast path had put in.
        rec.clear();
        rec.position = Position {
            byte: self.base + self.pos as u64,
            line: self.line,
            record: self.records,
        };
        let quote = self.opts.quote;
        let max_record = self.opts.max_record_bytes;
        let mut raw_len = 0usize;
        (self.record_breaks, self.pending_cr) = (0, false);
        let mut overflow = false;
        let mut last_byte = 0u8;
        'fields: loop {
            if self.pos == self.end && !self.eof {
                self.fill()?;
            }
            let quoted = self.pos < self.end && self.buf[self.pos] == quote;
            loop {
                if self.pos == self.end && !self.eof {
                    self.fill()?;
                }
                let input = &self.buf[self.pos..self.end];
                if input.is_empty() {
                    // End of input inside a record: probe with a line break.
                    // If csv-core is inside quotes it swallows the break;
                    // otherwise the break ends the record as EOF would.
                    let mut probe_out = [0u8; 4];
                    let core = self.core.get(&self.opts);
                    let (res, _, _) = core.read_field(b"\n", &mut probe_out);
                    match res {
                        csv_core::ReadFieldResult::Field { .. } => {
                            self.push_end(rec, quoted, overflow);
                            break 'fields;
                        }
                        _ => {
                            // What the probe wrote went to `probe_out`; the
                            // record keeps what was read before it.
                            let _ = core.read_field(&[], &mut probe_out);
                            self.push_end(rec, quoted, overflow);
                            rec.problem = Some(RecordProblem::UnterminatedQuote);
                            self.done = true;
                            self.records += 1;
                            rec.quoted.resize(rec.bounds.len(), false);
                            return Ok(true);
                        }
                    }
                }
                // csv-core drops a UTF-8 byte-order mark from the first
                // bytes it is given. The reader skips the file's own at its
                // start; any other is data, so the first call gets one byte.
                let input = if self.core_fresh {
                    self.core_fresh = false;
                    &input[..1]
                } else {
                    input
                };
                let core = self.core.get(&self.opts);
                let (res, nin, nout) = if overflow {
                    if self.scratch.len() < 64 << 10 {
                        self.scratch.resize(64 << 10, 0);
                    }
                    core.read_field(input, &mut self.scratch)
                } else {
                    rec.reserve_bytes(input.len().clamp(64, 64 << 10));
                    let out = &mut rec.bytes[rec.len..];
                    core.read_field(input, out)
                };
                let consumed = &input[..nin];
                // The record's size is its bytes without the terminator, as
                // the fast path counts it.
                let ends_line =
                    matches!(res, csv_core::ReadFieldResult::Field { record_end: true })
                        && matches!(consumed.last(), Some(b'\n' | b'\r'));
                self.record_breaks += count_breaks(consumed, &mut self.pending_cr);
                if let Some(&b) = consumed.last() {
                    last_byte = b;
                }
                self.pos += nin;
                raw_len += nin;
                if !overflow {
                    rec.len += nout;
                    if raw_len - ends_line as usize > max_record {
                        overflow = true;
                        rec.problem = Some(RecordProblem::RecordTooLarge { limit: max_record });
                    }
                }
                match res {
                    csv_core::ReadFieldResult::InputEmpty => {
                        if !self.eof {
                            self.fill()?;
                        }
                    }
                    csv_core::ReadFieldResult::OutputFull => {
                        if !overflow {
                            let more = rec.bytes.len();
                            rec.reserve_bytes(more);
                        }
                    }
                    csv_core::ReadFieldResult::Field { record_end } => {
                        self.push_end(rec, quoted, overflow);
                        if record_end {
                            break 'fields;
                        }
                        continue 'fields;
                    }
                    csv_core::ReadFieldResult::End => {
                        self.push_end(rec, quoted, overflow);
                        break 'fields;
                    }
                }
            }
        }
        // The terminator was consumed and counted; a CR may be followed by
        // the LF of a CRLF, which belongs to this record too.
        if last_byte == b'\r' {
            if self.pos == self.end && !self.eof {
                self.fill()?;
            }
            if self.pos < self.end && self.buf[self.pos] == b'\n' {
                self.pos += 1;
            }
        }
        self.line += std::mem::take(&mut self.record_breaks);
        self.pending_cr = false;
        self.records += 1;
        rec.quoted.resize(rec.bounds.len(), false);
        self.check_fields(rec);
        Ok(true)
    }

    #[inline]
    fn push_end(&self, rec: &mut Record, quoted: bool, overflow: bool) {
        if overflow {
            // Past the size limit: keep the fields read before it.
            return;
        }
        let start = field_start_of(&rec.bounds);
        rec.bounds.push((start, rec.len));
        rec.quoted.push(quoted);
    }

    fn check_fields(&self, rec: &mut Record) {
        if rec.problem.is_some() {
            return;
        }
        let limit = self.opts.max_field_bytes;
        if rec.len <= limit {
            return;
        }
        if let Some(i) = rec.bounds.iter().position(|&(s, e)| e - s > limit) {
            rec.problem = Some(RecordProblem::FieldTooLarge { field: i, limit });
        }
    }

    /// Moves to byte `at` of the input, where a record starts (a
    /// [`Position::byte`] read before with the same options): the next
    /// [`SnapshotReader::read_record`] reads that record. Line numbers count
    /// from 1 again.
    pub fn seek_to_record(&mut self, at: u64) -> Result<(), ReadError>
    where
        R: io::Seek,
    {
        self.rdr.seek(io::SeekFrom::Start(at))?;
        if let Some(core) = self.core.0.as_mut() {
            core.reset();
        }
        self.core_fresh = true;
        (self.pos, self.end, self.base, self.line) = (0, 0, at, 1);
        (self.eof, self.done, self.started) = (false, false, true);
        Ok(())
    }

    fn start(&mut self) -> Result<(), ReadError> {
        self.started = true;
        while self.end - self.pos < 3 && !self.eof {
            self.fill()?;
        }
        let head = &self.buf[self.pos..self.end];
        if head.starts_with(b"\xEF\xBB\xBF") {
            self.pos += 3;
        } else if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
            return Err(ReadError::NotText {
                what: "a UTF-16 byte-order mark",
                line: 1,
                byte: 0,
            });
        }
        Ok(())
    }

    /// Moves unread data to the front, grows the buffer when it is full, and
    /// reads more. Sets `eof` when the input is exhausted.
    fn fill(&mut self) -> Result<(), ReadError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            let new_len = self.buf.len() * 2;
            self.buf.resize(new_len, 0);
        }
        loop {
            match self.rdr.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    let new = &self.buf[self.end..self.end + n];
                    if self.first
                        && self.base == 0
                        && self.end == 0
                        && (new.starts_with(b"\xFF\xFE") || new.starts_with(b"\xFE\xFF"))
                    {
                        return Err(ReadError::NotText {
                            what: "a UTF-16 byte-order mark",
                            line: 1,
                            byte: 0,
                        });
                    }
                    if let Some(i) = memchr(0, new) {
                        // Lines before it in the buffer, from the next record.
                        let before = &self.buf[self.pos..self.end + i];
                        let line = self.line
                            + self.record_breaks
                            + count_breaks(before, &mut { self.pending_cr });
                        return Err(ReadError::NotText {
                            what: "a NUL byte",
                            line,
                            byte: self.base + (self.end + i) as u64,
                        });
                    }
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What is left of an input after a [`SnapshotReader`] stopped.
pub(crate) struct Rest<R> {
    /// Bytes read ahead, from the next record on.
    pub buffered: Vec<u8>,
    pub input: R,
    /// Whether `input` is exhausted.
    pub eof: bool,
    /// Where `buffered` starts.
    pub at: Offset,
}

/// A reader's csv-core reader, made on first use (most files have no
/// quoted line, and never need one).
struct Core(Option<csv_core::Reader>);

impl Core {
    fn get(&mut self, opts: &ReaderOptions) -> &mut csv_core::Reader {
        self.0.get_or_insert_with(|| {
            csv_core::ReaderBuilder::new()
                .delimiter(opts.delimiter)
                .quote(opts.quote)
                .escape(opts.escape)
                .double_quote(opts.double_quote)
                .terminator(csv_core::Terminator::CRLF)
                .build()
        })
    }
}

/// Calls `f` with the index of every `a` or `b` in `hay`, in order.
///
/// HR lines hold a delimiter every few bytes, where one `memchr` call per
/// field costs more than the scan: compare 16 bytes at a time and walk the
/// bits of the match mask instead.
#[inline]
fn for_each_byte2(hay: &[u8], a: u8, b: u8, mut f: impl FnMut(usize)) {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is baseline on x86_64 and each
        // load reads 16 bytes at `i` with `i + 16 <= hay.len()`.
        unsafe {
            let (na, nb) = (_mm_set1_epi8(a as i8), _mm_set1_epi8(b as i8));
            while i + 16 <= hay.len() {
                let v = _mm_loadu_si128(hay.as_ptr().add(i) as *const __m128i);
                let hits = _mm_or_si128(_mm_cmpeq_epi8(v, na), _mm_cmpeq_epi8(v, nb));
                let mut mask = _mm_movemask_epi8(hits) as u32;
                while mask != 0 {
                    f(i + mask.trailing_zeros() as usize);
                    mask &= mask - 1;
                }
                i += 16;
            }
        }
    }
    for (j, &c) in hay[i..].iter().enumerate() {
        if c == a || c == b {
            f(i + j);
        }
    }
}

/// Splits a line holding quotes with csv-core's rules (RFC 4180 doubled
/// quotes; a quote not at the start of a field is literal; text after a
/// closing quote is appended). Returns false, leaving `rec` in an
/// unspecified state, when a quoted field is still open at the end of the
/// line: the record continues on the next line and needs csv-core.
///
/// One vector pass finds every delimiter and quote (`rec.marks`); the split
/// walks those marks, not the bytes. Unescaping only drops quotes, so the
/// text between two dropped quotes is copied in one run, however many
/// fields it holds.
fn split_quoted_line(line: &[u8], delimiter: u8, quote: u8, rec: &mut Record) -> bool {
    let mut marks = std::mem::take(&mut rec.marks);
    marks.clear();
    for_each_byte2(line, delimiter, quote, |i| marks.push(i as u32));
    let ok = split_at_marks(line, &marks, delimiter, quote, rec);
    rec.marks = marks;
    ok
}

fn split_at_marks(line: &[u8], marks: &[u32], delimiter: u8, quote: u8, rec: &mut Record) -> bool {
    let n = line.len();
    // `line[run..]` is not copied yet; `shift` quotes were dropped before it,
    // so `line[i]` lands at `out[i - shift]`.
    let (mut run, mut shift) = (0usize, 0usize);
    let out = &mut rec.bytes;
    let mut drop_byte = |at: usize, run: &mut usize, shift: &mut usize| {
        out[*run - *shift..at - *shift].copy_from_slice(&line[*run..at]);
        (*run, *shift) = (at + 1, *shift + 1);
    };
    let mark = |k: usize| marks.get(k).map(|&m| m as usize);
    let (mut start, mut k) = (0usize, 0usize);
    loop {
        let field_start = start - shift;
        let quoted = start < n && line[start] == quote;
        if quoted {
            drop_byte(start, &mut run, &mut shift);
            k += 1; // the opening quote is the mark at `k`
            loop {
                // The next quote; delimiters inside quotes are text.
                while mark(k).is_some_and(|m| line[m] != quote) {
                    k += 1;
                }
                let Some(q) = mark(k) else {
                    return false; // still open at the end of the line
                };
                if q + 1 < n && line[q + 1] == quote {
                    // A doubled quote: one quote of text.
                    drop_byte(q + 1, &mut run, &mut shift);
                    k += 2;
                } else {
                    drop_byte(q, &mut run, &mut shift);
                    k += 1;
                    break;
                }
            }
        }
        // Unquoted text (or what follows a closing quote) up to the
        // delimiter; a quote here is literal.
        while mark(k).is_some_and(|m| line[m] != delimiter) {
            k += 1;
        }
        let end = mark(k).unwrap_or(n);
        rec.bounds.push((field_start, end - shift));
        rec.quoted.push(quoted);
        if end == n {
            break;
        }
        (start, k) = (end + 1, k + 1); // past the delimiter
        if start == n {
            // A trailing delimiter: one more, empty field.
            rec.bounds.push((n - shift, n - shift));
            rec.quoted.push(false);
            break;
        }
    }
    out[run - shift..n - shift].copy_from_slice(&line[run..]);
    rec.len = n - shift;
    true
}

/// Where the next field starts in an unescaped record: after the last one.
#[inline]
fn field_start_of(bounds: &[(usize, usize)]) -> usize {
    bounds.last().map_or(0, |b| b.1)
}

/// Whether a line is only spaces and tabs (or empty).
#[inline]
fn is_blank(line: &[u8]) -> bool {
    match line.first() {
        None => true,
        Some(b' ' | b'\t') => line.iter().all(|&b| b == b' ' || b == b'\t'),
        Some(_) => false,
    }
}

/// Counts line breaks (LF, CRLF, lone CR) in `bytes`, carrying a trailing CR
/// across calls in `pending_cr`.
fn count_breaks(bytes: &[u8], pending_cr: &mut bool) -> u64 {
    let mut n = 0;
    for i in memchr2_iter(bytes) {
        if bytes[i] == b'\r' {
            n += 1;
            *pending_cr = true;
        } else {
            // LF: part of a CRLF when a CR came just before.
            let after_cr = if i == 0 {
                *pending_cr
            } else {
                bytes[i - 1] == b'\r'
            };
            if !after_cr {
                n += 1;
            }
            *pending_cr = false;
        }
    }
    if let Some(&b) = bytes.last() {
        *pending_cr = b == b'\r';
    }
    n
}

fn memchr2_iter(bytes: &[u8]) -> memchr::Memchr2<'_> {
    memchr::memchr2_iter(b'\n', b'\r', bytes)
}
