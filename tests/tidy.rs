//! Keeps the crate ladder and the map of it true: each crate depends only on the Meridian
//! crates its rung allows, never on the crates its rung forbids, and ARCHITECTURE.md describes
//! exactly these crates, rungs and tables.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest(dir: &Path) -> toml::Table {
    let path = dir.join("Cargo.toml");
    read(&path)
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One crate of the workspace, as its Cargo.toml describes it.
struct Crate {
    name: String,
    dir: PathBuf,
    /// Normal and build dependencies (any target), by package name.
    dependencies: BTreeSet<String>,
}

impl Crate {
    fn meridian_dependencies(&self) -> BTreeSet<&str> {
        self.dependencies
            .iter()
            .map(String::as_str)
            .filter(|d| d.starts_with("meridian-"))
            .collect()
    }
}

/// The package names a dependency table refers to (a renamed dependency by its package).
fn dependency_names(table: &toml::Table) -> impl Iterator<Item = String> + '_ {
    ["dependencies", "build-dependencies"]
        .into_iter()
        .filter_map(|section| table.get(section).and_then(|d| d.as_table()))
        .flat_map(|deps| deps.iter())
        .map(|(key, spec)| {
            spec.get("package")
                .and_then(|p| p.as_str())
                .unwrap_or(key)
                .to_string()
        })
}

/// Every member of the workspace (`crates/*` and `tests`), read from the root Cargo.toml.
fn workspace() -> Vec<Crate> {
    let root = root();
    let members = manifest(&root)["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| m.as_str().expect("a member path").to_string())
        .collect::<Vec<_>>();
    let mut dirs = Vec::new();
    for member in members {
        match member.strip_suffix("/*") {
            Some(parent) => {
                let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
                    .expect("member folder")
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("Cargo.toml").is_file())
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            None => dirs.push(root.join(member)),
        }
    }
    dirs.into_iter()
        .map(|dir| {
            let m = manifest(&dir);
            let name = m["package"]["name"].as_str().expect("package.name");
            let mut dependencies: BTreeSet<String> = dependency_names(&m).collect();
            if let Some(targets) = m.get("target").and_then(|t| t.as_table()) {
                for target in targets.values().filter_map(|t| t.as_table()) {
                    dependencies.extend(dependency_names(target));
                }
            }
            Crate {
                name: name.to_string(),
                dir,
                dependencies,
            }
        })
        .collect()
}

/// One crate's place on the ladder.
struct Rung {
    krate: &'static str,
    /// The Meridian crates it may depend on, each on a rung below it.
    may_use: &'static [&'static str],
    /// Third-party crates it must never depend on.
    never: &'static [&'static str],
}

