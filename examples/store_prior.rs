//! Times loading the users' prior out of a state store, and indexing it,
//! three times over (what `muster run` does beside reading the file):
//!
//! ```text
//! cargo run --release --example store_prior -- target/bench-data/run-tenant/state.redb
//! ```
//!
//! The store is not changed: it is closed without a sync or checkpoint.

use muster::profile::ObjectKind;
use muster::store::Prior;
use muster::store::{RedbStore, StateStore};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: store_prior STATE_FILE");
        std::process::exit(2);
    };
    let t = std::time::Instant::now();
    let store = RedbStore::open(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    println!("opened (journal read again) in {:?}", t.elapsed());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let prior = store.prior(ObjectKind::User).expect("prior");
        let loaded = t.elapsed();
        let n = prior.len();
        println!(
            "{n} objects: loaded in {loaded:?}, indexed in {:?}",
            t.elapsed() - loaded
        );
    }
    store.abandon();
}
