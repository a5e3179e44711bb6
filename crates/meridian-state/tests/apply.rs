//! `apply` on a real SQLite file: outcomes, refusals that change nothing, batches.

use meridian_core::{AppSpec, CountryCode, Jurisdiction, Name, Region, Role};
use meridian_state::apply::apply;
use meridian_state::db;
use meridian_state::{
    apps, audit, settings, tokens, Applied, AuditFilter, AuditRecord, Command, CommandResult,
    Refusal, TokenRecord,
};
use sqlx::SqlitePool;

async fn state() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open_state(&dir.path().join("state.db"), 1)
        .await
        .unwrap();
    (dir, pool)
}

async fn run(pool: &SqlitePool, cmd: Command) -> CommandResult {
    let mut tx = pool.begin().await.unwrap();
    let out = apply(&mut tx, &cmd).await.unwrap();
    tx.commit().await.unwrap();
    out
}

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn app(name: &str, residency: &[&str], regions: Option<&[&str]>) -> AppSpec {
    AppSpec {
        name: n(name),
        image: "web:1".into(),
        replicas: 1,
        port: 80,
        residency: residency
            .iter()
            .map(|j| Jurisdiction::parse(j).unwrap())
            .collect(),
        regions: regions.map(|r| r.iter().map(|s| n(s)).collect()),
        env: Default::default(),
        health: None,
        cpu_millis: 100,
        memory_mb: 128,
        origin_bound: Vec::new(),
        domains: Vec::new(),
    }
}

fn region(name: &str, country: &str) -> Region {
    Region {
        name: n(name),
        country: CountryCode::parse(country).unwrap(),
        latitude: 0.0,
        longitude: 0.0,
    }
}

fn token(id: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        role: Role::Admin,
        apps: None,
        created_at: 1,
        expires_at: 2,
        revoked_at: None,
    }
}

async fn app_names(pool: &SqlitePool) -> Vec<String> {
    let mut c = pool.acquire().await.unwrap();
    apps::apps(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.spec.name.to_string())
        .collect()
}

#[tokio::test]
async fn bootstrap_works_once() {
    let (_d, pool) = state().await;
    let first = run(
        &pool,
        Command::Bootstrap {
            signing_key: "k1".into(),
            admin: token("a"),
        },
    )
    .await;
    assert!(matches!(first, Ok(Applied::Token(_))));
    let second = run(
        &pool,
        Command::Bootstrap {
            signing_key: "k2".into(),
            admin: token("b"),
        },
    )
    .await;
    assert_eq!(second, Err(Refusal::AlreadyBootstrapped));
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        settings::setting(&mut c, "signing_key")
            .await
            .unwrap()
            .as_deref(),
        Some("k1")
    );
    assert!(
        tokens::token(&mut c, "b").await.unwrap().is_none(),
        "a refused bootstrap wrote nothing"
    );
}

