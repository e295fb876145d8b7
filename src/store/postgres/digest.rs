//! The differ's prior in the cluster: read from the tenant's digest and
//! the changes since (or, without a readable digest, from the objects by
//! `COPY`), and the digest written again when due.

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;

use super::{PostgresStore, TxError};
use crate::model::ObjectKind;
use crate::store::{decode_prior, kind_code, MemoryPrior, Prior, StoreError};

/// The bytes of an object [`decode_prior`] reads: fingerprint, flags and
/// a `since` date.
pub(super) const PRIOR_BYTES: i32 = 21;

/// The largest prior digest written (a `bytea` holds 1 GB): about nine
/// million keys. A larger prior is read from the objects each run.
const MAX_DIGEST: usize = 512 << 20;

impl PostgresStore {
    /// `kind`'s prior, read in `tx`: its digest with the changes since,
    /// or, without a readable digest, the objects themselves.
    pub(super) fn load_prior(
        &self,
        tx: &mut postgres::Transaction<'_>,
        kind: ObjectKind,
    ) -> Result<(MemoryPrior, Loaded), TxError> {
        let code = kind_code(kind) as i16;
        let digest = tx.query_opt(
            "SELECT digest FROM muster_prior_digests WHERE tenant = $1 AND kind = $2",
            &[&self.tenant, &code],
        )?;
        let digest = digest.and_then(|row| {
            let prior = MemoryPrior::from_digest(row.get(0));
            if prior.is_none() {
                tracing::warn!(store = %self.shown, "the prior digest cannot be read: the objects are read instead");
            }
            prior
        });
        if let Some(mut prior) = digest {
            let entries = Prior::len(&prior);
            let rows = tx.query(
                "SELECT keys, heads FROM muster_prior_changes WHERE tenant = $1 AND kind = $2 ORDER BY id",
                &[&self.tenant, &code],
            )?;
            let mut changes = Vec::new();
            for row in &rows {
                let keys: Vec<&str> = row.get(0);
                let heads: Vec<Option<&[u8]>> = row.get(1);
                if keys.len() != heads.len() {
                    let (k, h) = (keys.len(), heads.len());
                    let what = format!("a row of prior changes has {k} keys and {h} entries");
                    return Err(self.damaged(what).into());
                }
                for (key, head) in keys.into_iter().zip(heads) {
                    let entry = match head {
                        None => None,
                        Some(head) => Some(decode_prior(head).ok_or_else(|| {
                            self.damaged(format!("the prior entry of {key:?} cannot be read"))
                        })?),
                    };
                    changes.push((key, entry));
                }
            }
            let loaded = Loaded {
                digest: true,
                entries,
                changes: changes.len(),
            };
            prior.update(changes);
            return Ok((prior, loaded));
        }
        // COPY takes no parameters: the tenant is a quoted literal.
        let sql = format!(
            "COPY (SELECT key, substring(body from 1 for {PRIOR_BYTES}) FROM muster_objects \
             WHERE tenant = '{}' AND kind = {code}) TO STDOUT (FORMAT binary)",
            self.tenant.replace('\'', "''"),
        );
        let reader = tx.copy_out(sql.as_str())?;
        let mut rows =
            postgres::binary_copy::BinaryCopyOutIter::new(reader, &[Type::TEXT, Type::BYTEA]);
        let mut prior = MemoryPrior::new();
        while let Some(row) = rows.next()? {
            let key: &str = row.try_get(0)?;
            let head: &[u8] = row.try_get(1)?;
            let entry = decode_prior(head)
                .ok_or_else(|| self.damaged(format!("the object of {key:?} cannot be read")))?;
            prior.insert(key, entry);
        }
        let loaded = Loaded {
            digest: false,
            entries: Prior::len(&prior),
            changes: 0,
        };
        Ok((prior, loaded))
    }

    /// Writes `kind`'s prior digest again, from the digest and changes
    /// (or the objects) as they are, and clears its changes: in one
    /// transaction holding the tenant's row, which every commit shares,
    /// so that no commit falls between the read and the write.
    pub(super) fn write_digest(&mut self, kind: ObjectKind) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let code = kind_code(kind) as i16;
        let tenant = &self.tenant;
        let written = self.fenced(|tx| {
            tx.execute(
                "SELECT 1 FROM muster_tenants WHERE tenant = $1 FOR UPDATE",
                &[tenant],
            )?;
            let (prior, _) = self.load_prior(tx, kind)?;
            let digest = prior.digest();
            if digest.len() > MAX_DIGEST {
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO muster_prior_digests (tenant, kind, digest) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, kind) DO UPDATE SET digest = EXCLUDED.digest",
                &[tenant, &code, &digest],
            )?;
            tx.execute(
                "DELETE FROM muster_prior_changes WHERE tenant = $1 AND kind = $2",
                &[tenant, &code],
            )?;
            Ok(Some(Prior::len(&prior)))
        })?;
        let i = code as usize;
        self.written_of[i] = 0;
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())[i] = written.map(|entries| Loaded {
            digest: true,
            entries,
            changes: 0,
        });
        tracing::debug!(store = %self.shown, ?kind, entries = ?written, ms = started.elapsed().as_millis() as u64, "prior digest written");
        Ok(())
    }
}

/// How a kind's prior was loaded: from a digest (of `entries`, with
/// `changes` since) or from the objects (`entries` of them).
#[derive(Clone, Copy, Debug)]
pub(super) struct Loaded {
    pub(super) digest: bool,
    pub(super) entries: usize,
    pub(super) changes: usize,
}

impl Loaded {
    /// Whether, `written` objects later, the digest is due again: there
    /// is none, or the changes since it pass an eighth of it. (An empty
    /// kind written nothing needs none.)
    pub(super) fn digest_due(&self, written: u64) -> bool {
        let changes = self.changes as u64 + written;
        match self.digest {
            true => changes > self.entries as u64 / 8,
            false => self.entries > 0 || written > 0,
        }
    }
}
