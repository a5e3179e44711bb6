//! `meridian dev` as a user runs it: one process with a control plane and an agent on the real
//! Docker engine, an app served from it, a clean SIGTERM, and a restart that resumes.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `meridian` command with a clean environment and a credentials directory inside `home`.
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
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!stderr.contains("panicked"), "meridian panicked: {stderr}");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    (status.code().unwrap_or(-1), stdout, stderr)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the node's containers when the test ends, passed or not.
struct NodeContainers(String);

impl NodeContainers {
    fn running(&self) -> Vec<String> {
        let filter = format!("label=meridian.node={}", self.0);
        docker(&["ps", "-q", "--filter", &filter])
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

impl Drop for NodeContainers {
    fn drop(&mut self) {
        let filter = format!("label=meridian.node={}", self.0);
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A running `meridian dev`, killed if the test fails before stopping it.
struct Dev {
    child: Child,
    log: PathBuf,
}

impl Dev {
    fn start(home: &Path, data: &Path, port: u16, node: &str, run_no: u32) -> Dev {
        let log = home.join(format!("dev-{run_no}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = meridian(home)
            .env("RUST_LOG", "info")
            .arg("dev")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--node-name", node])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start meridian dev");
        Dev { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most 20 s) for a clean exit.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "meridian dev ignored SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "exit {status}:\n{}", self.log());
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `(id, address)` of the app's one instance once it is healthy and has an address.
fn wait_healthy(home: &Path, addr: &str, token: &str, dev: &Dev) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, stdout, stderr) = run(meridian(home)
            .args(["apps", "instances", "web", "--json"])
            .env("MERIDIAN_ADDR", addr)
            .env("MERIDIAN_TOKEN", token));
        if code == 0 {
            let list: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
            let healthy: Vec<_> = list
                .iter()
                .filter(|i| i["desired"] == "run" && i["state"] == "healthy")
                .filter_map(|i| Some((i["id"].as_str()?, i["address"].as_str()?)))
                .collect();
            if let [(id, address)] = healthy.as_slice() {
                return (id.to_string(), address.to_string());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no healthy instance: {stdout}{stderr}\n{}",
            dev.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn http_get(address: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the instance");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

/// Builds the `meridian-hello` images offline when missing.
fn hello_images() {
    let present = Command::new("docker")
        .args(["image", "inspect", "meridian-hello:latest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(root.join("deploy/images/hello-image.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("run deploy/images/hello-image.sh");
        assert!(
            status.success(),
            "building the meridian-hello images failed"
        );
    }
}

#[test]
fn dev_runs_an_app_stops_cleanly_and_resumes() {
    hello_images();
    let node = format!("dev-{}", std::process::id());
    let containers = NodeContainers(node.clone());
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let data = home.join("dev-data");
    let port = free_port();
    let addr = format!("http://127.0.0.1:{port}");

    let mut dev = Dev::start(home, &data, port, &node, 1);
    let token_file = data.join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        // The agent token is written after the admin token: once it is there, setup is done.
        match std::fs::read_to_string(&token_file) {
            Ok(t) if data.join("agent.token").exists() => break t.trim().to_string(),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no admin token:\n{}", dev.log());
        assert!(
            dev.child.try_wait().unwrap().is_none(),
            "meridian dev exited:\n{}",
            dev.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for file in ["admin.token", "agent.token", "cluster.secret"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    let (code, _, stderr) = run(meridian(home)
        .args(["apps", "create", "web", "--image", "meridian-hello:latest"])
        .args([
            "--port",
            "8080",
            "--replicas",
            "1",
            "--health-http",
            "/health",
        ])
        .args(["--health-interval", "500ms", "--health-timeout", "200ms"])
        .args(["--health-grace", "1s", "--memory-mb", "32"])
        .env("MERIDIAN_ADDR", &addr)
        .env("MERIDIAN_TOKEN", &token));
    assert_eq!(code, 0, "{stderr}\n{}", dev.log());
    let (id, address) = wait_healthy(home, &addr, &token, &dev);
    let body = http_get(&address);
    assert!(body.contains("hello from web"), "{body}");

    // The login was saved: plain commands work without address or token.
    let (code, stdout, stderr) = run(meridian(home).args(["apps", "list"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("web"), "{stdout}");
    assert!(dev.log().contains(&addr), "the banner names the URL");

    dev.terminate();
    assert_eq!(containers.running().len(), 1, "the container outlives dev");

    // Restart: no second bootstrap (same token), the same instance adopted, not duplicated.
    let dev = Dev::start(home, &data, port, &node, 2);
    let (id2, address2) = wait_healthy(home, &addr, &token, &dev);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    assert_eq!((id2, address2.as_str()), (id, address.as_str()));
    // Once the new agent has its assignments, give it time to show any duplicate it starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dev
        .log()
        .lines()
        .any(|l| l.contains("new assignments") && l.contains("instances=1"))
    {
        assert!(Instant::now() < deadline, "no assignments:\n{}", dev.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(containers.running().len(), 1, "{}", dev.log());
    assert!(!dev.log().contains("creating container"), "{}", dev.log());
    assert!(http_get(&address2).contains("hello from web"));
}
