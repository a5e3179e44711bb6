//! `meridian apps ...`

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use meridian_api::apps::{AppBody, AppPatch, AppView, HealthBody};
use meridian_client::Client;
use meridian_core::app::parse_duration_ms;
use meridian_core::ResidencySource;

use crate::output::{or_dash, Output, Table};
use crate::timestamp::format_unix;

/// App subcommands.
#[derive(Subcommand)]
pub enum AppsCommand {
    /// Create an app from flags, or from an app JSON file with --file.
    #[command(
        override_usage = "meridian apps create <NAME> --image <IMAGE> --port <PORT> \
                                [OPTIONS]\n       meridian apps create --file <FILE> [OPTIONS]"
    )]
    Create(Box<CreateApp>),
    /// Change an app: only the settings given change (the image changes with `deploy`).
    Update(Box<UpdateApp>),
    /// List apps.
    List,
    /// Show one app in full.
    Show {
        /// App name.
        name: String,
    },
    /// Delete an app and stop its instances; on a terminal, asks first.
    Delete {
        /// App name.
        name: String,
        /// Delete without asking (needed when the input is not a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// An app's instances: node, region, release, state, address.
    Instances {
        /// App name.
        name: String,
        /// Include stopped instances.
        #[arg(long)]
        all: bool,
    },
    /// Dry run: for every node, whether it could take an instance, or why not.
    Plan {
        /// App name.
        name: String,
    },
    /// An app's releases, newest first.
    Releases {
        /// App name.
        name: String,
    },
}

/// `meridian apps create`.
#[derive(Args)]
pub struct CreateApp {
    /// App name, a DNS label such as `web`.
    #[arg(required_unless_present = "file")]
    name: Option<String>,

    /// Read the whole app from a JSON file (the POST /v1/apps body); `-` reads stdin.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "name", "image", "port", "replicas", "residency", "anywhere", "regions", "env",
            "health_http", "health_tcp", "health_interval", "health_timeout", "health_grace",
            "cpu_millis", "memory_mb", "origin_bound", "domains",
        ]
    )]
    file: Option<PathBuf>,

    /// Wait until every replica is up (healthy, when the app has a health check) and show
    /// them, or say why some cannot be placed; give up after DURATION [default: 2m].
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        default_missing_value = "2m",
        value_parser = duration
    )]
    wait: Option<String>,

    /// Container image, e.g. ghcr.io/acme/web:1.4.
    #[arg(long, value_name = "IMAGE", required_unless_present = "file")]
    image: Option<String>,

    /// Port the app listens on inside its container.
    #[arg(
        long,
        value_name = "PORT",
        required_unless_present = "file",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    port: Option<u16>,

    /// Instances to run [default: 1].
    #[arg(long, value_name = "N")]
    replicas: Option<u32>,

    /// Jurisdictions the app may run in, e.g. EU,DE (repeatable) [default: the cluster's
    /// default residency, else anywhere].
    #[arg(long, value_name = "JURISDICTION", value_delimiter = ',')]
    residency: Vec<String>,

    /// Let the app run anywhere, whatever the cluster's default residency.
    #[arg(long, conflicts_with = "residency")]
    anywhere: bool,

    /// Regions to pin the app to (repeatable, comma-separated).
    #[arg(long = "region", value_name = "REGION", value_delimiter = ',')]
    regions: Vec<String>,

    /// Jurisdictions whose clients must be served inside them, e.g. EU (repeatable).
    #[arg(long, value_name = "JURISDICTION", value_delimiter = ',')]
    origin_bound: Vec<String>,

    /// Custom domain the routers serve the app on, besides NAME.<apps domain> (repeatable).
    #[arg(long = "domain", value_name = "HOST", value_delimiter = ',')]
    domains: Vec<String>,

    /// Environment variable for every instance (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    env: Vec<(String, String)>,

    /// CPU per instance, in thousandths of a core [default: 100].
    #[arg(long, value_name = "MILLIS")]
    cpu_millis: Option<u32>,

    /// Memory per instance, in MiB [default: 128].
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<u32>,

    #[command(flatten)]
    health: HealthArgs,
}

