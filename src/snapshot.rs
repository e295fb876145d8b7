//! A snapshot file opened through a profile: the reader set up for the file
//! (delimiter detected when the profile says `auto`), the header read, and
//! the [`Layout`] it gives. Every consumer of a file starts here.

use std::io::{Chain, Cursor, Read, Seek};

use crate::profile::{HeaderError, HeaderMode, Layout, Profile};
use crate::reader::{
    ChunkOptions, Offset, Piece, ReadError, ReaderOptions, Record, SnapshotReader,
};

/// A file refused whole: nothing from it is applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    #[error("{0}")]
    Header(HeaderError),
    #[error("{0}")]
    Read(ReadError),
}

/// Bytes looked at to detect the delimiter.
const HEAD: u64 = 8 << 10;

/// The records of one file, after its header.
pub struct Snapshot<R> {
    reader: SnapshotReader<Chain<Cursor<Vec<u8>>, R>>,
    layout: Layout,
}

impl<R: Read> Snapshot<R> {
    /// Opens `input` with `profile`: a header that does not fit is a
    /// [`FileError::Header`]; an empty file has the profile's own layout.
    pub fn open(profile: &Profile, mut input: R) -> Result<Snapshot<R>, FileError> {
        let mut head = Vec::with_capacity(HEAD as usize);
        (&mut input)
            .take(HEAD)
            .read_to_end(&mut head)
            .map_err(|e| FileError::Read(e.into()))?;
        let opts = profile.reader_options(&head);
        let mut reader = SnapshotReader::new(Cursor::new(head).chain(input), opts);
        let layout = if profile.header == HeaderMode::None {
            profile.layout(None)
        } else {
            let mut header = Record::new();
            if reader.read_record(&mut header).map_err(FileError::Read)? {
                profile.layout(Some(&header))
            } else {
                profile.layout(None)
            }
        }
        .map_err(FileError::Header)?;
        Ok(Snapshot { reader, layout })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether a record of `other` maps as the same record of this file
    /// would: both are read with the same options (delimiter, quoting) and
    /// name the same columns for the same fields.
    pub fn reads_like<S: Read>(&self, other: &Snapshot<S>) -> bool {
        self.reader.options() == other.reader.options()
            && self.layout.column_of_slot == other.layout.column_of_slot
            && self.layout.fields == other.layout.fields
    }

    /// The next record after the header; `Ok(false)` at the end.
    #[inline]
    pub fn read_record(&mut self, rec: &mut Record) -> Result<bool, FileError> {
        self.reader.read_record(rec).map_err(FileError::Read)
    }

    /// Bytes read so far.
    pub fn byte_offset(&self) -> u64 {
        self.reader.byte_offset()
    }

    /// Reads the rest of the file in pieces on the rayon pool, as
    /// [`crate::reader::read_chunked`] does, and returns where the file
    /// ended.
    pub fn read_chunked<T: Send>(
        self,
        chunks: &ChunkOptions,
        parse: impl Fn(&mut Piece<'_>) -> Result<T, ReadError> + Sync,
        emit: impl FnMut(T, Offset),
    ) -> Result<Offset, FileError> {
        let opts = self.reader.options().clone();
        let rest = self.reader.into_rest().map_err(FileError::Read)?;
        crate::reader::chunked::read_rest(rest, &opts, chunks, parse, emit).map_err(FileError::Read)
    }
}

/// Reads again chosen records of a file, at increasing byte offsets (as
/// [`Position::byte`](crate::reader::Position) gave them when the same
/// profile read it): by seeking to each when they are few, by reading on
/// through the file when they are many.
pub struct RecordsAt<R> {
    reader: SnapshotReader<R>,
    layout: Layout,
    seek: bool,
}

impl<R: Read + Seek> RecordsAt<R> {
    /// Opens `file`; `seek` says the records asked for are few.
    pub fn open(profile: &Profile, mut file: R, seek: bool) -> Result<RecordsAt<R>, FileError> {
        let (opts, layout, first) = {
            let s = Snapshot::open(profile, &mut file)?;
            // Where the first record starts: after the header, if any.
            let first = s.byte_offset();
            (s.reader.options().clone(), s.layout, first)
        };
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| FileError::Read(e.into()))?;
        let opts = if seek {
            // One record is read at each offset: a small buffer.
            ReaderOptions {
                buffer_bytes: 1 << 10,
                ..opts
            }
        } else {
            opts
        };
        let mut reader = SnapshotReader::new(file, opts);
        if first > 0 {
            reader.seek_to_record(first).map_err(FileError::Read)?;
        }
        Ok(RecordsAt {
            reader,
            layout,
            seek,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Reads the record that starts at byte `at` into `rec`; false when no
    /// record starts there. Offsets must increase from call to call.
    pub fn read_at(&mut self, at: u64, rec: &mut Record) -> Result<bool, FileError> {
        if self.seek {
            self.reader.seek_to_record(at).map_err(FileError::Read)?;
            return self.reader.read_record(rec).map_err(FileError::Read);
        }
        while self.reader.read_record(rec).map_err(FileError::Read)? {
            match rec.position().byte.cmp(&at) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(true),
                std::cmp::Ordering::Greater => return Ok(false),
            }
        }
        Ok(false)
    }
}

/// Reads again the records of `file` that start at `offsets` (as
/// [`Position::byte`](crate::reader::Position) gave them when `profile` read
/// it), calling `f` with each one's index in `offsets`, the record and the
/// file's layout: for the few rows whose fields are asked for after a pass.
/// An offset past the end calls nothing.
pub fn records_at<F: Read + Seek>(
    profile: &Profile,
    file: F,
    offsets: &[u64],
    mut f: impl FnMut(usize, &Record, &Layout),
) -> Result<(), FileError> {
    let mut file = RecordsAt::open(profile, file, true)?;
    let mut rec = Record::new();
    for (i, &at) in offsets.iter().enumerate() {
        if file.read_at(at, &mut rec)? {
            f(i, &rec, file.layout());
        }
    }
    Ok(())
}