/// The ladder from the bottom up. Every crate of the workspace has a rung; ARCHITECTURE.md's
/// crate table lists the same rungs in the same order.
const LADDER: &[Rung] = &[
    // Pure: no runtime, no I/O, no clock.
    Rung {
        krate: "meridian-core",
        may_use: &[],
        never: &[
            "tokio", "sqlx", "axum", "reqwest", "hyper", "openraft", "bollard", "anyhow",
        ],
    },
    // Wire types only: no runtime, no HTTP client (that is meridian-client's).
    Rung {
        krate: "meridian-api",
        may_use: &["meridian-core"],
        never: &[
            "tokio", "sqlx", "axum", "reqwest", "hyper", "openraft", "bollard", "anyhow",
        ],
    },
    // The cluster's CA and the rustls set-ups: certificates and handshakes, no HTTP.
    Rung {
        krate: "meridian-tls",
        may_use: &[],
        never: &[
            "sqlx", "axum", "reqwest", "hyper", "openraft", "bollard", "anyhow",
        ],
    },
    // The one HTTP client of the API, for everything that calls a server from outside it.
    Rung {
        krate: "meridian-client",
        may_use: &["meridian-core", "meridian-api", "meridian-tls"],
        never: &["sqlx", "axum", "openraft", "bollard", "anyhow"],
    },
    // Locating clients is a pure lookup over files read once: no runtime, no network.
    Rung {
        krate: "meridian-geo",
        may_use: &["meridian-core"],
        never: &[
            "tokio", "sqlx", "axum", "reqwest", "hyper", "openraft", "bollard", "anyhow",
        ],
    },
    // The replicated store holds no transport: the server hands it the Raft network.
    Rung {
        krate: "meridian-state",
        may_use: &["meridian-core"],
        never: &["axum", "reqwest", "hyper", "bollard", "anyhow"],
    },
    Rung {
        krate: "meridian-server",
        may_use: &[
            "meridian-core",
            "meridian-api",
            "meridian-tls",
            "meridian-geo",
            "meridian-state",
        ],
        never: &["bollard", "anyhow"],
    },
    // Agents talk to the control plane over its API only, through meridian-client.
    Rung {
        krate: "meridian-agent",
        may_use: &["meridian-core", "meridian-api", "meridian-client"],
        never: &["sqlx", "axum", "reqwest", "openraft", "anyhow"],
    },
    // Routers work from the route table alone: no Raft, no SQL, no Docker; the table comes
    // through meridian-client.
    Rung {
        krate: "meridian-router",
        may_use: &[
            "meridian-core",
            "meridian-api",
            "meridian-client",
            "meridian-geo",
        ],
        never: &["sqlx", "reqwest", "openraft", "bollard", "anyhow"],
    },
    // The test app goes alone into an image, built offline: the standard library only (see
    // `meridian_hello_has_no_dependencies`).
    Rung {
        krate: "meridian-hello",
        may_use: &[],
        never: &[],
    },
    Rung {
        krate: "meridian-cli",
        may_use: &[
            "meridian-core",
            "meridian-api",
            "meridian-tls",
            "meridian-client",
            "meridian-geo",
            "meridian-state",
            "meridian-server",
            "meridian-agent",
            "meridian-router",
        ],
        never: &[],
    },
    Rung {
        krate: "meridian-bench",
        may_use: &["meridian-api", "meridian-tls", "meridian-client"],
        never: &[],
    },
    // The test harness's latency relay stands apart: it knows nothing of Meridian.
    Rung {
        krate: "meridian-relay",
        may_use: &[],
        never: &[],
    },
    Rung {
        krate: "meridian-tests",
        may_use: &[
            "meridian-core",
            "meridian-api",
            "meridian-tls",
            "meridian-client",
        ],
        never: &[],
    },
];

fn rung(krate: &str) -> Option<&'static Rung> {
    LADDER.iter().find(|r| r.krate == krate)
}

#[test]
fn every_crate_has_a_rung() {
    let crates: BTreeSet<String> = workspace().into_iter().map(|c| c.name).collect();
    let rungs: BTreeSet<String> = LADDER.iter().map(|r| r.krate.to_string()).collect();
    let unlisted: Vec<_> = crates.difference(&rungs).collect();
    let gone: Vec<_> = rungs.difference(&crates).collect();
    assert!(
        unlisted.is_empty() && gone.is_empty(),
        "crates without a rung in tests/tidy.rs: {unlisted:?}; rungs of no crate: {gone:?}"
    );
}

#[test]
fn the_ladder_only_points_down() {
    let mut below = BTreeSet::new();
    let mut broken = Vec::new();
    for r in LADDER {
        for used in r.may_use {
            if !below.contains(used) {
                broken.push(format!("{} may use {used}, which is not below it", r.krate));
            }
        }
        below.insert(r.krate);
    }
    assert!(broken.is_empty(), "LADDER is not a ladder: {broken:?}");
}

#[test]
fn crates_depend_only_on_what_their_rung_allows() {
    let mut broken = Vec::new();
    for c in workspace() {
        let Some(r) = rung(&c.name) else {
            broken.push(format!("{} has no rung in tests/tidy.rs", c.name));
            continue;
        };
        for dep in c.meridian_dependencies() {
            if !r.may_use.contains(&dep) {
                broken.push(format!(
                    "{} depends on {dep}, which its rung does not allow",
                    c.name
                ));
            }
        }
        for dep in &c.dependencies {
            if r.never.contains(&dep.as_str()) {
                broken.push(format!(
                    "{} depends on {dep}, which its rung forbids",
                    c.name
                ));
            }
        }
    }
    assert!(broken.is_empty(), "crate ladder broken: {broken:?}");
}

