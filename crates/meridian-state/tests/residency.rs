//! The cluster's default residency and the audit log, through `apply` on a real SQLite file:
//! the default applied to creates that leave the residency out, the `created` entries saying
//! where each app's residency came from, and the audit's filters.

use meridian_core::{AppSpec, Jurisdiction};
use meridian_state::{audit, settings, Applied, AuditFilter, Command, Refusal};

mod support;

use support::*;

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
    create_region(&pool, "us-iad", "US").await;
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
