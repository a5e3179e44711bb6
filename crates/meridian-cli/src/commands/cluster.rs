//! `meridian cluster ...`

use clap::Subcommand;
use meridian_api::cluster::ClusterStatus;
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
    },
}

/// Runs a cluster subcommand.
pub async fn run(command: ClusterCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let status = client.cluster().await?;
            out.show(&status, || render_status(&status))
        }
        ClusterCommand::Settings { apps_domain } => {
            let settings = if apps_domain.is_some() {
                client
                    .patch_settings(&meridian_api::routing::ClusterSettings { apps_domain })
                    .await?
            } else {
                client.settings().await?
            };
            out.show(&settings, || {
                format!(
                    "apps domain: {}\n",
                    settings.apps_domain.as_deref().unwrap_or("-")
                )
            })
        }
    }
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
