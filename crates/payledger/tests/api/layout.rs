//! The layout rules, checked over the sources (docs/ARCHITECTURE.md says why they matter): in the server
//! crate no import cycle between its top-level modules, the store imports nothing from the engine and no
//! function is over 100 lines; in every crate of the workspace no file is over 800 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FUNCTION_LINES: usize = 100;

/// Every `.rs` file under `dir`, with its text.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, text));
        }
    }
}

/// Every `.rs` file under the server crate's `src/`, with its text.
fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &mut out);
    assert!(out.len() > 20, "found the sources under {}", root.display());
    out.into_iter().map(|(path, text)| (path.strip_prefix(&root).expect("under src").to_path_buf(), text)).collect()
}

/// The top-level module a file belongs to (`store` for `store/queries/jobs.rs`), or `None` for the crate root.
fn top_module(path: &Path) -> Option<String> {
    let first = path.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_owned();
    (first != "lib" && first != "main").then_some(first)
}

/// The code of a file without its comments (doc comments name modules without importing them).
fn code(text: &str) -> String {
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The top-level modules a file's code names through `crate::` (paths and `use crate::{a, b::c}` groups).
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |text: &str| -> String {
        text.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect()
    };
    for (index, _) in code.match_indices("crate::") {
        let rest = &code[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            names.extend(group.split(',').map(|part| ident(part.trim())).filter(|name| !name.is_empty()));
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// Which top-level module imports which.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.iter().filter_map(|(path, _)| top_module(path)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &sources {
        let Some(module) = top_module(path) else { continue };
        let uses: Vec<String> =
            named_modules(&code(text)).into_iter().filter(|name| *name != module && modules.contains(name)).collect();
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

/// A cycle through `start`, if there is one: the modules in order.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == start {
                return Some(path.iter().cloned().chain([start.to_owned()]).collect());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), path.iter().cloned().chain([next.clone()]).collect()));
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = module_graph();
    assert!(graph.contains_key("engine") && graph.contains_key("store"), "the graph has the crate's modules");
    let cycles: Vec<String> =
        graph.keys().filter_map(|module| cycle_through(&graph, module)).map(|cycle| cycle.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles between top-level modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_store_imports_nothing_from_the_engine() {
    let graph = module_graph();
    let store = graph.get("store").expect("the store module");
    assert!(!store.contains("engine"), "store/ imports from engine/: {store:?}");
    assert!(graph.get("engine").is_some_and(|engine| engine.contains("store")), "the check sees imports at all");
}

#[test]
fn no_source_file_of_the_workspace_is_longer_than_the_limit() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for name in ["payledger", "payledger-core", "payledger-bench"] {
        walk(&crates.join(name).join("src"), &mut files);
    }
    assert!(files.len() > 40, "found the workspace's sources");
    let long: Vec<String> = files
        .iter()
        .map(|(path, text)| (path, text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_FILE_LINES)
        .map(|(path, lines)| format!("{} has {lines} lines", path.display()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_FILE_LINES} lines:\n{}", long.join("\n"));
}

/// Functions and their lengths in rustfmt-formatted code: from the `fn` line to the `}` at its indentation.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let signature = ["pub(crate) ", "pub(super) ", "pub(in crate::store) ", "pub ", "async ", "const "]
            .iter()
            .fold(trimmed, |rest, prefix| rest.strip_prefix(prefix).unwrap_or(rest));
        let signature = signature.strip_prefix("async ").unwrap_or(signature);
        let Some(name) = signature.strip_prefix("fn ") else { continue };
        let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let closing = format!("{indent}}}");
        let body_opens = lines[start..].iter().position(|l| l.trim_end().ends_with('{') || l.trim_end().ends_with(';'));
        let Some(open) = body_opens.map(|offset| start + offset) else { continue };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        if let Some(end) = lines[open + 1..].iter().position(|l| *l == closing) {
            found.push((name, start + 1, open + 1 + end - start + 1));
        }
    }
    found
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for (path, text) in sources() {
        for (name, line, length) in functions(&text) {
            if length > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line} fn {name} has {length} lines", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // A cycle, a long function and a grouped import are found, so the tests above cannot pass by seeing nothing.
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(cycle_through(&graph, "a"), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
    let body = format!("fn long() {{\n{}}}\n", "    x();\n".repeat(MAX_FUNCTION_LINES));
    assert_eq!(functions(&body), vec![("long".to_owned(), 1, MAX_FUNCTION_LINES + 2)]);
    assert_eq!(
        named_modules("use crate::{engine::X, store};\nlet y = crate::idempotency::f();"),
        BTreeSet::from(["engine".to_owned(), "idempotency".to_owned(), "store".to_owned()])
    );
}
