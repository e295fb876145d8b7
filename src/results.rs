//! CSV output helpers.

/// Appends `field` to `out`, quoted when it must be (it holds the delimiter,
/// the quote, a line break, or starts/ends with a space) or when `always`.
pub fn write_field(out: &mut Vec<u8>, field: &[u8], delimiter: u8, quote: u8, always: bool) {
    let needs = always
        || field.first() == Some(&b' ')
        || field.last() == Some(&b' ')
        || has_special(field, delimiter, quote);
    if !needs {
        out.extend_from_slice(field);
        return;
    }
    out.push(quote);
    let mut from = 0;
    for i in memchr::memchr_iter(quote, field) {
        out.extend_from_slice(&field[from..=i]);
        out.push(quote);
        from = i + 1;
    }
    out.extend_from_slice(&field[from..]);
    out.push(quote);
}

/// Whether `field` holds the delimiter, the quote or a line break. A field
/// with no byte at or below the highest of the four holds none of them:
/// that test is one comparison a byte, without an early exit, which the
/// compiler turns into vector code; only a field that fails it is looked at
/// byte by byte (UUIDs, names and e-mails seldom hold a byte at or below
/// `,`, but the space and `'`…`+` are below it).
fn has_special(field: &[u8], delimiter: u8, quote: u8) -> bool {
    let top = delimiter.max(quote).max(b'\r');
    let low = field.iter().fold(false, |low, &b| low | (b <= top));
    low && field
        .iter()
        .any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r')
}

use std::io::{self, BufRead, Read, Write};

use crate::model::Code;
use crate::plan::{Plan, PlannedRow};

/// The results header (SPEC §4).
pub const RESULTS_HEADER: &str = "line,key,action,outcome,code,message";

/// What happened to a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, or nothing to apply.
    Ok,
    /// Rejected, or the LMS refused or could not be reached.
    Failed,
    /// `check`, `diff` and `--dry-run`.
    Planned,
    /// A safety guard held the file.
    Held,
}

impl Outcome {
    /// Every outcome, each at its own discriminant.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Planned,
        Outcome::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Planned => "planned",
            Outcome::Held => "held",
        }
    }
}

/// Writes the results CSV: UTF-8, comma-separated, RFC 4180 quoting.
pub struct ResultsWriter<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> ResultsWriter<W> {
    /// Writes the header line.
    pub fn new(mut out: W) -> io::Result<ResultsWriter<W>> {
        out.write_all(RESULTS_HEADER.as_bytes())?;
        out.write_all(b"\r\n")?;
        Ok(ResultsWriter {
            out,
            line: Vec::with_capacity(256),
        })
    }

    /// One results line: a plan row (line 0 for an inferred deletion)
    /// with its outcome.
    pub fn write(&mut self, row: PlannedRow<'_>, outcome: Outcome) -> io::Result<()> {
        self.line.clear();
        format_line(&mut self.line, row, outcome);
        self.out.write_all(&self.line)
    }

    /// Every line of a plan with the same outcome (`planned` for check/diff).
    pub fn write_plan(&mut self, plan: &Plan, outcome: Outcome) -> io::Result<()> {
        self.write_rows(plan.len(), |i| (plan.row(i), outcome))
    }

