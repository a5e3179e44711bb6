//! The `meridian` binary as a user runs it: exit codes, messages, settings layering, and one
//! smoke run against a real server on a free local port.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `meridian` command with a clean environment: no inherited MERIDIAN_* settings, and a
/// credentials directory inside `home`.
fn meridian(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.env_clear()
        .env("HOME", home)
        .env("MERIDIAN_CONFIG_DIR", home.join("cfg"))
        .env("RUST_LOG", "warn");
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run meridian");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!stderr.contains("panicked"), "meridian panicked: {stderr}");
    (status.code().unwrap_or(-1), stdout, stderr)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[test]
fn server_settings_stack_file_then_env_then_flags() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("server.toml");
    std::fs::write(
        &file,
        "node_id = 1\nlisten = \"127.0.0.1:9001\"\ndata_dir = \"/from-file\"\n\
         bootstrap = true\nregion = \"file-region\"\n[raft]\nheartbeat_ms = 150\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(meridian(home.path())
        .args(["server", "--print-config", "--config"])
        .arg(&file)
        .args(["--node-id", "3", "--cluster-secret-file", "/secret"])
        .arg("--insecure-plain-http")
        .env("MERIDIAN_NODE_ID", "2")
        .env("MERIDIAN_LISTEN", "127.0.0.1:9002")
        .env("MERIDIAN_REGION", "env-region"));
    assert_eq!(code, 0, "{stderr}");
    let config: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(config["node_id"].as_integer(), Some(3), "flag beats env");
    assert_eq!(
        config["listen"].as_str(),
        Some("127.0.0.1:9002"),
        "env beats file"
    );
    assert_eq!(
        config["region"].as_str(),
        Some("env-region"),
        "env beats file"
    );
    assert_eq!(config["data_dir"].as_str(), Some("/from-file"));
    assert_eq!(config["start"]["mode"].as_str(), Some("bootstrap"));
    assert_eq!(config["raft"]["heartbeat_ms"].as_integer(), Some(150));
    assert_eq!(config["raft"]["election_max_ms"].as_integer(), Some(600));
}

#[test]
fn server_names_every_missing_setting() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(meridian(home.path()).args(["server", "--listen", "127.0.0.1:1"]));
    assert_eq!(code, 1);
    for needle in ["--node-id", "MERIDIAN_NODE_ID", "`node_id`", "--data-dir"] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
}

/// Each part of a printed error chain (`error: a: b: c`) says something the others do not.
fn assert_no_part_repeats(stderr: &str) {
    let line = stderr.lines().next().unwrap_or_default();
    let chain = line.strip_prefix("error: ").expect("an error line");
    let parts: Vec<&str> = chain.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].iter().any(|later| later.contains(part)),
            "{part:?} is said twice in: {stderr}"
        );
    }
}

#[test]
fn unreachable_server_is_reported_plainly() {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");
    // What this system says about a connection to a closed port.
    let refused = TcpStream::connect(("127.0.0.1", port))
        .expect_err("nothing listens on a freed port")
        .to_string();
    assert!(refused.starts_with("Connection refused"), "{refused}");
    let (code, stdout, stderr) = run(meridian(home.path()).args(["--addr", &addr, "apps", "list"]));
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!("error: cannot reach {addr}/v1/apps: {refused}\n")
    );
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    assert_eq!(stderr.matches(&addr).count(), 1, "{stderr}");
    assert_no_part_repeats(&stderr);
}

#[test]
fn taken_port_is_reported_once() {
    let home = tempfile::tempdir().unwrap();
    let held = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = held.local_addr().unwrap();
    // What this system says about binding a port that is taken.
    let in_use = TcpListener::bind(addr)
        .expect_err("the port is held")
        .to_string();
    assert!(in_use.starts_with("Address already in use"), "{in_use}");
    let secret = home.path().join("secret");
    std::fs::write(&secret, "a-test-cluster-secret-of-enough-length\n").unwrap();
    let (code, stdout, stderr) = run(meridian(home.path())
        .args(["server", "--node-id", "1", "--bootstrap"])
        .args(tls_flags(home.path()))
        .args(["--listen", &addr.to_string()])
        .arg("--data-dir")
        .arg(home.path().join("data"))
        .arg("--cluster-secret-file")
        .arg(&secret));
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr,
        format!("error: cannot listen on {addr}: {in_use}\n")
    );
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert_no_part_repeats(&stderr);
    drop(held);
}

