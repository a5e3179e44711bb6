//! A router serving a fixed route table: for load tests and experiments without a control
//! plane.
//!
//! ```text
//! cargo run --release -p meridian-router --example static_router -- \
//!     --region eu-fra --table table.json [--listen 127.0.0.1:8080] \
//!     [--trusted-proxies 10.0.0.0/8] [--threads N]
//! ```
//!
//! `table.json` is what `GET /v1/router/table` returns. Every client is placed in the router's
//! own region. `--threads 1` runs on tokio's current-thread runtime; the default is the
//! multi-thread runtime with one worker per core. On Ctrl-C the router drains, and its metrics
//! are printed to stderr.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use meridian_api::routing::RouteTable;
use meridian_core::route::{ClientPlace, LocatedBy};
use meridian_core::Name;
use meridian_geo::TrustedProxies;
use meridian_router::table::RoutingTable;
use meridian_router::{Router, RouterConfig};

const USAGE: &str = "usage: static_router --region NAME --table FILE.json \
                     [--listen ADDR] [--trusted-proxies LIST] [--threads N]";

struct Args {
    region: Name,
    table: String,
    listen: SocketAddr,
    trusted: TrustedProxies,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut region = None;
    let mut table = None;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut trusted = TrustedProxies::default();
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--region" => region = Some(Name::parse(&value()?).map_err(|e| e.to_string())?),
            "--table" => table = Some(value()?),
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--trusted-proxies" => {
                trusted = TrustedProxies::parse(&value()?).map_err(|e| e.to_string())?
            }
            "--threads" => {
                threads = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--threads needs a positive number")?
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        region: region.ok_or("--region is required")?,
        table: table.ok_or("--table is required")?,
        listen,
        trusted,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("static_router: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    }
    .enable_all()
    .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("static_router: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> ExitCode {
    let wire: RouteTable = match std::fs::read_to_string(&args.table)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("static_router: {}: {e}", args.table);
            return ExitCode::from(2);
        }
    };
    let table = RoutingTable::from_wire(&wire);
    let Some(home) = table.regions.get(&args.region).cloned() else {
        eprintln!("static_router: the table has no region {}", args.region);
        return ExitCode::from(2);
    };
    let place = ClientPlace {
        point: home.point,
        country: home.country,
        located_by: LocatedBy::RouterRegion,
    };
    let mut config = RouterConfig::default_for(args.region);
    config.trusted_proxies = args.trusted;
    let (_keep, rx) = tokio::sync::watch::channel(Arc::new(table));
    let router = Router::new(config, rx, Arc::new(move |_| place));
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("static_router: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    eprintln!("static_router: serving on {}", args.listen);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = router.clone().serve(listener, shutdown).await;
    eprint!("{}", router.metrics_text());
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("static_router: {e}");
            ExitCode::from(1)
        }
    }
}