/// `meridian apps update`.
#[derive(Args)]
pub struct UpdateApp {
    /// App name.
    name: String,

    /// Instances to run.
    #[arg(long, value_name = "N")]
    replicas: Option<u32>,

    /// Jurisdictions the app may run in (replaces the list; repeatable, comma-separated).
    #[arg(long, value_name = "JURISDICTION", value_delimiter = ',')]
    residency: Vec<String>,

    /// Let the app run anywhere (clears the residency).
    #[arg(long, conflicts_with = "residency")]
    anywhere: bool,

    /// Jurisdictions whose clients must be served inside them (replaces the list).
    #[arg(long, value_name = "JURISDICTION", value_delimiter = ',')]
    origin_bound: Vec<String>,

    /// Drop the origin-bound rule.
    #[arg(long, conflicts_with = "origin_bound")]
    no_origin_bound: bool,

    /// Custom domain (replaces the list; repeatable, comma-separated).
    #[arg(long = "domain", value_name = "HOST", value_delimiter = ',')]
    domains: Vec<String>,

    /// Detach every custom domain.
    #[arg(long, conflicts_with = "domains")]
    no_domains: bool,

    /// CPU per instance, in thousandths of a core.
    #[arg(long, value_name = "MILLIS")]
    cpu_millis: Option<u32>,

    /// Memory per instance, in MiB.
    #[arg(long, value_name = "MIB")]
    memory_mb: Option<u32>,
}

impl UpdateApp {
    /// The PATCH body: a list flag replaces the list, its `--no-...`/`--anywhere` clears it.
    fn into_patch(self) -> anyhow::Result<(String, AppPatch)> {
        let list = |given: Vec<String>, clear: bool| {
            let given = clean_list(given);
            if clear {
                Some(Vec::new())
            } else {
                (!given.is_empty()).then_some(given)
            }
        };
        let patch = AppPatch {
            replicas: self.replicas,
            residency: list(self.residency, self.anywhere),
            origin_bound: list(self.origin_bound, self.no_origin_bound),
            domains: list(self.domains, self.no_domains),
            cpu_millis: self.cpu_millis,
            memory_mb: self.memory_mb,
            ..AppPatch::default()
        };
        if patch == AppPatch::default() {
            bail!("nothing to change: give at least one setting (see --help)");
        }
        Ok((self.name, patch))
    }
}

/// The health-check flags: a probe, and optional timings that need one.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("probe").args(["health_http", "health_tcp"])))]
struct HealthArgs {
    /// Probe over HTTP at this path, e.g. /healthz.
    #[arg(long, value_name = "PATH")]
    health_http: Option<String>,

    /// Probe by opening a TCP connection to the port.
    #[arg(long)]
    health_tcp: bool,

    /// Time between probes, e.g. 10s [default: 10s].
    #[arg(long, value_name = "DURATION", requires = "probe", value_parser = duration)]
    health_interval: Option<String>,

    /// Time one probe may take, e.g. 2s [default: 2s].
    #[arg(long, value_name = "DURATION", requires = "probe", value_parser = duration)]
    health_timeout: Option<String>,

    /// Time after start before failed probes count, e.g. 5s [default: 5s].
    #[arg(long, value_name = "DURATION", requires = "probe", value_parser = duration)]
    health_grace: Option<String>,
}

