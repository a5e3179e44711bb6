//! `meridian router`: gathers the edge router's settings from a TOML file (`--config`), then
//! `MERIDIAN_ROUTER_*` variables, then flags (each layer over the one before), and runs it until
//! SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use meridian_core::Name;
use meridian_geo::TrustedProxies;
use meridian_router::RouterSettings;

use crate::output::write_stdout;
use crate::settings_file::{missing, read_toml, servers};

/// Settings for `meridian router`. Each flag can also come from its `MERIDIAN_ROUTER_*`
/// variable or, under both, from the `--config` file (same names in snake_case, `servers` a
/// list).
#[derive(Args)]
pub struct RouterArgs {
    /// TOML file with any of the settings below.
    #[arg(long, env = "MERIDIAN_ROUTER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Region this router serves from (it must exist on the control plane).
    #[arg(long, env = "MERIDIAN_ROUTER_REGION", value_name = "REGION")]
    region: Option<String>,

    /// Control-plane URLs (comma-separated or repeated); the next one is used when one fails.
    #[arg(
        long = "server",
        env = "MERIDIAN_ROUTER_SERVER",
        value_delimiter = ',',
        value_name = "URL"
    )]
    servers: Vec<String>,

    /// File holding a router-role token.
    #[arg(long, env = "MERIDIAN_ROUTER_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// The cluster's CA certificate (PEM): servers must present a certificate it issued
    /// [default: the system's trusted roots].
    #[arg(long, env = "MERIDIAN_ROUTER_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,

    /// This router's certificate (PEM), from `meridian tls cert create --role router`.
    #[arg(long, env = "MERIDIAN_ROUTER_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MERIDIAN_ROUTER_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Address to serve apps on, e.g. 0.0.0.0:8080.
    #[arg(long, env = "MERIDIAN_ROUTER_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Router name, unique in the cluster [default: router-<region>].
    #[arg(long, env = "MERIDIAN_ROUTER_NAME", value_name = "NAME")]
    name: Option<String>,

    /// URL other regions' routers forward to [default: http://<listen>].
    #[arg(long, env = "MERIDIAN_ROUTER_ADVERTISE_URL", value_name = "URL")]
    advertise_url: Option<String>,

    /// MaxMind-format GeoIP City database (.mmdb) to locate clients.
    #[arg(long, env = "MERIDIAN_ROUTER_GEOIP_DB", value_name = "FILE.mmdb")]
    geoip_db: Option<PathBuf>,

    /// CSV map `cidr,latitude,longitude,country` (with that header line) for addresses the
    /// GeoIP database does not know.
    #[arg(long, env = "MERIDIAN_ROUTER_GEO_MAP", value_name = "FILE.csv")]
    geo_map: Option<PathBuf>,

    /// Proxies whose X-Forwarded-For is believed (CIDR blocks, comma-separated).
    #[arg(long, env = "MERIDIAN_ROUTER_TRUSTED_PROXIES", value_name = "CIDR,...")]
    trusted_proxies: Option<String>,

    /// CSV `from,to,ms` of measured round trips between regions, overriding distance.
    #[arg(long, env = "MERIDIAN_ROUTER_RTT_TABLE", value_name = "FILE.csv")]
    rtt_table: Option<PathBuf>,

    /// Address for `/metrics` and `/health` (off when not given).
    #[arg(long, env = "MERIDIAN_ROUTER_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// File to save the newest route table to and to start from, so a router restarted
    /// while the control plane is unreachable keeps routing.
    #[arg(long, env = "MERIDIAN_ROUTER_TABLE_CACHE", value_name = "FILE")]
    table_cache: Option<PathBuf>,

    /// Threads serving requests [default: one per core]. 1 runs everything on one thread,
    /// which is fastest when the router shares a small machine with its apps.
    #[arg(long, env = "MERIDIAN_ROUTER_THREADS", value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,

    /// Print the resolved settings (without the token) and exit without starting.
    #[arg(long)]
    print_config: bool,
}

/// The `--config` file: any subset of the settings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouterFile {
    region: Option<String>,
    servers: Option<Vec<String>>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    listen: Option<SocketAddr>,
    name: Option<String>,
    advertise_url: Option<String>,
    geoip_db: Option<PathBuf>,
    geo_map: Option<PathBuf>,
    trusted_proxies: Option<String>,
    rtt_table: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    table_cache: Option<PathBuf>,
}

