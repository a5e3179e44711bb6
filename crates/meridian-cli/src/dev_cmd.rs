//! `meridian dev`: a one-server control plane and a local agent in one process, for trying
//! Meridian on one machine. It bootstraps auth once and keeps its secrets in the data directory,
//! so a restart resumes where it stopped (the agent adopts its running containers).

use std::future::Future;
use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use meridian_agent::config::DEFAULT_DOCKER_HOST;
use meridian_agent::{AgentConfig, AgentError};
use meridian_api::regions::RegionBody;
use meridian_api::tokens::CreateToken;
use meridian_api::ErrorCode;
use meridian_client::{Client, ClientError};
use meridian_core::CountryCode;
use meridian_server::{ServerConfig, ServerError, StartMode};
use tokio_util::sync::CancellationToken;

use crate::credentials::{self, write_private, Credentials};
use crate::error_report::Hint;
use crate::output::write_stdout;

/// Settings for `meridian dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Where the control plane's data, the cluster secret and the tokens are kept.
    #[arg(long, value_name = "DIR", default_value = ".meridian/dev")]
    data_dir: PathBuf,
    /// Address for the API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// Docker engine address (unix:///path, tcp://host:port).
    #[arg(long, value_name = "URL", default_value = DEFAULT_DOCKER_HOST)]
    docker: String,
    /// Region of the local node, created when missing.
    #[arg(long, value_name = "REGION", default_value = "local")]
    region: String,
    /// Country of that region when it is created [default: DE, inside EU and EEA, so apps
    /// with `--residency EU` fit].
    #[arg(long, value_name = "CODE")]
    country: Option<String>,
    /// Name of the local agent's node.
    #[arg(long, value_name = "NAME", default_value = "local-1")]
    node_name: String,
}

/// Country of a region created without `--country`: inside EU and EEA, so apps with
/// `--residency EU` or `EEA` (as in the README) fit on the local node.
const DEFAULT_COUNTRY: &str = "DE";

/// Lifetime of the agent token, as long as the bootstrap admin token's: a year.
const AGENT_TOKEN_TTL: u64 = 365 * 24 * 3600;

