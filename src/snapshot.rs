//! A snapshot file opened through a profile: the reader set up for the file
//! (delimiter detected when the profile says `auto`), the header read, and
//! the [`Layout`] it gives. Every consumer of a file starts here.

use std::io::{Chain, Cursor, Read};

use crate::profile::{HeaderError, HeaderMode, Layout, Profile};
use crate::reader::{ReadError, Record, SnapshotReader};

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

    /// The next record after the header; `Ok(false)` at the end.
    #[inline]
    pub fn read_record(&mut self, rec: &mut Record) -> Result<bool, FileError> {
        self.reader.read_record(rec).map_err(FileError::Read)
    }

    /// Bytes read so far.
    pub fn byte_offset(&self) -> u64 {
        self.reader.byte_offset()
    }
}