#[test]
fn malformed_env_flag_is_named() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(meridian(home.path()).args([
        "apps", "create", "web", "--image", "web:1", "--port", "80", "--env", "NOEQUALS",
    ]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--env") && stderr.contains("KEY=VALUE"),
        "{stderr}"
    );
}

#[test]
fn apps_create_usage_shows_its_two_forms() {
    let home = tempfile::tempdir().unwrap();
    let usage =
        "Usage: meridian apps create <NAME> --image <IMAGE> --port <PORT> [OPTIONS]\n       \
                 meridian apps create --file <FILE> [OPTIONS]\n";
    let (code, stdout, stderr) = run(meridian(home.path()).args(["apps", "create", "--help"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(usage), "{stdout}");
    // A missing flag names itself, and the usage still shows --file as the other way.
    let (code, _, stderr) = run(meridian(home.path()).args(["apps", "create", "web"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--image <IMAGE>"), "{stderr}");
    assert!(stderr.contains(usage), "{stderr}");
}

/// Kills the server if a test fails before stopping it.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A CA and a server certificate made with `meridian tls` under `home/pki`, as the flags of
/// `meridian server`.
fn tls_flags(home: &Path) -> Vec<String> {
    let pki = home.join("pki");
    let (code, _, stderr) = run(meridian(home)
        .args(["tls", "ca", "create", "--out"])
        .arg(&pki));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(meridian(home)
        .args([
            "tls", "cert", "create", "--role", "server", "--region", "local",
        ])
        .args(["--name", "s1", "--san", "127.0.0.1", "--ca"])
        .arg(pki.join("ca.pem"))
        .arg("--ca-key")
        .arg(pki.join("ca-key.pem"))
        .arg("--out")
        .arg(&pki));
    assert_eq!(code, 0, "{stderr}");
    let path = |name: &str| pki.join(name).display().to_string();
    vec![
        "--tls-cert".into(),
        path("server-local-s1.pem"),
        "--tls-key".into(),
        path("server-local-s1-key.pem"),
        "--tls-ca".into(),
        path("ca.pem"),
    ]
}

fn start_server(home: &Path, port: u16) -> ServerProcess {
    let secret = home.join("secret");
    std::fs::write(&secret, "a-test-cluster-secret-of-enough-length\n").unwrap();
    let child = meridian(home)
        .args(["server", "--node-id", "1", "--bootstrap"])
        .args(tls_flags(home))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(home.join("data"))
        .arg("--cluster-secret-file")
        .arg(&secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let server = ServerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn credentials_file(home: &Path) -> PathBuf {
    home.join("cfg").join("credentials.toml")
}

#[cfg(unix)]
#[test]
fn smoke_against_a_real_server() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let port = free_port();
    let addr = format!("https://127.0.0.1:{port}");
    let mut server = start_server(home, port);
    let ca = home.join("pki").join("ca.pem");

    // Without the cluster's CA the server's certificate is refused, and the error says so.
    let (code, _, stderr) = run(meridian(home).args(["cluster", "status", "--addr", &addr]));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca-file"),
        "{stderr}"
    );

    // Bootstrap may race the first leader election; retry briefly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let (code, stdout, stderr) = run(meridian(home)
            .args([
                "login",
                "--bootstrap",
                "--json",
                "--addr",
                &addr,
                "--ca-file",
            ])
            .arg(&ca));
        if code == 0 {
            let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            break answer["token"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "bootstrap failed: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(credentials_file(home)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // From here on address and token come from the saved credentials.
    let (code, stdout, stderr) = run(meridian(home).args(["cluster", "status"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("LEADER") && stdout.contains(&addr),
        "{stdout}"
    );

    let (code, _, stderr) = run(meridian(home).args([
        "regions",
        "create",
        "eu-fra",
        "--country",
        "DE",
        "--lat",
        "50.1",
        "--lon",
        "8.7",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(meridian(home).args([
        "apps",
        "create",
        "web",
        "--image",
        "web:1",
        "--port",
        "8080",
        "--residency",
        "EU",
        "--env",
        "A=1",
        "--health-tcp",
    ]));
    assert_eq!(code, 0, "{stderr}");

    let (code, stdout, _) = run(meridian(home).args(["apps", "list", "--json"]));
    assert_eq!(code, 0);
    let apps: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(apps[0]["name"], "web");
    assert_eq!(apps[0]["env"]["A"], "1");

    // An API error: its message, code and status, and exit code 1.
    let (code, _, stderr) = run(meridian(home).args(["apps", "show", "nope"]));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("error: ") && stderr.contains(", HTTP 404)"),
        "{stderr}"
    );

    // A flag token overrides the saved one; a bad one is refused with a 401.
    let (code, _, stderr) = run(meridian(home).args(["--token", "bogus", "apps", "list"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("HTTP 401"), "{stderr}");

    // login with an existing token checks it, then saves it.
    std::fs::remove_file(credentials_file(home)).unwrap();
    let token_file = home.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let (code, _, stderr) = run(meridian(home)
        .args(["login", "--addr", &addr, "--token-file"])
        .arg(&token_file)
        .arg("--ca-file")
        .arg(&ca));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = run(meridian(home).args(["tokens", "list"]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("ID ") && stdout.contains("admin"),
        "{stdout}"
    );

    // SIGTERM stops the server cleanly.
    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "server exited with {status}");
}

fn token_file(home: &Path, text: &str) -> PathBuf {
    let path = home.join("agent-token");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn agent_settings_stack_env_then_flags() {
    let home = tempfile::tempdir().unwrap();
    let token = token_file(home.path(), "secret\n");
    let (code, stdout, stderr) = run(meridian(home.path())
        .args([
            "agent",
            "--print-config",
            "--name",
            "w1",
            "--region",
            "eu-fra",
        ])
        .arg("--token-file")
        .arg(&token)
        .args(["--label", "disk=ssd", "--cpu-millis", "1500"])
        .env("MERIDIAN_AGENT_SERVER", "http://a:7001,http://b:7001")
        .env("MERIDIAN_AGENT_CPU_MILLIS", "900")
        .env("MERIDIAN_AGENT_HEARTBEAT_MS", "500")
        .env("MERIDIAN_AGENT_REGISTRY", "true"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("secret"), "the token is never printed");
    let config: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(config["name"].as_str(), Some("w1"));
    assert_eq!(
        config["cpu_millis"].as_integer(),
        Some(1500),
        "flag beats env"
    );
    assert_eq!(config["heartbeat_ms"].as_integer(), Some(500));
    assert_eq!(config["pull_images"].as_bool(), Some(true));
    assert_eq!(config["advertise_host"].as_str(), Some("127.0.0.1"));
    let servers: Vec<_> = config["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert_eq!(servers, ["http://a:7001", "http://b:7001"]);
    assert_eq!(config["labels"]["disk"].as_str(), Some("ssd"));
}

#[test]
fn agent_token_file_must_exist_and_hold_a_token() {
    let home = tempfile::tempdir().unwrap();
    let base = [
        "agent",
        "--name",
        "w1",
        "--region",
        "eu",
        "--server",
        "http://a:1",
    ];
    let missing = home.path().join("nope");
    let (code, _, stderr) = run(meridian(home.path())
        .args(base)
        .arg("--token-file")
        .arg(&missing));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot read the token file"), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    let empty = token_file(home.path(), "  \n");
    let (code, _, stderr) = run(meridian(home.path())
        .args(base)
        .arg("--token-file")
        .arg(&empty));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is empty"), "{stderr}");
}

#[test]
fn agent_bad_settings_are_named() {
    let home = tempfile::tempdir().unwrap();
    let token = token_file(home.path(), "t");
    let cases: [(&[&str], &str); 4] = [
        (&["--name", "W_1", "--server", "http://a:1"], "name"),
        (&["--name", "w1", "--server", "a:1"], "server"),
        (
            &[
                "--name",
                "w1",
                "--server",
                "http://a:1",
                "--heartbeat-ms",
                "5",
            ],
            "--heartbeat-ms",
        ),
        (
            &[
                "--name",
                "w1",
                "--server",
                "http://a:1",
                "--label",
                "novalue",
            ],
            "--label",
        ),
    ];
    for (args, named) in cases {
        let (code, _, stderr) = run(meridian(home.path())
            .args(["agent", "--region", "eu", "--token-file"])
            .arg(&token)
            .args(args));
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

/// The example configurations under deploy/examples are accepted as they are.
#[test]
fn example_configs_are_accepted() {
    let home = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
    let (code, stdout, stderr) = run(meridian(home.path())
        .args(["server", "--print-config", "--config"])
        .arg(examples.join("server.toml")));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("node_grace_ms = 10000"), "{stdout}");

    let token = token_file(home.path(), "a-token\n");
    let env = std::fs::read_to_string(examples.join("agent.env")).unwrap();
    let mut cmd = meridian(home.path());
    cmd.args(["agent", "--print-config"]);
    for line in env
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        cmd.env(k, v);
    }
    cmd.env("MERIDIAN_AGENT_TOKEN_FILE", &token);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("fra-1") && stdout.contains("rack"),
        "{stdout}"
    );
}
