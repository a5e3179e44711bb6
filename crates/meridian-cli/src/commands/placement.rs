//! Where an app runs: `meridian apps instances|plan|releases`.

use meridian_api::nodes::{InstanceView, PlanView, ReleaseView};
use meridian_client::Client;
use meridian_core::InstanceState;

use crate::output::{or_dash, Output, Table};
use crate::timestamp::format_unix;

/// `meridian apps instances APP`.
pub async fn instances(client: &Client, out: &Output, app: &str, all: bool) -> anyhow::Result<()> {
    let mut list = client.instances(app).await?;
    if !all {
        list.retain(InstanceView::is_wanted);
    }
    out.show(&list, || render_instances(&list))
}

/// The instances table.
pub fn render_instances(list: &[InstanceView]) -> String {
    let mut t = Table::new(&[
        "ID", "NODE", "REGION", "RELEASE", "STATE", "DESIRED", "ADDRESS", "DETAIL",
    ]);
    for i in list {
        t.row(vec![
            i.id.clone(),
            i.node.clone(),
            i.region.clone(),
            i.release.to_string(),
            match i.exit_code {
                Some(code) if i.observed() == Some(InstanceState::Exited) => {
                    format!("exited({code})")
                }
                _ => i.state.clone(),
            },
            i.desired.clone(),
            or_dash(i.address.as_deref()),
            or_dash(i.detail.as_deref()),
        ]);
    }
    t.render()
}

/// `meridian apps plan APP`.
pub async fn plan(client: &Client, out: &Output, app: &str) -> anyhow::Result<()> {
    let plan = client.plan(app).await?;
    out.show(&plan, || render_plan(&plan))
}

fn render_plan(p: &PlanView) -> String {
    let mut t = Table::new(&["NODE", "REGION", "ELIGIBLE", "REASON"]);
    for n in &p.nodes {
        t.row(vec![
            n.node.clone(),
            n.region.clone(),
            if n.eligible { "yes" } else { "no" }.to_string(),
            or_dash(n.reason.as_deref()),
        ]);
    }
    let mut text = format!("App {} (residency {})\n", p.app, p.residency);
    text.push_str(&t.render());
    if !p.would_place.is_empty() {
        text.push_str(&format!(
            "Would place now on: {}\n",
            p.would_place.join(", ")
        ));
    }
    for u in &p.unplaced {
        text.push_str(&format!(
            "Unplaced: {} instance(s) of release {}: {}\n",
            u.count, u.release, u.reason
        ));
    }
    text
}

/// `meridian apps releases APP`.
pub async fn releases(client: &Client, out: &Output, app: &str) -> anyhow::Result<()> {
    let list = client.releases(app).await?;
    out.show(&list, || render_releases(&list))
}

fn render_releases(list: &[ReleaseView]) -> String {
    let mut t = Table::new(&["RELEASE", "IMAGE", "STATUS", "CREATED", "REASON"]);
    for r in list {
        t.row(vec![
            r.number.to_string(),
            r.image.clone(),
            r.status.clone(),
            format_unix(r.created_at),
            or_dash(r.reason.as_deref()),
        ]);
    }
    t.render()
}
