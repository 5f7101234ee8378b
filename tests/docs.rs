//! The documentation and the sources cite only the repository's own
//! documents: the design contract wsplus was built from lives outside the
//! repository, so a reference to it (its name in capitals, a section number
//! of it) points nowhere for a reader of the repository.

use std::path::{Path, PathBuf};

/// Every file under `dirs` of the repository, build output skipped.
fn files_under(dirs: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("target") || path.ends_with("node_modules") {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Fails on the first line of `files` that names the outside design.
fn assert_no_citation(files: Vec<PathBuf>) {
    // Spelled in two halves so that this file does not find itself.
    let name = ["DES", "IGN"].concat();
    for path in files {
        // Images and other binary files have nothing to cite.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains(&name),
                "{}:{}: {line}",
                path.display(),
                n + 1
            );
        }
    }
}

#[test]
fn documents_cite_no_section_of_a_design_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = files_under(&["docs", "config"]);
    docs.push(root.join("README.md"));
    assert!(docs.len() > 10, "{docs:?}");
    assert_no_citation(docs);
}

#[test]
fn sources_cite_the_repositorys_documents_not_the_outside_design() {
    let sources = files_under(&["src", "actors", "tests", "benches", "web", "fuzz"]);
    assert!(sources.len() > 100, "{}", sources.len());
    assert_no_citation(sources);
}
