//! The state store in memory, for tests and `muster diff`.

use std::collections::BTreeMap;

use super::MemoryPrior;
use super::{PendingOp, StateStore, StoreError, StoredObject};
use crate::model::{Action, ObjectKind};

#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    objects: BTreeMap<(u8, String), StoredObject>,
    records: BTreeMap<u8, u64>,
    pending: BTreeMap<u64, PendingOp>,
    next_op: u64,
    contents: BTreeMap<u128, String>,
    plans: BTreeMap<u8, (u128, Vec<u8>)>,
    released: std::collections::BTreeSet<String>,
}

fn k(kind: ObjectKind) -> u8 {
    kind as u8
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every object of a kind, by key.
    pub fn objects(&self, kind: ObjectKind) -> impl Iterator<Item = (&str, &StoredObject)> {
        self.objects
            .iter()
            .filter(move |((c, _), _)| *c == k(kind))
            .map(|((_, key), o)| (key.as_str(), o))
    }
}

impl StateStore for MemoryStore {
    fn prior(&self, kind: ObjectKind) -> Result<MemoryPrior, StoreError> {
        let mut prior = MemoryPrior::new();
        for (key, o) in self.objects(kind) {
            prior.insert(key, o.prior_entry());
        }
        Ok(prior)
    }

    fn get(&self, kind: ObjectKind, key: &str) -> Result<Option<StoredObject>, StoreError> {
        Ok(self.objects.get(&(k(kind), key.to_string())).cloned())
    }

    fn last_records(&self, kind: ObjectKind) -> Result<Option<u64>, StoreError> {
        Ok(self.records.get(&k(kind)).copied())
    }

    fn set_last_records(&mut self, kind: ObjectKind, records: u64) -> Result<(), StoreError> {
        self.records.insert(k(kind), records);
        Ok(())
    }

    fn begin(&mut self, ops: &[PendingOp]) -> Result<(), StoreError> {
        for op in ops {
            self.pending.insert(op.id, op.clone());
        }
        Ok(())
    }

    fn commit(&mut self, acked: &[PendingOp], dropped: &[u64]) -> Result<(), StoreError> {
        for op in acked {
            let key = (k(op.kind), op.key.clone());
            if op.action == Action::Delete {
                self.objects.remove(&key);
            } else {
                self.objects.insert(key, op.object.clone());
            }
            self.pending.remove(&op.id);
        }
        for id in dropped {
            self.pending.remove(id);
        }
        Ok(())
    }

    fn pending(&self) -> Result<Vec<PendingOp>, StoreError> {
        Ok(self.pending.values().cloned().collect())
    }

    fn next_op_id(&mut self) -> Result<u64, StoreError> {
        self.next_op += 1;
        Ok(self.next_op)
    }

    fn raise_op_ids(&mut self, past: u64) -> Result<(), StoreError> {
        self.next_op = self.next_op.max(past);
        Ok(())
    }

    fn seen_content(&self, hash: u128) -> Result<Option<String>, StoreError> {
        Ok(self.contents.get(&hash).cloned())
    }

    fn remember_content(&mut self, hash: u128, name: &str) -> Result<(), StoreError> {
        self.contents.insert(hash, name.to_string());
        Ok(())
    }

    fn released(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.released.contains(name))
    }

    fn set_released(&mut self, name: &str, released: bool) -> Result<(), StoreError> {
        if released {
            self.released.insert(name.to_string());
        } else {
            self.released.remove(name);
        }
        Ok(())
    }

    fn kept_plan(&self, kind: ObjectKind, hash: u128) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .plans
            .get(&k(kind))
            .filter(|(h, _)| *h == hash)
            .map(|(_, p)| p.clone()))
    }

    fn keep_plan(
        &mut self,
        kind: ObjectKind,
        hash: u128,
        plan: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        match plan {
            Some(p) => self.plans.insert(k(kind), (hash, p.to_vec())),
            None => self.plans.remove(&k(kind)),
        };
        Ok(())
    }
}