/// Runs an app subcommand.
pub async fn run(command: AppsCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        AppsCommand::Create(args) => {
            let wait = args.wait.as_deref().and_then(parse_duration_ms);
            let body = args.into_body()?;
            let app = client.create_app(&body).await?;
            out.show(&app, || render_app(&app))?;
            note_residency(out, &app)?;
            match wait {
                Some(ms) => wait_until_up(client, out, &app, Duration::from_millis(ms)).await,
                None => Ok(()),
            }
        }
        AppsCommand::Update(args) => {
            let (name, patch) = args.into_patch()?;
            let app = client.patch_app(&name, &patch).await?;
            out.show(&app, || render_app(&app))
        }
        AppsCommand::List => {
            let apps = client.apps().await?;
            out.show(&apps, || render_list(&apps))
        }
        AppsCommand::Show { name } => {
            let app = client.app(&name).await?;
            out.show(&app, || render_app(&app))
        }
        AppsCommand::Instances { name, all } => {
            super::placement::instances(client, out, &name, all).await
        }
        AppsCommand::Plan { name } => super::placement::plan(client, out, &name).await,
        AppsCommand::Releases { name } => super::placement::releases(client, out, &name).await,
        AppsCommand::Delete { name, yes } => {
            if !yes {
                let action = format!("delete app {name}");
                crate::confirm::require_terminal(&action)?;
                let app = client.app(&name).await?;
                let warning = format!(
                    "Deleting app {name} stops its {} instance(s) of {}; this cannot be undone.",
                    app.replicas, app.image
                );
                crate::confirm::typed_back(&action, &warning, &name)?;
            }
            client.delete_app(&name).await?;
            // The API answers 204 with no body; give JSON readers something to parse.
            out.show(&serde_json::json!({ "deleted": name }), || {
                format!("Deleted app {name}\n")
            })
        }
    }
}

impl CreateApp {
    /// The request body, from the file or the flags.
    fn into_body(self) -> anyhow::Result<AppBody> {
        if let Some(path) = &self.file {
            return read_app_file(path);
        }
        let (Some(name), Some(image), Some(port)) = (self.name, self.image, self.port) else {
            bail!("give NAME, --image and --port, or --file");
        };
        let regions = clean_list(self.regions);
        Ok(AppBody {
            name,
            image,
            replicas: self.replicas.unwrap_or(1),
            port,
            residency: match clean_list(self.residency) {
                given if !given.is_empty() => Some(given),
                _ if self.anywhere => Some(Vec::new()),
                _ => None,
            },
            regions: (!regions.is_empty()).then_some(regions),
            env: env_map(self.env)?,
            health: self.health.into_body(),
            cpu_millis: self.cpu_millis,
            memory_mb: self.memory_mb,
            origin_bound: clean_list(self.origin_bound),
            domains: clean_list(self.domains),
        })
    }
}

impl HealthArgs {
    fn into_body(self) -> Option<HealthBody> {
        if self.health_http.is_none() && !self.health_tcp {
            return None;
        }
        Some(HealthBody {
            http: self.health_http,
            tcp: self.health_tcp.then_some(true),
            interval: self.health_interval,
            timeout: self.health_timeout,
            grace: self.health_grace,
        })
    }
}

/// Parses one `--env KEY=VALUE`. The value may be empty and may itself contain `=`.
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err("expected KEY=VALUE, but there is no `=`".to_string());
    };
    if key.is_empty() {
        return Err("expected KEY=VALUE, but the name before `=` is empty".to_string());
    }
    if let Some(bad) = key.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "the variable name `{}` contains {bad:?}",
            key.escape_default()
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Collects `--env` pairs; naming a variable twice is a mistake, not an override.
fn env_map(pairs: Vec<(String, String)>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for (key, value) in pairs {
        if env.contains_key(&key) {
            bail!("--env {key} is given more than once");
        }
        env.insert(key, value);
    }
    Ok(env)
}

