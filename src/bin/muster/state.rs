//! `muster state`: a tenant's state store looked after — made anew from
//! its sink (`rebuild`), or moved into or out of the cluster (`copy`).

use crate::{tenants_of, Exit};

/// `muster state copy`: the embedded store `from` into the cluster, or
/// the cluster's state into the new store file `to`.
pub(crate) fn copy_state(
    config: &std::path::Path,
    name: &str,
    from: Option<&std::path::Path>,
    to: Option<&std::path::Path>,
) -> Exit {
    let tenants = match tenants_of(config, Some(name)) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let tenant = &tenants[0];
    if tenant.cluster.is_none() {
        eprintln!("error: {}: `muster state copy` moves state into or out of a [cluster]; this config has none", config.display());
        return Exit::Usage;
    }
    let open_file = |path: &std::path::Path, exists: bool| {
        if path.exists() != exists {
            let why = if exists {
                "does not exist"
            } else {
                "exists already: copy into a new file"
            };
            eprintln!("error: {}: {why}", path.display());
            return Err(Exit::Usage);
        }
        muster::store::RedbStore::open(path).map_err(|e| {
            eprintln!("error: {e}");
            Exit::Failed
        })
    };
    let cluster = || {
        // Held as a manual run holds it: no daemon runs the tenant while
        // its state is copied.
        let trigger = muster::pipeline::Trigger::Manual;
        muster::pipeline::open_for_run(tenant, trigger).map_err(|e| {
            eprintln!("error: tenant {name}: {e}");
            if e.is_configuration() {
                Exit::Usage
            } else {
                Exit::Failed
            }
        })
    };
    let (mut source, mut dest, described, _lease): (
        Box<dyn muster::store::StateStore>,
        Box<dyn muster::store::StateStore>,
        String,
        Option<muster::pipeline::RunLease>,
    ) = match (from, to) {
        (Some(from), _) => {
            let file = match open_file(from, true) {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            let (cluster, lease) = match cluster() {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            (
                Box::new(file),
                cluster,
                format!("from {} into the cluster", from.display()),
                lease,
            )
        }
        (None, Some(to)) => {
            let (cluster, lease) = match cluster() {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            let file = match open_file(to, false) {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            (
                cluster,
                Box::new(file),
                format!("from the cluster into {}", to.display()),
                lease,
            )
        }
        (None, None) => return Exit::Usage,
    };
    match muster::store::copy::copy(source.as_mut(), dest.as_mut(), tenant.keep_runs) {
        Ok(c) => {
            let [users, groups, segments] = c.objects;
            eprintln!(
                "{name}: copied {users} users, {groups} groups, {segments} segments and {} runs {described}; the copy holds the same objects",
                c.runs
            );
            Exit::Clean
        }
        Err(e) => {
            eprintln!("error: tenant {name}: {e}");
            Exit::Failed
        }
    }
}

/// `muster state rebuild`: the tenant's store made anew from its sink.
pub(crate) fn rebuild(config: &std::path::Path, name: &str) -> Exit {
    let tenants = match tenants_of(config, Some(name)) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let tenant = &tenants[0];
    match muster::pipeline::rebuild_tenant(tenant) {
        Ok(r) => {
            let [users, groups, segments] = r.objects;
            eprintln!(
                "{name}: rebuilt {} from {}: {users} users, {groups} groups, {segments} segments",
                tenant.state.display(),
                tenant.sink.describe(),
            );
            if let Some(old) = &r.replaced {
                eprintln!(
                    "  the old store's files were moved aside to {}.*",
                    old.display()
                );
            }
            if r.skipped > 0 {
                eprintln!(
                    "  {} objects of kinds this tenant has no file for were left out",
                    r.skipped
                );
            }
            if !r.fields_known {
                eprintln!("  the LMS tells which objects exist, not the values sent: the next run sends each object's fields once, as an update, and creates nothing the LMS has");
            }
            Exit::Clean
        }
        Err(e) if e.is_configuration() => {
            eprintln!("error: tenant {name}: {e}");
            Exit::Usage
        }
        Err(e) => {
            eprintln!("error: tenant {name}: {e}");
            Exit::Failed
        }
    }
}