    /// Lines `0..n`, line `i` being `row(i)`. Lines are formatted on the
    /// rayon pool, a block per core at a time (bounded memory), then
    /// written in order.
    pub fn write_rows<'p>(
        &mut self,
        n: usize,
        row: impl Fn(usize) -> (PlannedRow<'p>, Outcome) + Sync,
    ) -> io::Result<()> {
        use rayon::prelude::*;
        const BLOCK: usize = 32 << 10;
        let format_block = |from: usize| {
            let mut out = Vec::with_capacity(BLOCK * 48);
            for i in from..(from + BLOCK).min(n) {
                let (row, outcome) = row(i);
                format_line(&mut out, row, outcome);
            }
            out
        };
        let cores = rayon::current_num_threads().max(1);
        let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
        for wave in starts.chunks(cores) {
            let blocks: Vec<Vec<u8>> = wave.par_iter().map(|&from| format_block(from)).collect();
            for block in blocks {
                self.out.write_all(&block)?;
            }
        }
        Ok(())
    }

    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Appends one results line to `l` (an empty `line` column for line 0).
fn format_line(l: &mut Vec<u8>, row: PlannedRow<'_>, outcome: Outcome) {
    if row.line > 0 {
        l.extend_from_slice(itoa::Buffer::new().format(row.line).as_bytes());
    }
    l.push(b',');
    write_field(l, row.key.unwrap_or("").as_bytes(), b',', b'"', false);
    l.push(b',');
    l.extend_from_slice(row.action.as_str().as_bytes());
    l.push(b',');
    l.extend_from_slice(outcome.as_str().as_bytes());
    l.push(b',');
    l.extend_from_slice(row.code.map_or("", Code::as_str).as_bytes());
    l.push(b',');
    write_field(l, row.message.as_bytes(), b',', b'"', false);
    l.extend_from_slice(b"\r\n");
}

/// One line of a results CSV, as read back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResultLine {
    /// Empty for an inferred deletion.
    pub line: String,
    pub key: String,
    pub action: String,
    pub outcome: String,
    pub code: String,
    pub message: String,
}

/// Reads a results CSV (SPEC §4) back, line after line, for as long as
/// `each` answers true. The header is skipped; quoted fields (commas,
/// quotes, line breaks in a message) are read whole.
pub fn read_lines(reader: impl Read, mut each: impl FnMut(ResultLine) -> bool) -> io::Result<()> {
    use csv_core::ReadRecordResult as R;
    let mut reader = io::BufReader::with_capacity(64 << 10, reader);
    let mut csv = csv_core::Reader::new();
    let mut out = vec![0u8; 4096];
    let mut ends = vec![0usize; 8];
    let (mut out_len, mut ends_len) = (0, 0);
    let mut header = true;
    loop {
        let input = reader.fill_buf()?;
        let (result, read, wrote, ended) =
            csv.read_record(input, &mut out[out_len..], &mut ends[ends_len..]);
        reader.consume(read);
        out_len += wrote;
        ends_len += ended;
        match result {
            R::InputEmpty => {}
            R::OutputFull => out.resize(out.len() * 2, 0),
            R::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            R::End => return Ok(()),
            R::Record => {
                let mut fields = ends[..ends_len].iter().scan(0, |start, &end| {
                    let field = String::from_utf8_lossy(&out[*start..end]).into_owned();
                    *start = end;
                    Some(field)
                });
                let mut next = || fields.next().unwrap_or_default();
                let line = ResultLine {
                    line: next(),
                    key: next(),
                    action: next(),
                    outcome: next(),
                    code: next(),
                    message: next(),
                };
                (out_len, ends_len) = (0, 0);
                if !std::mem::take(&mut header) && !each(line) {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The quick test says what a byte-by-byte look at the field says:
        /// delimiters and quotes of the presets and any byte, fields of
        /// those bytes, the byte just above the delimiter, line breaks, `-`
        /// and any byte.
        #[test]
        fn has_special_is_the_plain_test(
            delimiter in prop_oneof![Just(b','), Just(b';'), Just(b'\t'), Just(b'|'), any::<u8>()],
            quote in prop_oneof![Just(b'"'), Just(b'\''), any::<u8>()],
            picks in proptest::collection::vec((0u8..8, any::<u8>()), 0..80),
        ) {
            let field: Vec<u8> = picks
                .iter()
                .map(|&(kind, any)| match kind {
                    0 => delimiter,
                    1 => quote,
                    2 => delimiter.wrapping_add(1),
                    3 => b'\r',
                    4 => b'\n',
                    5 => b'-',
                    _ => any,
                })
                .collect();
            let plain = field
                .iter()
                .any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r');
            prop_assert_eq!(super::has_special(&field, delimiter, quote), plain);
        }
    }
}
