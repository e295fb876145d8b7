//! `docs/config.md` documents every key of `muster.toml`, and no key that
//! does not exist: the keys each table takes are asked of the configuration
//! types themselves (an unknown key's error lists them).

use std::collections::BTreeSet;
use std::path::Path;

/// The keys a table takes: a config with an unknown key `zzz` put in it
/// fails, and the error lists the keys expected there.
fn keys_of(config: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("muster.toml");
    std::fs::write(&path, config).unwrap();
    let error = muster::config::Config::load(&path).unwrap_err().to_string();
    let expected = error
        .split_once("expected")
        .unwrap_or_else(|| panic!("no list of keys in: {error}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The keys `docs/config.md` documents under the heading starting `heading`:
/// the first cells of its table rows, `| \`key\` | …`.
fn documented(doc: &str, heading: &str) -> BTreeSet<String> {
    let start = doc
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("docs/config.md has no section {heading}"));
    let section = &doc[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    section[..end]
        .lines()
        .filter_map(|l| {
            l.strip_prefix("| `")?
                .split_once("` |")
                .map(|(k, _)| k.to_string())
        })
        .collect()
}

const TENANT: &str = "[[tenant]]\nname = \"a\"\nstate = \"s.redb\"\n";
const SOURCE: &str = "[tenant.source]\ntype = \"dir\"\npath = \"inbox\"\n";
const FILES: &str = "[[tenant.files]]\npattern = \"*.csv\"\nprofile = \"mobietrain\"\n";
const SINK: &str = "[tenant.sink]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n";

#[test]
fn docs_config_md_documents_every_key_and_no_other() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/config.md"))
        .unwrap();
    let z = "zzz = 1\n";
    let tables = [
        (
            "`[[tenant]]`",
            format!("[[tenant]]\n{z}name = \"a\"\n{SOURCE}{FILES}{SINK}"),
        ),
        (
            "`[tenant.source]` with `type = \"dir\"`",
            format!("{TENANT}[tenant.source]\ntype = \"dir\"\n{z}{FILES}{SINK}"),
        ),
        (
            "`[tenant.source]` with `type = \"sftp\"`",
            format!("{TENANT}[tenant.source]\ntype = \"sftp\"\n{z}{FILES}{SINK}"),
        ),
        (
            "`[tenant.source]` with `type = \"ftp\"`",
            format!("{TENANT}[tenant.source]\ntype = \"ftp\"\n{z}{FILES}{SINK}"),
        ),
        (
            "`[tenant.source]` with `type = \"http\"`",
            format!("{TENANT}[tenant.source]\ntype = \"http\"\n{z}{FILES}{SINK}"),
        ),
        (
            "`[[tenant.files]]`",
            format!("{TENANT}{SOURCE}[[tenant.files]]\n{z}{SINK}"),
        ),
        (
            "`[tenant.sink]` with `type = \"jsonl\"`",
            format!("{TENANT}{SOURCE}{FILES}[tenant.sink]\ntype = \"jsonl\"\n{z}"),
        ),
        (
            "`[tenant.sink]` with `type = \"scim\"`",
            format!("{TENANT}{SOURCE}{FILES}[tenant.sink]\ntype = \"scim\"\n{z}"),
        ),
        (
            "`[tenant.safety]`",
            format!("{TENANT}{SOURCE}{FILES}{SINK}[tenant.safety]\n{z}"),
        ),
        (
            "`[[tenant.notify]]` with `type = \"webhook\"`",
            format!("{TENANT}{SOURCE}{FILES}{SINK}[[tenant.notify]]\ntype = \"webhook\"\n{z}"),
        ),
        (
            "`[[tenant.notify]]` with `type = \"email\"`",
            format!("{TENANT}{SOURCE}{FILES}{SINK}[[tenant.notify]]\ntype = \"email\"\n{z}"),
        ),
        (
            "`[daemon]`",
            format!("[daemon]\n{z}{TENANT}{SOURCE}{FILES}{SINK}"),
        ),
        (
            "`[cluster]`",
            format!("[cluster]\n{z}{TENANT}{SOURCE}{FILES}{SINK}"),
        ),
    ];
    let mut problems = Vec::new();
    for (heading, config) in tables {
        let keys = keys_of(&config);
        assert!(
            keys.len() >= 2 || heading.contains("jsonl") || heading.contains("daemon"),
            "{heading}: {keys:?}"
        );
        let doc_keys = documented(&doc, heading);
        for missing in keys.difference(&doc_keys) {
            problems.push(format!("{heading}: `{missing}` is not documented"));
        }
        for extra in doc_keys.difference(&keys) {
            problems.push(format!(
                "{heading}: `{extra}` is documented but no such key exists"
            ));
        }
    }
    // The top level takes `cluster`, `daemon` and `tenant`.
    assert_eq!(
        keys_of(&format!("{z}{TENANT}")),
        BTreeSet::from(["cluster", "daemon", "tenant"].map(String::from))
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every example tenant of `examples/tenants/` (one per seed integration)
/// loads: its keys exist, its values are in range, its profiles compile,
/// its secrets are read (from variables set for the child process only).
/// `muster run --tenant` of a name no config has loads the whole file first,
/// then says the tenant is unknown.
#[cfg(feature = "cli")]
#[test]
fn every_example_tenant_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tenants");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["run", "--tenant", "no-such-tenant", "--config"])
            .arg(&path)
            .env("MOBIETRAIN_SFTP_PASSWORD", "example-secret")
            .env("WINNINGTEMP_SFTP_KEY", "example-secret")
            .env("LMS_SCIM_TOKEN", "example-secret")
            .env("ACME_FTP_PASSWORD", "example-secret")
            .env("WD_PASSWORD", "example-secret")
            .env("BAMBOO_API_KEY", "example-secret")
            .env("PERSONIO_CLIENT_SECRET", "example-secret")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("no tenant \"no-such-tenant\""),
            "{}: {err}",
            path.display()
        );
        names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "bamboohr-report",
            "lucca-360learning",
            "partena-mobietrain",
            "personio-api",
            "winningtemp",
            "workday-report"
        ]
    );
}
