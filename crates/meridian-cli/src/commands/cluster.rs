//! `meridian cluster ...`

use clap::Subcommand;
use meridian_api::cluster::ClusterStatus;
use meridian_api::routing::ClusterSettings;
use meridian_client::Client;

use crate::output::{or_dash, Output, Table};

/// Cluster subcommands.
#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Members, the leader and the Raft term.
    Status,
    /// Cluster-wide settings; with flags, change them.
    Settings {
        /// Serve apps as NAME.DOMAIN (default meridian.localhost).
        #[arg(long, value_name = "DOMAIN")]
        apps_domain: Option<String>,

        /// Jurisdictions apps created without --residency get, e.g. EU or EU,CH; "" clears
        /// it, so that such apps may run anywhere (the default).
        #[arg(long, value_name = "JURISDICTION", value_delimiter = ',')]
        default_residency: Option<Vec<String>>,
    },
}

/// Runs a cluster subcommand.
pub async fn run(command: ClusterCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let status = client.cluster().await?;
            out.show(&status, || render_status(&status))
        }
        ClusterCommand::Settings {
            apps_domain,
            default_residency,
        } => {
            let change = ClusterSettings {
                apps_domain,
                default_residency: default_residency.map(super::apps::clean_list),
            };
            let settings = if change == ClusterSettings::default() {
                client.settings().await?
            } else {
                client.patch_settings(&change).await?
            };
            out.show(&settings, || render_settings(&settings))
        }
    }
}

/// The settings, one per line.
fn render_settings(settings: &ClusterSettings) -> String {
    let mut t = Table::headless();
    t.row(vec![
        "apps domain:".into(),
        or_dash(settings.apps_domain.as_deref()),
    ]);
    let residency = match settings.default_residency.as_deref() {
        Some(list) if !list.is_empty() => list.join(", "),
        _ => "none (apps created without a residency may run anywhere)".into(),
    };
    t.row(vec!["default residency:".into(), residency]);
    t.render()
}

/// The member table, under a line with the term and leader.
pub fn render_status(status: &ClusterStatus) -> String {
    let mut table = Table::new(&["ID", "ADDR", "VOTER", "REGION", "LEADER"]);
    for m in &status.members {
        table.row(vec![
            m.id.to_string(),
            m.addr.clone(),
            if m.voter { "yes" } else { "no" }.to_string(),
            or_dash(m.region.as_deref()),
            if status.leader == Some(m.id) { "*" } else { "" }.to_string(),
        ]);
    }
    let leader = status
        .leader
        .map_or_else(|| "none".to_string(), |id| id.to_string());
    format!(
        "term: {}  leader: {leader}\n\n{}",
        status.term,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_api::cluster::Member;

    #[test]
    fn settings_say_when_there_is_no_default_residency() {
        let mut s = ClusterSettings {
            apps_domain: Some("apps.example.com".into()),
            default_residency: Some(Vec::new()),
        };
        assert_eq!(
            render_settings(&s),
            "apps domain:        apps.example.com\n\
             default residency:  none (apps created without a residency may run anywhere)\n"
        );
        s.default_residency = Some(vec!["EU".into(), "CH".into()]);
        assert!(render_settings(&s).ends_with("default residency:  EU, CH\n"));
    }

    #[test]
    fn leader_is_marked() {
        let status = ClusterStatus {
            leader: Some(2),
            term: 5,
            members: vec![
                Member {
                    id: 1,
                    addr: "http://a:7001".into(),
                    voter: true,
                    region: Some("eu-fra".into()),
                },
                Member {
                    id: 2,
                    addr: "http://b:7001".into(),
                    voter: false,
                    region: None,
                },
            ],
        };
        assert_eq!(
            render_status(&status),
            "term: 5  leader: 2\n\n\
             ID  ADDR           VOTER  REGION  LEADER\n\
             1   http://a:7001  yes    eu-fra\n\
             2   http://b:7001  no     -       *\n"
        );
    }
}
