//! Keeps the crate ladder true: each crate depends only on what its rung allows.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dependencies(krate: &str) -> Vec<String> {
    let path = root().join("crates").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: toml::Table = text.parse().expect("Cargo.toml parses");
    ["dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|d| d.as_table()))
        .flat_map(|t| t.keys().cloned())
        .collect()
}

/// (crate, dependencies it must never have)
const LADDER: &[(&str, &[&str])] = &[
    (
        "meridian-core",
        &[
            "tokio",
            "sqlx",
            "axum",
            "bollard",
            "reqwest",
            "openraft",
            "hyper",
            "meridian-api",
            "meridian-state",
            "meridian-server",
            "meridian-cli",
        ],
    ),
    (
        "meridian-api",
        &[
            "sqlx",
            "axum",
            "bollard",
            "openraft",
            "meridian-state",
            "meridian-server",
            "meridian-cli",
        ],
    ),
    (
        "meridian-state",
        &["axum", "bollard", "meridian-server", "meridian-cli"],
    ),
    ("meridian-server", &["bollard", "meridian-cli"]),
    (
        "meridian-agent",
        &[
            "sqlx",
            "axum",
            "openraft",
            "meridian-state",
            "meridian-server",
            "meridian-cli",
        ],
    ),
    // Locating clients is a pure lookup over files read once: no runtime, no network.
    (
        "meridian-geo",
        &[
            "tokio",
            "sqlx",
            "axum",
            "bollard",
            "reqwest",
            "openraft",
            "hyper",
            "meridian-api",
            "meridian-state",
            "meridian-server",
            "meridian-agent",
            "meridian-cli",
        ],
    ),
    // Routers work from the route table alone: no Raft, no SQL, no Docker.
    (
        "meridian-router",
        &[
            "sqlx",
            "openraft",
            "bollard",
            "meridian-state",
            "meridian-server",
            "meridian-agent",
            "meridian-cli",
        ],
    ),
    // The test harness's latency relay stands apart: it knows nothing of Meridian.
    (
        "meridian-relay",
        &[
            "meridian-core",
            "meridian-api",
            "meridian-state",
            "meridian-server",
            "meridian-agent",
            "meridian-cli",
        ],
    ),
];

#[test]
fn crates_respect_the_ladder() {
    let mut broken = Vec::new();
    for (krate, forbidden) in LADDER {
        for dep in dependencies(krate) {
            if forbidden.contains(&dep.as_str()) {
                broken.push(format!("{krate} depends on {dep}"));
            }
        }
    }
    assert!(broken.is_empty(), "crate ladder broken: {broken:?}");
}

/// The test app goes alone into an image, built offline: the standard library only.
#[test]
fn meridian_hello_has_no_dependencies() {
    assert_eq!(dependencies("meridian-hello"), Vec::<String>::new());
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_meridian_state_writes_sql() {
    let mut offenders = Vec::new();
    for krate in [
        "meridian-core",
        "meridian-api",
        "meridian-server",
        "meridian-agent",
        "meridian-cli",
    ] {
        let mut files = Vec::new();
        rust_files(&root().join("crates").join(krate).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            if text.contains("sqlx::query") {
                offenders.push(f.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL outside meridian-state: {offenders:?}"
    );
}

#[test]
fn meridian_core_does_no_io() {
    let mut files = Vec::new();
    rust_files(&root().join("crates/meridian-core/src"), &mut files);
    let banned = [
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "SystemTime::now",
        "Instant::now",
    ];
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for b in banned {
            if text.contains(b) {
                found.push(format!("{}: {b}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O or clocks in meridian-core: {found:?}"
    );
}
