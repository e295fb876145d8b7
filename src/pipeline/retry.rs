//! The retry file (SPEC §11, `retry_file`): after a run, the rows that
//! were rejected or failed, byte for byte as the input had them, after its
//! header line, in `processed/<stem>.<timestamp>.retry.csv`: the client
//! fixes those rows and drops that file. None when nothing failed.
//!
//! A retry file dropped back into the inbox is applied as a partial file
//! (see [`is_retry_file`]): its rows only, nothing inferred from what it
//! lacks.
//!
//! Each failed record is read again from where the plan saw it start, by
//! the profile's reader, which finds where it ends (a quoted field may
//! hold line breaks); the bytes between are copied from the file itself,
//! not rebuilt.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{io, RunError};
use crate::profile::{HeaderMode, Profile};
use crate::reader::{ReaderOptions, Record, SnapshotReader};

/// Whether inbox file `name` is a retry file sent back
/// (`<stem>.<timestamp>.retry.csv`, or `.retry.jsonl` for JSON Lines).
pub(super) fn is_retry_file(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.ends_with(".retry.csv") || name.ends_with(".retry.jsonl")
}

/// The bytes looked at to detect an `auto` delimiter (as the plan does).
const HEAD: u64 = 64 << 10;

/// Failed records fewer than one per this many bytes of the file are each
/// read alone; more, and one pass over the file costs less than the seeks.
const SPARSE_BYTES: u64 = 64 << 10;

/// Writes the records of `input` that start at the byte offsets `starts`
/// (sorted; the plan keeps where each record starts), after its header
/// line when the profile has one, to `to`. The profile's reader finds
/// where each record ends: a few are each read alone from their start,
/// many in one pass over the file. Returns false, and writes nothing,
/// when `starts` is empty.
pub(super) fn write(
    profile: &Profile,
    input: &Path,
    starts: &[u64],
    to: &Path,
) -> Result<bool, RunError> {
    if starts.is_empty() {
        return Ok(false);
    }
    let open = || std::fs::File::open(input).map_err(io(input));
    let mut head = Vec::new();
    open()?
        .take(HEAD)
        .read_to_end(&mut head)
        .map_err(io(input))?;
    let opts = profile.reader_options(&head);
    let read_error = |e: crate::reader::ReadError| io(input)(std::io::Error::other(e.to_string()));
    let mut rec = Record::new();
    let mut file = open()?;
    let len = file.metadata().map_err(io(input))?.len();
    // Each record's byte range, in file order, the header's first.
    let mut ranges = Vec::with_capacity(starts.len() + 1);
    if starts.len() as u64 * SPARSE_BYTES < len {
        // Few failed rows: each read alone from its start, with a small
        // buffer (it grows for a longer record).
        let small = ReaderOptions {
            buffer_bytes: 16 << 10,
            ..opts.clone()
        };
        if profile.header != HeaderMode::None {
            let mut reader = SnapshotReader::new(&mut file, small.clone());
            if reader.read_record(&mut rec).map_err(read_error)? {
                ranges.push((rec.position().byte, reader.byte_offset()));
            }
        }
        for &start in starts {
            file.seek(SeekFrom::Start(start)).map_err(io(input))?;
            let mut reader = SnapshotReader::continuing(&mut file, small.clone());
            if reader.read_record(&mut rec).map_err(read_error)? {
                ranges.push((start, start + reader.byte_offset()));
            }
        }
    } else {
        // Many: one pass over the file, up to the last of them.
        let mut reader = SnapshotReader::new(&mut file, opts);
        let mut want = starts.iter().peekable();
        let mut first = profile.header != HeaderMode::None;
        while want.peek().is_some() && reader.read_record(&mut rec).map_err(read_error)? {
            let at = rec.position().byte;
            while want.next_if(|&&s| s < at).is_some() {}
            if std::mem::take(&mut first) || want.next_if(|&&s| s == at).is_some() {
                ranges.push((at, reader.byte_offset()));
            }
        }
    }
    let mut from = open()?;
    super::processed::write_atomically(to, |w| {
        let mut eol: &[u8] = b"\n";
        for (start, end) in ranges {
            from.seek(SeekFrom::Start(start))?;
            let mut bytes = Vec::with_capacity((end - start) as usize);
            (&mut from).take(end - start).read_to_end(&mut bytes)?;
            w.write_all(&bytes)?;
            if bytes.ends_with(b"\r\n") {
                eol = b"\r\n";
            } else if !bytes.ends_with(b"\n") {
                // The file's last record had no line break: one like the
                // others', so the next record starts a line.
                w.write_all(eol)?;
            }
        }
        Ok(())
    })?;
    Ok(true)
}