/// How long to wait for the control plane to elect itself and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `meridian dev` until SIGTERM or Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let country = match &args.country {
        Some(c) => Some(CountryCode::parse(c).map_err(|e| anyhow!("--country: {e}"))?),
        None => None,
    };
    // Clients and the agent call a listener on every interface through loopback.
    let mut reach = args.listen;
    if reach.ip().is_unspecified() {
        reach.set_ip(match reach {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{reach}");
    // Checked now with a stand-in token, so a bad node name fails before anything starts.
    let mut agent = AgentConfig::new(&args.node_name, &args.region, vec![url.clone()], "-");
    agent.docker_host = args.docker.clone();
    agent.validate().map_err(|e| match e {
        AgentError::Config {
            field: "name",
            problem,
        } => anyhow!("--node-name: {problem}"),
        other => anyhow!(other),
    })?;

    let dir = prepare_dir(&args.data_dir)?;
    let secret_file = dir.join("cluster.secret");
    if !secret_file.exists() {
        write_private(&secret_file, &random_hex(32)?)?;
    }
    let admin_file = dir.join("admin.token");
    let server_dir = dir.join("server");
    // Bootstrap is a no-op on a directory that already holds a cluster, so it is also used
    // when the token is missing: a first start that stopped half-way is finished, not stuck.
    let fresh = !server_dir.join("log.db").exists() || !admin_file.exists();
    let config = ServerConfig {
        node_id: 1,
        listen: args.listen,
        advertise_url: Some(url.clone()),
        data_dir: server_dir,
        cluster_secret_file: secret_file,
        region: Some(args.region.clone()),
        start: if fresh {
            StartMode::Bootstrap
        } else {
            StartMode::Resume
        },
        max_body_bytes: meridian_server::config::default_max_body(),
        raft: Default::default(),
        node_grace_ms: meridian_server::config::default_node_grace_ms(),
        geoip_db: None,
        geo_map: None,
        rtt_table: None,
        retention: Default::default(),
        // One machine, one process: the API is for this machine's own clients.
        tls: None,
        insecure_plain_http: true,
        failed_auth_burst: meridian_server::config::default_failed_auth_burst(),
    };
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "warning: --listen {} reaches beyond this machine, and `meridian dev` serves plain \
             HTTP: tokens cross the network in clear. Run a cluster with TLS \
             (`meridian tls ca create`) for anything but a try-out",
            args.listen
        );
    }
    if let Some(socket) = args.docker.strip_prefix("unix://") {
        if !Path::new(socket).exists() {
            eprintln!(
                "warning: no Docker engine at {socket}; the control plane starts anyway and the \
                 agent waits for Docker (start it, or pass --docker)"
            );
        }
    }

    // One stop signal for all three: Ctrl-C/SIGTERM, or any of them ending (the guards).
    let signal = crate::server_cmd::shutdown_signal()?;
    let stop = CancellationToken::new();
    let watcher = async {
        let _stop_all = stop.clone().drop_guard();
        tokio::select! {
            () = signal => {}
            () = stop.cancelled() => {}
        }
    };
    let server = async {
        let _stop_all = stop.clone().drop_guard();
        meridian_server::run(config, stop.clone().cancelled_owned()).await
    };
    let rest = async {
        let _stop_all = stop.clone().drop_guard();
        let (admin, token, country) = tokio::select! {
            r = prepare(&dir, &url, &args.region, country.as_ref().map(CountryCode::as_str)) => r?,
            () = stop.cancelled() => return Ok(()),
        };
        announce(&dir, &url, &admin, &args, &country)?;
        agent.token = token;
        meridian_agent::run(agent, stop.clone().cancelled_owned())
            .await
            .context("the local agent stopped")
    };
    let ((), served, rest) = tokio::join!(watcher, server, rest);
    served.map_err(|e| explain_server(e, args.listen))?;
    rest?;
    tracing::info!("meridian dev stopped");
    Ok(())
}

/// Auth, region and agent token: made on the first start, read back afterwards. Answers the
/// admin token, the agent token and the region's country.
async fn prepare(
    dir: &Path,
    url: &str,
    region: &str,
    country: Option<&str>,
) -> anyhow::Result<(String, String, String)> {
    let admin_file = dir.join("admin.token");
    let admin = match read_token(&admin_file)? {
        Some(token) => token,
        None => {
            let anonymous = Client::new(url, None)?;
            let answer = until_ready(|| anonymous.bootstrap()).await.map_err(|e| {
                let hint = (e.code() == Some(&ErrorCode::AlreadyBootstrapped))
                    .then_some("was bootstrapped before");
                start_over(anyhow!(e).context("bootstrapping auth"), dir, hint)
            })?;
            write_private(&admin_file, &format!("{}\n", answer.token))?;
            answer.token
        }
    };
    let client = Client::new(url, Some(admin.clone()))?;
    let regions = until_ready(|| client.regions()).await.map_err(|e| {
        let hint = (e.status() == Some(401)).then_some("refuses admin.token (expired or revoked?)");
        start_over(anyhow!(e).context("listing regions"), dir, hint)
    })?;
    let country = match regions.into_iter().find(|r| r.name == region) {
        None => {
            let body = RegionBody {
                name: region.to_string(),
                country: country.unwrap_or(DEFAULT_COUNTRY).to_string(),
                latitude: 0.0,
                longitude: 0.0,
            };
            let made = client.create_region(&body).await;
            made.with_context(|| format!("creating region {region}"))?
                .country
        }
        Some(r) => {
            if let Some(c) = country.filter(|c| !r.country.eq_ignore_ascii_case(c)) {
                eprintln!(
                    "warning: region {region} already lies in {}; --country {c} only applies when \
                     it is created",
                    r.country
                );
            }
            r.country
        }
    };
    let agent_file = dir.join("agent.token");
    let agent = match read_token(&agent_file)? {
        Some(token) => token,
        None => {
            let req = CreateToken {
                role: "agent".into(),
                ttl_seconds: Some(AGENT_TOKEN_TTL),
                apps: None,
            };
            let token = client
                .create_token(&req)
                .await
                .context("creating the agent token")?
                .token;
            write_private(&agent_file, &format!("{token}\n"))?;
            token
        }
    };
    Ok((admin, agent, country))
}

