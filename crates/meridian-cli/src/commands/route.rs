//! `meridian route APP IP`: which region would serve a client, and why.

use clap::Args;
use meridian_api::routing::RouteExplanation;
use meridian_client::Client;

use crate::output::{or_dash, Output, Table};

/// `meridian route`.
#[derive(Args)]
pub struct RouteArgs {
    /// App name.
    app: String,
    /// The client's IP address.
    ip: String,
    /// Place a client no geo source on the server knows in this region [default: the
    /// server's region].
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

/// Runs `meridian route`.
pub async fn run(args: RouteArgs, client: &Client, out: &Output) -> anyhow::Result<()> {
    let e = client
        .explain_route(&args.app, &args.ip, args.region.as_deref())
        .await?;
    out.show(&e, || render(&e))
}

fn render(e: &RouteExplanation) -> String {
    let mut text = format!(
        "{} from {} (located by {} at {:.2}, {:.2}, {}): {}\n",
        e.app,
        e.ip,
        e.client.located_by,
        e.client.latitude,
        e.client.longitude,
        e.client.country,
        e.explanation
    );
    let mut t = Table::new(&["REGION", "COUNTRY", "KM", "HEALTHY", "EXCLUDED"]);
    for c in &e.candidates {
        let mark = if e.region.as_deref() == Some(c.region.as_str()) {
            format!("{} *", c.region)
        } else {
            c.region.clone()
        };
        t.row(vec![
            mark,
            c.country.clone(),
            format!("{:.0}", c.distance_km),
            c.healthy.to_string(),
            or_dash(c.excluded.as_deref()),
        ]);
    }
    text.push_str(&t.render());
    text
}
