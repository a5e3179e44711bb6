//! `meridian audit`: what the control plane decided about apps, and under which policy.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use meridian_api::nodes::{AuditEntry, AuditQuery};
use meridian_client::Client;
use meridian_core::app::parse_duration_ms;

use crate::output::{or_dash, Output, Table};
use crate::timestamp::{format_unix, parse_rfc3339};

/// Most entries the server answers in one call.
const MAX_LIMIT: u64 = 10_000;

/// `meridian audit`.
#[derive(Args)]
pub struct AuditArgs {
    /// Only this app's entries.
    #[arg(long, value_name = "APP")]
    app: Option<String>,

    /// Only entries since TIME: an RFC 3339 time such as 2024-05-01T12:00:00Z, or a
    /// duration back from now such as 10m, 2h or 7d.
    #[arg(long, value_name = "TIME", value_parser = since)]
    since: Option<Since>,

    /// Show the newest N entries that match, at most 10000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=10_000)
    )]
    limit: u64,
}

/// A `--since` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Since {
    /// Unix seconds (negative before 1970).
    At(i64),
    /// Milliseconds back from now.
    Ago(u64),
}

impl Since {
    /// Unix seconds, given the time `now`; before 1970 is 1970.
    fn unix(self, now: u64) -> u64 {
        match self {
            Since::At(at) => u64::try_from(at).unwrap_or(0),
            Since::Ago(ms) => now.saturating_sub(ms / 1000),
        }
    }
}

fn since(s: &str) -> Result<Since, String> {
    if let Some(ms) = parse_duration_ms(s) {
        return Ok(Since::Ago(ms));
    }
    parse_rfc3339(s).map(Since::At).ok_or_else(|| {
        "expected an RFC 3339 time such as 2024-05-01T12:00:00Z, or a duration back from now \
         such as 10m, 2h or 7d"
            .to_string()
    })
}

/// Runs `meridian audit`.
pub async fn run(args: AuditArgs, client: &Client, out: &Output) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // One more than shown tells whether older entries match too.
    let query = AuditQuery {
        app: args.app,
        since: args.since.map(|s| s.unix(now)),
        limit: Some((args.limit + 1).min(MAX_LIMIT)),
        newest: true,
        ..AuditQuery::default()
    };
    let mut entries = client.audit_entries(&query).await?;
    let more = entries.len() as u64 > args.limit;
    if more {
        entries.remove(0);
    }
    out.show(&entries, || render(&entries))?;
    if more {
        out.note(&format!(
            "Older entries match too: these are the newest {}. Show more with --limit (at most \
             {MAX_LIMIT}), or fewer with --since.",
            args.limit
        ))?;
    }
    Ok(())
}

fn render(entries: &[AuditEntry]) -> String {
    let mut t = Table::new(&["TIME", "APP", "KIND", "NODE", "REGION", "POLICY", "DETAIL"]);
    for e in entries {
        let region = match (&e.region, &e.country) {
            (Some(r), Some(c)) => format!("{r} ({c})"),
            (r, _) => or_dash(r.as_deref()),
        };
        t.row(vec![
            format_unix(e.at),
            e.app.clone(),
            e.kind.clone(),
            or_dash(e.node.as_deref()),
            region,
            e.policy.clone(),
            e.detail.clone(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration() {
        assert_eq!(since("10m"), Ok(Since::Ago(600_000)));
        assert_eq!(since("7d"), Ok(Since::Ago(604_800_000)));
        assert_eq!(since("2023-11-14T22:13:20Z"), Ok(Since::At(1_700_000_000)));
        let err = since("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339") && err.contains("10m"), "{err}");
    }

    #[test]
    fn since_is_counted_back_from_now() {
        assert_eq!(Since::Ago(120_000).unix(1_000), 880);
        assert_eq!(Since::Ago(120_000).unix(60), 0);
        assert_eq!(Since::At(-5).unix(1_000), 0);
        assert_eq!(Since::At(500).unix(1_000), 500);
    }

    #[test]
    fn entries_read_as_a_table() {
        let entry = AuditEntry {
            seq: 7,
            at: 1_700_000_000,
            app: "web".into(),
            kind: "placed".into(),
            instance: Some("i-1".into()),
            node: Some("fra-1".into()),
            region: Some("eu-fra".into()),
            country: Some("DE".into()),
            policy: "residency [EU]".into(),
            detail: "release 1 placed".into(),
        };
        let created = AuditEntry {
            kind: "created".into(),
            node: None,
            region: None,
            country: None,
            detail: "created with its own residency [EU]".into(),
            ..entry.clone()
        };
        assert_eq!(
            render(&[created, entry]),
            "TIME                  APP  KIND     NODE   REGION       POLICY          DETAIL\n\
             2023-11-14T22:13:20Z  web  created  -      -            residency [EU]  \
             created with its own residency [EU]\n\
             2023-11-14T22:13:20Z  web  placed   fra-1  eu-fra (DE)  residency [EU]  \
             release 1 placed\n"
        );
    }
}