/// Saves the CLI login (unless one for another address is saved) and says what to do next.
fn announce(
    dir: &Path,
    url: &str,
    admin: &str,
    args: &DevArgs,
    country: &str,
) -> anyhow::Result<()> {
    let token_file = dir.join("admin.token");
    let mut text = format!(
        "\nMeridian dev is running at {url}: one control-plane server and agent {} in region \
         {} ({country}).\n  data:        {}\n  admin token: {}\n",
        args.node_name,
        args.region,
        dir.display(),
        token_file.display()
    );
    // Never clobber a login saved for another server (or a file that cannot be read).
    let path = credentials::default_path()
        .ok()
        .filter(|p| match credentials::load(p) {
            Ok(None) => true,
            Ok(Some(saved)) => saved.addr.trim_end_matches('/') == url,
            Err(_) => false,
        });
    match path {
        Some(path) => {
            let creds = Credentials {
                addr: url.to_string(),
                token: admin.to_string(),
                ca_file: None,
            };
            credentials::save(&path, &creds)?;
            text.push_str(&format!(
                "  login:       saved to {}; plain `meridian ...` commands use it\n",
                path.display()
            ));
        }
        None => text.push_str(&format!(
            "  login:       another login is saved, left alone; to use this server in a shell:\n\
             \n    export MERIDIAN_ADDR={url}\n    export MERIDIAN_TOKEN=$(cat {})\n",
            token_file.display()
        )),
    }
    text.push_str(
        "\nTry (images from deploy/images/hello-image.sh):\n\
         \x20 meridian apps create web --image meridian-hello:latest --port 8080 --replicas 2 \
         --health-http /health\n\
         \x20 meridian apps instances web\n\
         \x20 meridian deploy web --image meridian-hello:v2\n\
         \nCtrl-C stops both; containers keep running and are adopted on the next start.\n\n",
    );
    write_stdout(&text)
}

/// Adds "delete the data directory" advice to `err` when `problem` names one.
fn start_over(err: anyhow::Error, dir: &Path, problem: Option<&str>) -> anyhow::Error {
    match problem {
        Some(problem) => err.context(Hint(format!(
            "the cluster in {} {problem}; delete that directory to start over",
            dir.display()
        ))),
        None => err,
    }
}

/// Calls `f` until the server answers with something other than "not ready" (no connection
/// yet, or 503 while it elects itself), for at most [`READY_TIMEOUT`].
async fn until_ready<T, F, Fut>(mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        match f().await {
            Err(e)
                if matches!(e.status(), None | Some(503))
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// The server's failure as a CLI message, with a hint when the port is taken.
fn explain_server(e: ServerError, listen: SocketAddr) -> anyhow::Error {
    match e {
        ServerError::Bind { source, .. } if source.kind() == ErrorKind::AddrInUse => {
            anyhow!("cannot listen on {listen}: the address is in use").context(Hint(
                "something (another `meridian dev`?) already listens there; stop it or pass \
                 --listen 127.0.0.1:PORT"
                    .into(),
            ))
        }
        other => other.into(),
    }
}

/// Creates the data directory (0700) and checks it can be written; answers its absolute path.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    credentials::create_private_dir(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let dir = std::path::absolute(dir).context("cannot resolve the data directory")?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("the data directory {} is not writable", dir.display()))?;
    Ok(dir)
}

/// A token file's contents; `None` when it does not exist.
fn read_token(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => bail!("{} is empty; delete it to get a new token", path.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `bytes` random bytes from the system, hex-encoded, as a line.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom for the cluster secret")?;
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex + "\n")
}
