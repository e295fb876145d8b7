//! The crate's layout tells the data flow: no module of `src/` imports
//! another that imports it back, directly or through others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` with the top-level modules its code
/// (comments and unit tests aside) names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let files = if path.is_dir() {
            let mut files = Vec::new();
            let mut dirs = vec![path];
            while let Some(dir) = dirs.pop() {
                for e in std::fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        dirs.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        files.push(p);
                    }
                }
            }
            files
        } else {
            vec![path]
        };
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(name, files)| {
            let mut used = BTreeSet::new();
            for file in files {
                let text = std::fs::read_to_string(file).unwrap();
                let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
                for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for part in line.split("crate::").skip(1) {
                        let m: String = part
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if m != *name && names.contains(&m) {
                            used.insert(m);
                        }
                    }
                }
            }
            (name.clone(), used)
        })
        .collect()
}

#[test]
fn the_module_graph_has_no_cycles() {
    let graph = imports();
    // Depth-first, from every module: a module met again on the current
    // path closes a cycle.
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        for next in &graph[at] {
            if let Some(i) = path.iter().position(|p| p == next) {
                cycles.push(format!("{} -> {next}", path[i..].join(" -> ")));
            } else {
                path.push(next.clone());
                walk(graph, next, path, cycles);
                path.pop();
            }
        }
    }
    let mut cycles = Vec::new();
    for module in graph.keys() {
        walk(&graph, module, &mut vec![module.clone()], &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
    // The arrows the redesign set: the store knows nothing of the differ
    // or the plan, and no sink or source knows the config.
    for (from, not) in [
        ("store", "diff"),
        ("store", "plan"),
        ("sink", "config"),
        ("source", "config"),
    ] {
        assert!(!graph[from].contains(not), "{from} imports {not}");
    }
}
