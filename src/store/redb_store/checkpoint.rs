//! The checkpoint: the journal's buffered objects moved into redb's tables,
//! and the prior digests written beside them (see the module note of
//! `redb_store` and decisions 42, 43, 48); and the prior read back, from
//! its digest when it matches, else from the table.

use super::*;

/// The first bytes of a prior digest file (`<store>.prior-<kind>`): a
/// cache of what a kind's table says to the differ
/// ([`MemoryPrior::digest`]), so that [`StateStore::prior`] reads one
/// file instead of every object. Each checkpoint writes it beside the
/// tables it changes and records its length and xxh3-128 in META
/// (`prior/<kind>`), in the checkpoint's transaction; the file is not
/// fsynced. It is used only if it matches what META records, else the
/// table is read: a file lost, stale or torn by a crash costs speed,
/// never correctness.
const DIGEST_FILE_MAGIC: &[u8; 8] = b"MPRIOR1\n";

/// Threads reading the journal back during a checkpoint.
const READERS: usize = 2;

impl RedbStore {
    /// Moves the buffered objects into redb — each key's last, in key order,
    /// one transaction — and rewrites the journal to what is in flight.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let keys = self.buffered_keys();
        if keys > 0 {
            let mut digests = Vec::new();
            let w = self.db().begin_write().map_err(|e| self.err(e))?;
            {
                for kind in [ObjectKind::Group, ObjectKind::Segment, ObjectKind::User] {
                    // In key order: the B-tree's pages are then visited
                    // once each, front to back, instead of one random page
                    // per key.
                    let mut entries: Vec<(&str, Option<Span>)> = self.index[kind_index(kind)]
                        .iter()
                        .map(|(k, s)| (&**k, *s))
                        .collect();
                    if entries.is_empty() {
                        continue;
                    }
                    entries.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
                    let mut t = w.open_table(objects(kind)).map_err(|e| self.err(e))?;
                    // The digest follows the table: what it held, with
                    // what the fold changes.
                    let mut prior = self.checkpointed(kind, &t)?;
                    let mut update = prior.begin_update();
                    let mut changed = |key, value: Option<&[u8]>| -> Result<(), StoreError> {
                        let entry = match value {
                            None => None,
                            Some(v) => Some(self.journal_prior_entry(key, v)?),
                        };
                        update.set(key, entry);
                        Ok(())
                    };
                    if t.is_empty().map_err(|e| self.err(e))? {
                        // A first import: redb appends the keys, in order,
                        // through a cursor at the table's end, a leaf at a
                        // time, instead of descending the tree for each.
                        let mut end = t
                            .upper_bound_mut(std::ops::Bound::<&str>::Unbounded)
                            .map_err(|e| self.err(e))?;
                        self.fold(&entries, |key, value| {
                            changed(key, value)?;
                            match value {
                                // Nothing to remove from an empty table.
                                None => Ok(()),
                                Some(v) => end.insert_before(key, v).map_err(|e| self.err(e)),
                            }
                        })?;
                        end.close().map_err(|e| self.err(e))?;
                    } else {
                        self.fold(&entries, |key, value| {
                            changed(key, value)?;
                            match value {
                                None => t.remove(key).map(|_| ()),
                                Some(v) => t.insert(key, v).map(|_| ()),
                            }
                            .map_err(|e| self.err(e))
                        })?;
                    }
                    update.finish();
                    let digest = prior.digest();
                    drop(prior);
                    let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
                    meta.insert(digest_meta(kind).as_str(), digest_id(&digest).as_slice())
                        .map_err(|e| self.err(e))?;
                    digests.push((kind, digest));
                }
                if self.names.unsaved {
                    let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
                    meta.insert("field_names", self.names.encode().as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            // The digests are written while redb commits (in either order
            // a crash leaves a file META does not vouch for, or none).
            std::thread::scope(|s| {
                s.spawn(|| {
                    for (kind, digest) in &digests {
                        if let Err(e) = self.write_digest_file(*kind, digest) {
                            tracing::warn!(error = %e, "prior digest not written; the next run reads the table");
                        }
                    }
                });
                w.commit().map_err(|e| self.err(e))
            })?;
            self.names.unsaved = false;
            for i in &mut self.index {
                *i = AHashMap::new();
            }
        }
        // The journal keeps only what is still in flight.
        if self.journal.len > 0 {
            let in_flight = std::mem::take(&mut self.in_flight);
            self.in_flight = self
                .journal
                .rewrite(in_flight)
                .map_err(|e| self.io_err("journal", e))?;
        }
        let ms = started.elapsed().as_millis() as u64;
        tracing::debug!(keys, ms, "store: checkpoint");
        Ok(())
    }

    /// Gives `apply` each of `entries` (in key order) with its object, read
    /// back from the journal, or `None` for a removal. The journal is read
    /// on [`READERS`] threads, each a chunk of values ahead of `apply` and
    /// taking every other chunk (the reads are a syscall each, at random
    /// places: alternating with redb's inserts, they were a third of the
    /// checkpoint).
    pub(super) fn fold<'e>(
        &self,
        entries: &[(&'e str, Option<Span>)],
        mut apply: impl FnMut(&'e str, Option<&[u8]>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        /// Values read ahead: a chunk's bytes and where each value ends.
        type Chunk = Result<(Vec<u8>, Vec<usize>), StoreError>;
        const CHUNK: usize = 4096;
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..READERS)
                .map(|r| {
                    let (tx, rx) = crossbeam_channel::bounded::<Chunk>(2);
                    scope.spawn(move || {
                        for chunk in entries.chunks(CHUNK).skip(r).step_by(READERS) {
                            let mut bytes = Vec::new();
                            let mut ends = Vec::with_capacity(chunk.len());
                            let read = chunk.iter().try_for_each(|&(key, span)| {
                                if let Some(span) = span {
                                    self.read_value_into(span, key, &mut bytes)?;
                                }
                                ends.push(bytes.len());
                                Ok(())
                            });
                            let failed = read.is_err();
                            // An error ends the reading; so does a failed
                            // insert (the receiver is then gone).
                            if tx.send(read.map(|()| (bytes, ends))).is_err() || failed {
                                return;
                            }
                        }
                    });
                    rx
                })
                .collect();
            for (i, chunk) in entries.chunks(CHUNK).enumerate() {
                let (bytes, ends) = readers[i % READERS].recv().map_err(|_| {
                    let what = "the journal reader stopped".to_string();
                    StoreError::new(&self.path, StoreErrorKind::Database(what))
                })??;
                let mut start = 0;
                for (&(key, span), &end) in chunk.iter().zip(&ends) {
                    apply(key, span.map(|_| &bytes[start..end]))?;
                    start = end;
                }
            }
            Ok(())
        })
    }

    /// The prior of `kind` as its table holds it (without the journal):
    /// from its digest file when META vouches for it ([`DIGEST_FILE_MAGIC`]),
    /// else from every object.
    pub(super) fn checkpointed(
        &self,
        kind: ObjectKind,
        objects: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<MemoryPrior, StoreError> {
        if let Some(id) = self.meta(&digest_meta(kind))? {
            match self.read_digest_file(kind, &id) {
                Ok(prior) => return Ok(prior),
                Err(why) => tracing::info!(
                    kind = kind.as_str(),
                    why,
                    "prior digest not used; reading the table"
                ),
            }
        }
        let mut prior = MemoryPrior::new();
        prior.reserve(objects.len().map_err(|e| self.err(e))? as usize);
        for item in objects.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let entry = prior_entry(v.value())
                .ok_or_else(|| self.damaged(format!("corrupt entry for key {:?}", k.value())))?;
            prior.insert(k.value(), entry);
        }
        Ok(prior)
    }

    /// What the differ needs of a buffered object of `key` (`bytes`, read
    /// back from the journal).
    pub(super) fn journal_prior_entry(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<PriorEntry, StoreError> {
        prior_entry(bytes)
            .ok_or_else(|| self.damaged(format!("corrupt journal entry for key {key:?}")))
    }

    pub(super) fn digest_path(&self, kind: ObjectKind) -> PathBuf {
        PathBuf::from(format!("{}.prior-{}", self.path.display(), kind.as_str()))
    }

    /// Writes `digest` to its file, through a temporary name and a rename.
    pub(super) fn write_digest_file(&self, kind: ObjectKind, digest: &[u8]) -> std::io::Result<()> {
        let path = self.digest_path(kind);
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        f.write_all(DIGEST_FILE_MAGIC)?;
        f.write_all(&digest_id(digest))?;
        f.write_all(digest)?;
        f.into_inner().map_err(|e| e.into_error())?;
        std::fs::rename(&tmp, &path)
    }

    /// The prior in `kind`'s digest file, if the file is whole and the one
    /// META names (`id`); else why not.
    pub(super) fn read_digest_file(
        &self,
        kind: ObjectKind,
        id: &[u8],
    ) -> Result<MemoryPrior, &'static str> {
        let bytes = std::fs::read(self.digest_path(kind)).map_err(|_| "no file")?;
        let body = bytes
            .strip_prefix(DIGEST_FILE_MAGIC.as_slice())
            .and_then(|b| b.strip_prefix(id))
            .ok_or("another checkpoint's file")?;
        if digest_id(body) != id {
            return Err("torn or changed");
        }
        MemoryPrior::from_digest(body).ok_or("not a digest")
    }
}

/// The META entry that names `kind`'s digest file.
fn digest_meta(kind: ObjectKind) -> String {
    format!("prior/{}", kind.as_str())
}

/// What META records of a digest: its length and xxh3-128 (24 bytes).
fn digest_id(digest: &[u8]) -> [u8; 24] {
    let mut id = [0; 24];
    id[..8].copy_from_slice(&(digest.len() as u64).to_le_bytes());
    id[8..].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(digest).to_le_bytes());
    id
}

/// What the differ needs of a stored object.
fn prior_entry(bytes: &[u8]) -> Option<PriorEntry> {
    decode_prior(bytes)
}

/// The bytes of a stored object that [`decode_prior`] reads.
pub(super) const PRIOR_BYTES: u32 = 21;