#[tokio::test]
async fn a_batch_answers_each_command_and_refusals_change_nothing() {
    let (_d, pool) = state().await;
    run(
        &pool,
        Command::CreateRegion {
            region: region("us-iad", "US"),
            at: 1,
        },
    )
    .await
    .unwrap();
    let out = run(
        &pool,
        Command::Batch {
            commands: vec![
                Command::CreateApp {
                    spec: app("a", &[], None),
                    at: 1,
                    default_residency: false,
                },
                Command::CreateApp {
                    spec: app("a", &[], None),
                    at: 1,
                    default_residency: false,
                },
                Command::CreateApp {
                    spec: app("gdpr", &["EU"], Some(&["us-iad"])),
                    at: 1,
                    default_residency: false,
                },
                Command::CreateApp {
                    spec: app("b", &["US"], Some(&["us-iad"])),
                    at: 1,
                    default_residency: false,
                },
                Command::DeleteApp {
                    name: n("missing"),
                    at: 0,
                },
            ],
        },
    )
    .await;
    let Ok(Applied::Batch(results)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(results.len(), 5);
    assert!(matches!(results[0], Ok(Applied::App(_))));
    assert!(matches!(results[1], Err(Refusal::AlreadyExists { .. })));
    assert!(
        matches!(&results[2], Err(Refusal::Invalid { field, message }) if field == "regions[0]" && message.contains("outside")),
        "{:?}",
        results[2]
    );
    assert!(matches!(results[3], Ok(Applied::App(_))));
    assert!(matches!(results[4], Err(Refusal::NotFound { .. })));
    assert_eq!(app_names(&pool).await, ["a", "b"]);
}

#[tokio::test]
async fn regions_in_use_are_protected() {
    let (_d, pool) = state().await;
    run(
        &pool,
        Command::CreateRegion {
            region: region("eu-fra", "DE"),
            at: 1,
        },
    )
    .await
    .unwrap();
    run(
        &pool,
        Command::CreateApp {
            spec: app("web", &["EU"], Some(&["eu-fra"])),
            at: 1,
            default_residency: false,
        },
    )
    .await
    .unwrap();
    let del = run(&pool, Command::DeleteRegion { name: n("eu-fra") }).await;
    assert!(matches!(del, Err(Refusal::Conflict { .. })), "{del:?}");
    let moved = run(
        &pool,
        Command::UpdateRegion {
            region: region("eu-fra", "US"),
            expected_version: 1,
            at: 2,
        },
    )
    .await;
    assert!(matches!(moved, Err(Refusal::Conflict { .. })), "{moved:?}");
    let within_eu = run(
        &pool,
        Command::UpdateRegion {
            region: region("eu-fra", "NL"),
            expected_version: 1,
            at: 2,
        },
    )
    .await;
    assert!(
        matches!(within_eu, Ok(Applied::Region(ref r)) if r.version == 2),
        "{within_eu:?}"
    );
    let stale = run(
        &pool,
        Command::UpdateRegion {
            region: region("eu-fra", "BE"),
            expected_version: 1,
            at: 3,
        },
    )
    .await;
    assert!(matches!(stale, Err(Refusal::Stale { .. })), "{stale:?}");
}

#[tokio::test]
async fn nested_batches_are_refused() {
    let (_d, pool) = state().await;
    let out = run(
        &pool,
        Command::Batch {
            commands: vec![Command::Batch {
                commands: vec![Command::CreateApp {
                    spec: app("x", &[], None),
                    at: 1,
                    default_residency: false,
                }],
            }],
        },
    )
    .await;
    let Ok(Applied::Batch(results)) = out else {
        panic!("{out:?}")
    };
    assert!(matches!(results[0], Err(Refusal::Conflict { .. })));
    assert!(app_names(&pool).await.is_empty());
}

fn with_domains(mut spec: AppSpec, domains: &[&str]) -> AppSpec {
    spec.domains = domains
        .iter()
        .map(|d| meridian_core::DomainName::parse(d).unwrap())
        .collect();
    spec
}

#[tokio::test]
async fn a_custom_domain_belongs_to_one_app() {
    let (_d, pool) = state().await;
    let create = |spec| Command::CreateApp {
        spec,
        at: 1,
        default_residency: false,
    };
    run(
        &pool,
        create(with_domains(app("a", &[], None), &["shop.example.com"])),
    )
    .await
    .unwrap();
    let taken = run(
        &pool,
        create(with_domains(app("b", &[], None), &["shop.example.com"])),
    )
    .await;
    assert!(
        matches!(&taken, Err(Refusal::Conflict { message }) if message.contains("app a")),
        "{taken:?}"
    );
    assert_eq!(
        app_names(&pool).await,
        ["a"],
        "the refused app was not written"
    );
    // Under the apps domain, every app already has <name>.<apps domain>.
    let under = run(
        &pool,
        create(with_domains(app("c", &[], None), &["x.meridian.localhost"])),
    )
    .await;
    assert!(
        matches!(&under, Err(Refusal::Invalid { field, .. }) if field == "domains[0]"),
        "{under:?}"
    );
    // Deleting the holder frees the domain; the spec round-trips through the table.
    run(
        &pool,
        Command::DeleteApp {
            name: n("a"),
            at: 2,
        },
    )
    .await
    .unwrap();
    run(
        &pool,
        create(with_domains(app("b", &[], None), &["shop.example.com"])),
    )
    .await
    .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let b = apps::app(&mut c, "b").await.unwrap().unwrap();
    assert_eq!(b.spec.domains[0].as_str(), "shop.example.com");
}

#[tokio::test]
async fn the_apps_domain_cannot_swallow_a_custom_domain() {
    let (_d, pool) = state().await;
    let domain = |d: &str| Command::SetAppsDomain {
        domain: meridian_core::DomainName::parse(d).unwrap(),
    };
    run(
        &pool,
        Command::CreateApp {
            spec: with_domains(app("a", &[], None), &["www.example.com"]),
            at: 1,
            default_residency: false,
        },
    )
    .await
    .unwrap();
    let clash = run(&pool, domain("example.com")).await;
    assert!(matches!(clash, Err(Refusal::Conflict { .. })), "{clash:?}");
    run(&pool, domain("apps.example.org")).await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    assert_eq!(
        settings::apps_domain(&mut c).await.unwrap().as_str(),
        "apps.example.org"
    );
}

#[tokio::test]
async fn origin_bound_names_known_jurisdictions_only() {
    let (_d, pool) = state().await;
    let mut spec = app("a", &[], None);
    spec.origin_bound = vec![Jurisdiction::parse("NORDIC").unwrap()];
    let out = run(
        &pool,
        Command::CreateApp {
            spec,
            at: 1,
            default_residency: false,
        },
    )
    .await;
    assert!(
        matches!(&out, Err(Refusal::Invalid { field, .. }) if field == "origin_bound[0]"),
        "{out:?}"
    );
    let mut spec = app("a", &[], None);
    spec.origin_bound = vec![Jurisdiction::parse("EU").unwrap()];
    run(
        &pool,
        Command::CreateApp {
            spec,
            at: 1,
            default_residency: false,
        },
    )
    .await
    .unwrap();
    let mut c = pool.acquire().await.unwrap();
    let a = apps::app(&mut c, "a").await.unwrap().unwrap();
    assert_eq!(a.spec.origin_bound, [Jurisdiction::parse("EU").unwrap()]);
}

#[tokio::test]
async fn routers_register_in_existing_regions() {
    let (_d, pool) = state().await;
    let register = |region: &str| Command::RegisterRouter {
        name: n("router-a"),
        region: n(region),
        url: "http://10.0.0.1:8080".into(),
        at: 1,
    };
    let out = run(&pool, register("eu-fra")).await;
    assert!(matches!(out, Err(Refusal::Invalid { .. })), "{out:?}");
    run(
        &pool,
        Command::CreateRegion {
            region: region("eu-fra", "DE"),
            at: 1,
        },
    )
    .await
    .unwrap();
    run(&pool, register("eu-fra")).await.unwrap();
    run(&pool, register("eu-fra")).await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    let routers: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, region, url FROM routers")
            .fetch_all(&mut *c)
            .await
            .unwrap();
    assert_eq!(routers.len(), 1, "re-registering replaces the entry");
}

#[tokio::test]
async fn first_releases_held_back_are_written_before_anything_reads_them() {
    use meridian_state::apply::Applier;
    use meridian_state::{releases, Touched};
    let (_dir, pool) = state().await;
    let mut tx = pool.begin().await.unwrap();
    let mut applier = Applier::default();
    let mut touched = Touched::default();
    // Two creates in a row, then a deploy of the first: the deploy must find release 1.
    for name in ["a", "b"] {
        let created = applier
            .apply(
                &mut tx,
                &Command::CreateApp {
                    spec: app(name, &[], None),
                    at: 10,
                    default_residency: false,
                },
                &mut touched,
            )
            .await
            .unwrap();
        assert!(matches!(created, Ok(Applied::App(_))), "{created:?}");
    }
    let deployed = applier
        .apply(
            &mut tx,
            &Command::Deploy {
                app: n("a"),
                image: "web:2".into(),
                deadline_s: 60,
                at: 11,
            },
            &mut touched,
        )
        .await
        .unwrap();
    assert!(
        matches!(deployed, Ok(Applied::Release(ref r)) if r.number == 2),
        "{deployed:?}"
    );
    // A create refused as a duplicate holds back nothing.
    let again = applier
        .apply(
            &mut tx,
            &Command::CreateApp {
                spec: app("b", &[], None),
                at: 12,
                default_residency: false,
            },
            &mut touched,
        )
        .await
        .unwrap();
    assert!(
        matches!(again, Err(Refusal::AlreadyExists { .. })),
        "{again:?}"
    );
    applier.finish(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    let mut c = pool.acquire().await.unwrap();
    let numbers = |rs: Vec<meridian_state::ReleaseRecord>| {
        rs.into_iter().map(|r| r.number).collect::<Vec<_>>()
    };
    assert_eq!(
        numbers(releases::releases(&mut c, Some("a")).await.unwrap()),
        vec![2, 1]
    );
    assert_eq!(
        numbers(releases::releases(&mut c, Some("b")).await.unwrap()),
        vec![1]
    );
}

/// A run of creates that knows which names are taken holds back its app rows too. Whatever
/// the run holds, the outcomes and the tables must be those of applying one command at a
/// time.
#[tokio::test]
async fn a_run_of_creates_holding_rows_back_ends_as_one_at_a_time() {
    use meridian_state::apply::Applier;
    use meridian_state::{releases, Touched};
    let create = |spec| Command::CreateApp {
        spec,
        at: 10,
        default_residency: false,
    };
    let run_of = vec![
        create(app("a", &[], None)),
        create(app("b", &[], None)),
        create(app("a", &[], None)),   // taken by a held-back row
        create(app("pre", &[], None)), // taken before the run
        create(with_domains(app("d", &[], None), &["shop.example.com"])),
        create(app("d", &[], None)), // taken by a written row
        create(with_domains(app("e", &[], None), &["shop.example.com"])), // domain taken
        create(app("f", &["EU"], None)),
        Command::Deploy {
            app: n("a"),
            image: "web:2".into(),
            deadline_s: 60,
            at: 11,
        },
        create(app("g", &[], None)),
        Command::DeleteApp {
            name: n("b"),
            at: 12,
        },
        create(app("b", &[], None)),
        create(app("g", &[], None)),
    ];
    let names: Vec<&str> = run_of
        .iter()
        .filter_map(|c| match c {
            Command::CreateApp { spec, .. } => Some(spec.name.as_str()),
            _ => None,
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut tables = Vec::new();
    let mut final_names = Vec::new();
    for hold in [true, false] {
        let (_d, pool) = state().await;
        run(&pool, create(app("pre", &[], None))).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let mut applier = Applier::default();
        if hold {
            applier.expect_creates(&mut tx, &names).await.unwrap();
        }
        let mut results = Vec::new();
        for cmd in &run_of {
            let r = applier
                .apply(&mut tx, cmd, &mut Touched::default())
                .await
                .unwrap();
            results.push(format!("{r:?}"));
        }
        applier.finish(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let mut c = pool.acquire().await.unwrap();
        let apps = apps::apps(&mut c).await.unwrap();
        let releases = releases::releases(&mut c, None).await.unwrap();
        let audit = everything_audited(&mut c).await;
        let domains: Vec<(String, String)> =
            sqlx::query_as("SELECT domain, app FROM app_domains ORDER BY domain")
                .fetch_all(&mut *c)
                .await
                .unwrap();
        final_names = apps.iter().map(|a| a.spec.name.to_string()).collect();
        outcomes.push(results);
        tables.push(format!("{apps:?}\n{releases:?}\n{domains:?}\n{audit:?}"));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(tables[0], tables[1]);
    let refused: Vec<usize> = outcomes[0]
        .iter()
        .enumerate()
        .filter(|(_, r)| r.starts_with("Err"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(refused, [2, 3, 5, 6, 12], "{:#?}", outcomes[0]);
    assert_eq!(final_names, ["a", "b", "d", "f", "g", "pre"]);
}

async fn everything_audited(c: &mut sqlx::SqliteConnection) -> Vec<AuditRecord> {
    let all = AuditFilter {
        limit: 1000,
        ..AuditFilter::default()
    };
    audit::audit(c, &all).await.unwrap()
}

fn set_default(residency: &[&str]) -> Command {
    Command::SetDefaultResidency {
        residency: residency
            .iter()
            .map(|j| Jurisdiction::parse(j).unwrap())
            .collect(),
    }
}

/// A create that leaves the residency to the cluster.
fn create_without_residency(spec: AppSpec, at: u64) -> Command {
    Command::CreateApp {
        spec,
        at,
        default_residency: true,
    }
}

#[tokio::test]
async fn apps_without_a_residency_get_the_cluster_default_and_the_audit_says_where_from() {
    let (_d, pool) = state().await;
    run(
        &pool,
        Command::CreateRegion {
            region: region("us-iad", "US"),
            at: 1,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run(&pool, set_default(&["EU", "CH"])).await,
        Ok(Applied::Done)
    );
    // Refused like an app's own residency, changing nothing.
    for (bad, field) in [
        (set_default(&["EU", "eu"]), "default_residency[1]"),
        (set_default(&["NORDICS"]), "default_residency[0]"),
    ] {
        let out = run(&pool, bad).await;
        assert!(
            matches!(&out, Err(Refusal::Invalid { field: f, .. }) if f == field),
            "{out:?}"
        );
    }
    let mut c = pool.acquire().await.unwrap();
    let eu_ch = vec![
        Jurisdiction::parse("EU").unwrap(),
        Jurisdiction::parse("CH").unwrap(),
    ];
    assert_eq!(settings::default_residency(&mut c).await.unwrap(), eu_ch);
    drop(c);

    // The default applies only when the creator gave none; `[]` given means anywhere.
    let out = run(&pool, create_without_residency(app("eu", &[], None), 5)).await;
    assert!(
        matches!(&out, Ok(Applied::App(a)) if a.spec.residency == eu_ch),
        "{out:?}"
    );
    for (name, residency) in [("own", &["US"][..]), ("free", &[][..])] {
        run(
            &pool,
            Command::CreateApp {
                spec: app(name, residency, None),
                at: 5,
                default_residency: false,
            },
        )
        .await
        .unwrap();
    }
    // Pinned outside a residency the app did not choose: refused, saying where it came from.
    let pinned = run(
        &pool,
        create_without_residency(app("pinned", &[], Some(&["us-iad"])), 5),
    )
    .await;
    assert!(
        matches!(&pinned, Err(Refusal::Invalid { field, message })
            if field == "regions[0]" && message.contains("cluster's default residency")),
        "{pinned:?}"
    );
    // Cleared, the default leaves the next app free to run anywhere, and says so.
    run(&pool, set_default(&[])).await.unwrap();
    run(&pool, create_without_residency(app("none", &[], None), 6))
        .await
        .unwrap();

    assert_eq!(app_names(&pool).await, ["eu", "free", "none", "own"]);
    let mut c = pool.acquire().await.unwrap();
    assert!(settings::default_residency(&mut c)
        .await
        .unwrap()
        .is_empty());
    let created: Vec<(String, String, String)> = everything_audited(&mut c)
        .await
        .into_iter()
        .filter(|a| a.kind == "created")
        .map(|a| (a.app.to_string(), a.policy, a.detail))
        .collect();
    let expect = |app: &str, policy: &str, detail: &str| {
        (app.to_string(), policy.to_string(), detail.to_string())
    };
    assert_eq!(
        created,
        [
            expect(
                "eu",
                "residency [EU, CH]",
                "created without a residency; the cluster's default residency [EU, CH] applies"
            ),
            expect(
                "own",
                "residency [US]",
                "created with its own residency [US]"
            ),
            expect(
                "free",
                "residency [anywhere]",
                "created to run anywhere, as its creator asked"
            ),
            expect(
                "none",
                "residency [anywhere]",
                "created without a residency, and the cluster has no default residency: \
                 it may run in any region"
            ),
        ]
    );
}

/// Creates in one run read the default once; a change of it in between is seen by the next.
#[tokio::test]
async fn a_default_changed_within_a_batch_applies_from_there_on() {
    let (_d, pool) = state().await;
    run(&pool, set_default(&["EU"])).await.unwrap();
    let out = run(
        &pool,
        Command::Batch {
            commands: vec![
                create_without_residency(app("a", &[], None), 1),
                create_without_residency(app("b", &[], None), 1),
                set_default(&["US"]),
                create_without_residency(app("c", &[], None), 1),
            ],
        },
    )
    .await;
    let Ok(Applied::Batch(results)) = out else {
        panic!("{out:?}");
    };
    let residency: Vec<String> = results
        .iter()
        .filter_map(|r| match r {
            Ok(Applied::App(a)) => Some(a.spec.residency_text()),
            _ => None,
        })
        .collect();
    assert_eq!(residency, ["EU", "EU", "US"]);
}

#[tokio::test]
async fn the_audit_reads_by_app_time_and_newest() {
    let (_d, pool) = state().await;
    for (name, at) in [("a", 100), ("b", 200), ("a2", 300), ("b2", 400)] {
        run(&pool, create_without_residency(app(name, &[], None), at))
            .await
            .unwrap();
    }
    let read = |filter: AuditFilter<'static>| {
        let pool = pool.clone();
        async move {
            audit::audit(&mut pool.acquire().await.unwrap(), &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.app.to_string())
                .collect::<Vec<_>>()
        }
    };
    let base = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    assert_eq!(read(base).await, ["a", "b", "a2", "b2"]);
    let since = AuditFilter { since: 200, ..base };
    assert_eq!(read(since).await, ["b", "a2", "b2"]);
    let newest = AuditFilter {
        limit: 2,
        newest: true,
        ..base
    };
    assert_eq!(read(newest).await, ["a2", "b2"]);
    let oldest = AuditFilter { limit: 2, ..base };
    assert_eq!(read(oldest).await, ["a", "b"]);
    let one_app = AuditFilter {
        app: Some("b"),
        since: 150,
        ..base
    };
    assert_eq!(read(one_app).await, ["b"]);
}