/// The test app goes alone into an image, built offline: the standard library only.
#[test]
fn meridian_hello_has_no_dependencies() {
    let hello = workspace()
        .into_iter()
        .find(|c| c.name == "meridian-hello")
        .expect("meridian-hello is a workspace member");
    assert_eq!(hello.dependencies, BTreeSet::new());
}

/// The text of `## {heading}` in ARCHITECTURE.md, up to the next heading of that level.
fn architecture_section(heading: &str) -> String {
    let text = read(&root().join("ARCHITECTURE.md"));
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no `## {heading}` section"));
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The `code spans` of a piece of markdown.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// One row of ARCHITECTURE.md's crate table.
struct MapRow {
    krate: String,
    may_use: BTreeSet<String>,
    never: BTreeSet<String>,
}

/// The rows of the table under `## Crate map`, columns found by their headers.
fn crate_map() -> Vec<MapRow> {
    let section = architecture_section("Crate map");
    let mut lines = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        let line = line.trim().trim_start_matches('|').trim_end_matches('|');
        line.split('|').map(|c| c.trim().to_string()).collect()
    };
    let header = cells(lines.next().expect("the crate map has a table"));
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("the crate table has no `{name}` column: {header:?}"))
    };
    let (krate, may_use, never) = (
        column("crate"),
        column("may depend on"),
        column("must not depend on"),
    );
    let spans = |cell: &str| -> BTreeSet<String> {
        code_spans(cell).into_iter().map(String::from).collect()
    };
    lines
        .skip(1) // |---|---|
        .map(|line| {
            let row = cells(line);
            MapRow {
                krate: code_spans(&row[krate])
                    .first()
                    .unwrap_or_else(|| panic!("no `crate` name in: {line}"))
                    .to_string(),
                may_use: spans(&row[may_use]),
                never: spans(&row[never]),
            }
        })
        .collect()
}

#[test]
fn the_crate_map_names_every_crate_once() {
    let rows: Vec<String> = crate_map().into_iter().map(|r| r.krate).collect();
    let named: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(named.len(), rows.len(), "a crate is listed twice: {rows:?}");
    let crates: BTreeSet<String> = workspace().into_iter().map(|c| c.name).collect();
    let missing: Vec<_> = crates.iter().filter(|c| !named.contains(c)).collect();
    let extra: Vec<_> = named.iter().filter(|c| !crates.contains(**c)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ARCHITECTURE.md's crate map lacks {missing:?} and names crates that do not exist: \
         {extra:?}"
    );
}

#[test]
fn the_crate_map_is_the_ladder() {
    let crates = workspace();
    let mut above = BTreeSet::new();
    let mut wrong = Vec::new();
    for row in crate_map() {
        let name = row.krate.as_str();
        if let Some(c) = crates.iter().find(|c| c.name == name) {
            for dep in c.meridian_dependencies() {
                if !above.contains(dep) {
                    wrong.push(format!(
                        "{name} depends on {dep}, which is not listed above it"
                    ));
                }
            }
        }
        if let Some(r) = rung(name) {
            let may_use: BTreeSet<String> = r.may_use.iter().map(|s| s.to_string()).collect();
            let never: BTreeSet<String> = r.never.iter().map(|s| s.to_string()).collect();
            if row.may_use != may_use {
                wrong.push(format!(
                    "{name} may depend on {may_use:?} (tests/tidy.rs), the map says {:?}",
                    row.may_use
                ));
            }
            if row.never != never {
                wrong.push(format!(
                    "{name} must not depend on {never:?} (tests/tidy.rs), the map says {:?}",
                    row.never
                ));
            }
        }
        above.insert(row.krate);
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's crate map is wrong: {wrong:?}"
    );
}