impl RouterArgs {
    /// The finished settings; reads the file and the token file.
    fn resolve(&self) -> anyhow::Result<RouterSettings> {
        let file: RouterFile = read_toml(self.config.as_deref())?;
        let missing =
            |what: &str, flag: &str, env: &str, key: &str| missing("router", what, flag, env, key);
        let region = self
            .region
            .clone()
            .or(file.region)
            .ok_or_else(|| missing("region", "--region", "MERIDIAN_ROUTER_REGION", "region"))?;
        let region = Name::parse(&region).map_err(|p| anyhow::anyhow!("--region: {p}"))?;
        let servers = servers(
            "router",
            "MERIDIAN_ROUTER_SERVER",
            &self.servers,
            file.servers,
        )?;
        for s in &servers {
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                anyhow::bail!("--server: {s:?} is not an http:// or https:// URL");
            }
        }
        let token_file = self.token_file.clone().or(file.token_file).ok_or_else(|| {
            missing(
                "token file",
                "--token-file",
                "MERIDIAN_ROUTER_TOKEN_FILE",
                "token_file",
            )
        })?;
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read token file {}", token_file.display()))?
            .trim()
            .to_string();
        if token.is_empty() {
            anyhow::bail!("token file {} is empty", token_file.display());
        }
        let listen = self.listen.or(file.listen).ok_or_else(|| {
            missing(
                "listen address",
                "--listen",
                "MERIDIAN_ROUTER_LISTEN",
                "listen",
            )
        })?;
        let name = match self.name.clone().or(file.name) {
            Some(n) => Name::parse(&n).map_err(|p| anyhow::anyhow!("--name: {p}"))?,
            None => Name::parse(&format!("router-{region}"))
                .map_err(|p| anyhow::anyhow!("default name from --region: {p}"))?,
        };
        let advertise_url = match self.advertise_url.clone().or(file.advertise_url) {
            Some(u) => u,
            None if listen.ip().is_unspecified() => anyhow::bail!(
                "--listen {listen} is a wildcard address: give --advertise-url \
                 (MERIDIAN_ROUTER_ADVERTISE_URL) so other regions' routers can reach this one"
            ),
            None => format!("http://{listen}"),
        };
        if !(advertise_url.starts_with("http://") || advertise_url.starts_with("https://")) {
            anyhow::bail!("--advertise-url: {advertise_url:?} is not an http:// or https:// URL");
        }
        let trusted = self
            .trusted_proxies
            .clone()
            .or(file.trusted_proxies)
            .unwrap_or_default();
        let trusted_proxies = TrustedProxies::parse(&trusted)
            .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
        Ok(RouterSettings {
            name,
            region,
            servers,
            control_tls: meridian_client::ClientTls {
                ca_file: self.ca_file.clone().or(file.ca_file),
                cert: self.tls_cert.clone().or(file.tls_cert),
                key: self.tls_key.clone().or(file.tls_key),
            },
            token,
            listen,
            advertise_url,
            geoip_db: self.geoip_db.clone().or(file.geoip_db),
            geo_map: self.geo_map.clone().or(file.geo_map),
            trusted_proxies,
            rtt_table: self.rtt_table.clone().or(file.rtt_table),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            table_cache: self.table_cache.clone().or(file.table_cache),
        })
    }
}

impl RouterArgs {
    /// The runtime the router runs on: `--threads` (from the flag or its variable; the config
    /// file is read later, so it cannot set this).
    pub fn runtime_builder(&self) -> tokio::runtime::Builder {
        match self.threads {
            Some(1) => tokio::runtime::Builder::new_current_thread(),
            Some(n) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(usize::from(n));
                b
            }
            None => tokio::runtime::Builder::new_multi_thread(),
        }
    }
}

/// Runs `meridian router`.
pub async fn run(args: RouterArgs) -> anyhow::Result<()> {
    let settings = args.resolve()?;
    if args.print_config {
        return write_stdout(&describe(&settings));
    }
    let shutdown = crate::server_cmd::shutdown_signal()?;
    meridian_router::run(settings, shutdown)
        .await
        .context("the router stopped")?;
    tracing::info!("router stopped");
    Ok(())
}

/// The settings as `key = value` lines (TOML), the token left out.
fn describe(s: &RouterSettings) -> String {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
    };
    format!(
        "name = {:?}\nregion = {:?}\nservers = {:?}\nlisten = \"{}\"\nadvertise_url = {:?}\n\
         geoip_db = {:?}\ngeo_map = {:?}\nrtt_table = {:?}\ntrusted_proxies = {:?}\n\
         metrics_listen = {:?}\ntable_cache = {:?}\n",
        s.name.as_str(),
        s.region.as_str(),
        s.servers,
        s.listen,
        s.advertise_url,
        path(&s.geoip_db),
        path(&s.geo_map),
        path(&s.rtt_table),
        s.trusted_proxies.to_text(),
        s.metrics_listen
            .map_or_else(|| "(none)".to_string(), |a| a.to_string()),
        path(&s.table_cache),
    )
}
