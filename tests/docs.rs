//! The documentation cites only the repository's own documents: the design
//! contract it was built from lives outside the repository, so a reference
//! like "DESIGN §5" points nowhere for a reader of the repository.

use std::path::{Path, PathBuf};

/// README.md, and every file under docs/ and config/.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs"), root.join("config")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn documents_cite_no_section_of_a_design_outside_the_repository() {
    let docs = documents();
    assert!(docs.len() > 10, "{docs:?}");
    for path in docs {
        // Images and other binary files have nothing to cite.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("DESIGN §") && !line.contains("DESIGN.md"),
                "{}:{}: {line}",
                path.display(),
                n + 1
            );
        }
    }
}