/// The tables `migrations/state` leaves in `state.db`.
fn state_tables() -> BTreeSet<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("migrations/state"))
        .expect("migrations/state")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut tables = BTreeSet::new();
    for f in files {
        // Comments first: one may hold a `;`.
        let sql: String = read(&f)
            .lines()
            .map(|l| l.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for statement in sql.split(';') {
            let words: Vec<String> = statement
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| c == '(' || c == '"'))
                .map(str::to_lowercase)
                .collect();
            match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["create", "table", "if", "not", "exists", name, ..]
                | ["create", "table", name, ..] => {
                    tables.insert(name.to_string());
                }
                ["drop", "table", "if", "exists", name, ..] | ["drop", "table", name, ..] => {
                    tables.remove(name);
                }
                ["alter", "table", from, "rename", "to", to, ..] => {
                    tables.remove(from);
                    tables.insert(to.to_string());
                }
                _ => {}
            }
        }
    }
    tables
}

#[test]
fn the_storage_section_names_every_state_table() {
    let section = architecture_section("Storage");
    let state_db = section
        .split("\n- ")
        .find(|item| item.starts_with("`state.db`"))
        .expect("ARCHITECTURE.md's Storage section has a `state.db` item");
    let named: BTreeSet<&str> = code_spans(state_db).into_iter().collect();
    let tables = state_tables();
    assert!(tables.contains("apps"), "tables read: {tables:?}");
    let missing: Vec<_> = tables
        .iter()
        .filter(|t| !named.contains(t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's `state.db` item lacks the tables {missing:?}"
    );
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
    for c in workspace().iter().filter(|c| c.name != "meridian-state") {
        let mut files = Vec::new();
        rust_files(&c.dir.join("src"), &mut files);
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

/// The field a `thiserror` variant (or struct) returns as its source: the one marked
/// `#[source]` or `#[from]`, or else the one named `source`. Tuple fields are named by index.
fn source_field(fields: &str) -> Option<String> {
    let tuple = fields.trim_start().starts_with('(');
    for marker in ["#[source]", "#[from]"] {
        if let Some(at) = fields.find(marker) {
            if tuple {
                return Some(fields[..at].matches(',').count().to_string());
            }
            let after = &fields[at + marker.len()..];
            let name = after.split(':').next().unwrap_or_default().trim();
            return Some(name.trim_start_matches("pub ").to_string());
        }
    }
    let named = fields.lines().any(|l| {
        l.trim_start()
            .trim_start_matches("pub ")
            .starts_with("source:")
    });
    named.then(|| "source".to_string())
}

/// An error says each thing once: its message does not also print the source it returns, or
/// the CLI's `a: b: c` chain repeats it ("Address in use: Address in use").
#[test]
fn errors_do_not_print_the_source_they_return() {
    let mut files = Vec::new();
    for c in workspace() {
        rust_files(&c.dir.join("src"), &mut files);
    }
    let mut twice = Vec::new();
    for f in files {
        let text = read(&f);
        for (at, _) in text.match_indices("#[error(") {
            let rest = &text[at + "#[error(".len()..];
            let Some(end) = rest.find(")]") else {
                continue;
            };
            let format = &rest[..end];
            if format.trim() == "transparent" {
                continue;
            }
            // The variant's (or struct's) name and fields: up to the next error attribute or
            // the end of the enum or struct.
            let item = &rest[end + 2..];
            let item_end = [
                item.find("#[error("),
                item.find("\n}"),
                item.find("\n    }\n"),
                item.find(");"),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(item.len());
            let item = &item[..item_end];
            // Skip doc comments and attributes before the variant's name.
            let decl = item
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty() || l.starts_with("///") || l.starts_with("#["))
                .collect::<Vec<_>>()
                .join("\n");
            let Some(open) = decl.find(['(', '{']) else {
                continue; // a unit variant has no source
            };
            let Some(source) = source_field(&decl[open..]) else {
                continue;
            };
            let shown = [
                format!("{{{source}}}"),
                format!("{{{source}:"),
                format!(".{source}"),
            ];
            if shown.iter().any(|s| format.contains(s.as_str())) {
                let name = decl[..open].split_whitespace().last().unwrap_or_default();
                let file = f.strip_prefix(root()).unwrap_or(&f).display();
                twice.push(format!("{file}: {name} prints {source}"));
            }
        }
    }
    assert!(
        twice.is_empty(),
        "errors that print the source they also return: {twice:?}"
    );
}