/// Trims items of a comma-separated list and drops empty ones (`--residency "EU, DE,"`).
pub(crate) fn clean_list(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Polls until every replica of a new app is up, then shows them; fails when the scheduler
/// says some cannot be placed, or when `limit` passes.
async fn wait_until_up(
    client: &Client,
    out: &Output,
    app: &AppView,
    limit: Duration,
) -> anyhow::Result<()> {
    let name = &app.name;
    let start = Instant::now();
    loop {
        let instances = client.instances(name).await?;
        let up = instances
            .iter()
            .filter(|i| i.is_wanted() && i.is_up(app.health.is_some()))
            .count();
        if up >= app.replicas as usize {
            return super::placement::instances(client, out, name, false).await;
        }
        let now = client.app(name).await?;
        if let Some(u) = now.unplaced.first() {
            bail!(
                "{} of {} instances of {name} cannot be placed: {}",
                u.count,
                app.replicas,
                u.reason
            );
        }
        if start.elapsed() > limit {
            bail!(
                "after {}s, {up} of {} instances of {name} are up; follow them with \
                 `meridian apps instances {name}`",
                limit.as_secs(),
                app.replicas
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn duration(s: &str) -> Result<String, String> {
    match parse_duration_ms(s) {
        Some(_) => Ok(s.trim().to_string()),
        None => Err("expected a duration such as 500ms, 10s, 1m30s or 1h".to_string()),
    }
}

fn read_app_file(path: &Path) -> anyhow::Result<AppBody> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the app from stdin")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read app file {}", path.display()))?
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid app definition", path.display()))
}

fn render_list(apps: &[AppView]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "IMAGE",
        "REPLICAS",
        "PORT",
        "RESIDENCY",
        "REGIONS",
        "VERSION",
    ]);
    for app in apps {
        table.row(vec![
            app.name.clone(),
            app.image.clone(),
            app.replicas.to_string(),
            app.port.to_string(),
            or_dash(Some(&app.residency.join(","))),
            or_dash(app.regions.as_ref().map(|r| r.join(",")).as_deref()),
            app.version.to_string(),
        ]);
    }
    table.render()
}

fn render_app(app: &AppView) -> String {
    let mut table = Table::headless();
    let mut pair = |key: &str, value: String| table.row(vec![key.to_string(), value]);
    pair("name:", app.name.clone());
    pair("image:", app.image.clone());
    pair("replicas:", app.replicas.to_string());
    pair("port:", app.port.to_string());
    pair("residency:", residency_text(app));
    pair(
        "regions:",
        app.regions
            .as_ref()
            .filter(|r| !r.is_empty())
            .map_or_else(|| "not pinned".to_string(), |r| r.join(", ")),
    );
    if !app.origin_bound.is_empty() {
        pair("origin bound:", app.origin_bound.join(", "));
    }
    if !app.domains.is_empty() {
        pair("domains:", app.domains.join(", "));
    }
    pair("health:", describe_health(app.health.as_ref()));
    if app.env.is_empty() {
        pair("env:", "-".to_string());
    }
    for (i, (key, value)) in app.env.iter().enumerate() {
        pair(if i == 0 { "env:" } else { "" }, format!("{key}={value}"));
    }
    pair("version:", app.version.to_string());
    pair("created:", format_unix(app.created_at));
    pair("updated:", format_unix(app.updated_at));
    table.render()
}

/// The residency, and where it came from when the answer says.
fn residency_text(app: &AppView) -> String {
    let source = app
        .residency_source
        .as_deref()
        .and_then(ResidencySource::parse);
    match (app.residency.is_empty(), source) {
        (false, Some(ResidencySource::ClusterDefault)) => {
            format!("{} (the cluster's default)", app.residency.join(", "))
        }
        (false, _) => app.residency.join(", "),
        (true, Some(ResidencySource::None)) => "anywhere (none given, no cluster default)".into(),
        (true, _) => "anywhere".into(),
    }
}

/// After a create that got no residency from anywhere: says so, and how to restrict it.
fn note_residency(out: &Output, app: &AppView) -> anyhow::Result<()> {
    let source = app
        .residency_source
        .as_deref()
        .and_then(ResidencySource::parse);
    if source != Some(ResidencySource::None) {
        return Ok(());
    }
    let name = &app.name;
    out.note(&format!(
        "App {name} may run in any region: it has no residency, and the cluster has no default \
         residency. Restrict it with `meridian apps update {name} --residency EU` (or any \
         jurisdictions), or give new apps a default with \
         `meridian cluster settings --default-residency EU`."
    ))
}

