//! `apply` on a real SQLite file: outcomes, refusals that change nothing, batches.

use meridian_core::{AppSpec, Jurisdiction, Role};
use meridian_state::{apps, settings, tokens, Applied, Command, Refusal, TokenRecord};

mod support;

use support::*;

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
    create_region(&pool, "us-iad", "US").await;
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
    create_region(&pool, "eu-fra", "DE").await;
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
    create_region(&pool, "eu-fra", "DE").await;
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
