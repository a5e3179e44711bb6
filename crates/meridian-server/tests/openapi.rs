//! The committed `openapi.json` is the document the server generates from its routes.
//!
//! After changing a route or its annotations, regenerate the file with
//! `MERIDIAN_BLESS=1 cargo test -p meridian-server --test openapi` and commit it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

const REGENERATE: &str = "MERIDIAN_BLESS=1 cargo test -p meridian-server --test openapi";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

/// `METHOD /path` of every operation in a document.
fn operations(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| format!("{} {path}", method.to_uppercase()))
        })
        .collect()
}

/// What differs, in a few lines: operations on one side only, else the first differing line.
fn difference(committed: &str, generated: &str) -> String {
    let parsed: Value = serde_json::from_str(committed).unwrap_or(Value::Null);
    let old = operations(&parsed);
    let new = operations(&serde_json::from_str(generated).unwrap_or(Value::Null));
    let mut out = String::new();
    for op in new.difference(&old) {
        out.push_str(&format!("  served but not in openapi.json: {op}\n"));
    }
    for op in old.difference(&new) {
        out.push_str(&format!("  in openapi.json but not served: {op}\n"));
    }
    if out.is_empty() {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        out = format!(
            "  first difference at line {}:\n    committed: {}\n    generated: {}\n",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
    out
}

#[test]
fn committed_document_is_the_generated_one() {
    let generated = meridian_server::openapi::to_json(&meridian_server::router::document());
    let path = committed_path();
    if std::env::var_os("MERIDIAN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write openapi.json");
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the document the server generates:\n{}\
         If the change is intended, regenerate it with\n    {REGENERATE}\nand commit it.",
        path.display(),
        difference(&committed, &generated),
    );
}