fn describe_health(health: Option<&HealthBody>) -> String {
    let Some(h) = health else {
        return "none".to_string();
    };
    let probe = match (&h.http, h.tcp) {
        (Some(path), _) => format!("http {path}"),
        (None, Some(true)) => "tcp".to_string(),
        _ => "unknown probe".to_string(),
    };
    let mut text = probe;
    for (label, value) in [
        ("every", &h.interval),
        ("timeout", &h.timeout),
        ("grace", &h.grace),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(", {label} {v}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_parse() {
        assert_eq!(
            parse_env_pair("DATABASE_URL=postgres://u:p@h/db?a=b"),
            Ok(("DATABASE_URL".into(), "postgres://u:p@h/db?a=b".into()))
        );
        assert_eq!(parse_env_pair("EMPTY="), Ok(("EMPTY".into(), "".into())));
    }

    #[test]
    fn env_without_equals_names_the_problem() {
        let err = parse_env_pair("NOEQUALS").unwrap_err();
        assert!(err.contains("KEY=VALUE") && err.contains("no `=`"), "{err}");
    }

    #[test]
    fn env_with_empty_or_spaced_name_is_refused() {
        assert!(parse_env_pair("=value").unwrap_err().contains("empty"));
        assert!(parse_env_pair("MY VAR=1").unwrap_err().contains("MY VAR"));
    }

    #[test]
    fn env_named_twice_is_refused() {
        let err = env_map(vec![("A".into(), "1".into()), ("A".into(), "2".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--env A"), "{err}");
    }

    #[test]
    fn durations_are_checked_before_sending() {
        assert_eq!(duration("1m30s"), Ok("1m30s".into()));
        assert!(duration("soon").is_err());
    }

    #[test]
    fn lists_are_trimmed() {
        assert_eq!(
            clean_list(vec![" EU".into(), "".into(), "DE ".into()]),
            vec!["EU".to_string(), "DE".to_string()]
        );
    }

    #[test]
    fn app_file_must_be_an_app_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.json");
        std::fs::write(&path, r#"{"name":"web","image":"web:1","port":80}"#).unwrap();
        assert_eq!(read_app_file(&path).unwrap().replicas, 1);
        std::fs::write(
            &path,
            r#"{"name":"web","image":"web:1","port":80,"replica":2}"#,
        )
        .unwrap();
        let err = format!("{:#}", read_app_file(&path).unwrap_err());
        assert!(err.contains("app.json") && err.contains("replica"), "{err}");
    }

    fn eu_app() -> AppView {
        AppView {
            name: "web".into(),
            image: "web:1".into(),
            replicas: 2,
            port: 80,
            residency: vec!["EU".into()],
            regions: None,
            env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
            health: Some(HealthBody {
                http: Some("/h".into()),
                tcp: None,
                interval: Some("10000ms".into()),
                timeout: None,
                grace: None,
            }),
            cpu_millis: 100,
            memory_mb: 128,
            origin_bound: Vec::new(),
            domains: Vec::new(),
            unplaced: Vec::new(),
            residency_source: None,
            version: 3,
            created_at: 0,
            updated_at: 60,
        }
    }

    #[test]
    fn residency_says_where_it_came_from() {
        let app = |residency: &[&str], source: Option<ResidencySource>| AppView {
            residency: residency.iter().map(|j| j.to_string()).collect(),
            residency_source: source.map(|s| s.as_str().to_string()),
            ..eu_app()
        };
        let cases = [
            (app(&["EU"], None), "EU"),
            (app(&["EU"], Some(ResidencySource::App)), "EU"),
            (
                app(&["EU", "CH"], Some(ResidencySource::ClusterDefault)),
                "EU, CH (the cluster's default)",
            ),
            (app(&[], Some(ResidencySource::App)), "anywhere"),
            (
                app(&[], Some(ResidencySource::None)),
                "anywhere (none given, no cluster default)",
            ),
        ];
        for (app, text) in cases {
            assert_eq!(residency_text(&app), text);
        }
    }

    #[test]
    fn show_lists_env_one_per_line() {
        let app = eu_app();
        let text = render_app(&app);
        assert!(
            text.contains("env:        A=1\n            B=2\n"),
            "{text}"
        );
        assert!(
            text.contains("health:     http /h, every 10000ms\n"),
            "{text}"
        );
        assert!(text.contains("updated:    1970-01-01T00:01:00Z"), "{text}");
    }
}
