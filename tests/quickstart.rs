//! The README's quickstart, run as written against a local cluster of its own: a second
//! cluster of this checkout (`MERIDIAN_LOCAL_CLUSTER_STATE`), beside any the user runs, and
//! removed afterwards.
//!
//! Every command of the block must succeed, except one followed by a `#   error: ...` line,
//! which must fail and print that text. Other `#   ` lines right after a command are output
//! it must print (up to a `...` or a run of spaces before a remark). Ports are this
//! cluster's, when other programs held the README's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use meridian_tests::compose::ClusterSettings;
use meridian_tests::workers::repo_root;

/// One command of the block and what it must do.
#[derive(Debug, PartialEq)]
struct Step {
    command: String,
    /// Text that must appear in its output.
    expect: Vec<String>,
    /// Whether it must fail.
    fails: bool,
}

/// The first `sh` block after the "Five-minute quickstart" heading.
fn quickstart_block(readme: &str) -> Vec<String> {
    let after = readme
        .split_once("## Five-minute quickstart")
        .expect("the README has a quickstart")
        .1;
    let body = after
        .split_once("```sh\n")
        .expect("a sh block")
        .1
        .split_once("\n```")
        .expect("the block ends")
        .0;
    body.lines().map(str::to_string).collect()
}

/// Commands (continuation lines joined) with the expectations written under them.
fn steps(lines: &[String]) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut pending = String::new();
    for line in lines {
        if let Some(note) = line.strip_prefix("#   ") {
            let step = steps.last_mut().expect("an expectation follows a command");
            let text = note.split(" ...").next().unwrap_or(note);
            let text = text.split("   ").next().unwrap_or(text).trim_end();
            if text.starts_with("error:") {
                step.fails = true;
            }
            step.expect.push(text.to_string());
            continue;
        }
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        steps.push(Step {
            command: std::mem::take(&mut pending),
            expect: Vec::new(),
            fails: false,
        });
    }
    steps
}

/// A bash script running `steps`, stopping at the first that does not do what it must.
fn script(steps: &[Step]) -> String {
    let mut out = String::from("set -uo pipefail\n");
    for (i, s) in steps.iter().enumerate() {
        let shown = s.command.replace('\'', "'\\''");
        out.push_str(&format!("echo '+ {shown}'\n"));
        if s.expect.is_empty() && !s.fails {
            // Run in this shell, so `eval` and `export` last.
            out.push_str(&format!(
                "if ! {{\n{}\n}}; then echo 'QUICKSTART step {i} failed'; exit 1; fi\n",
                s.command
            ));
            continue;
        }
        out.push_str(&format!(
            "out=$({{\n{}\n}} 2>&1); status=$?\nprintf '%s\\n' \"$out\"\n",
            s.command
        ));
        if s.fails {
            out.push_str(&format!(
                "if [ $status = 0 ]; then echo 'QUICKSTART step {i} should have failed'; exit 1; fi\n"
            ));
        } else {
            out.push_str(&format!(
                "if [ $status != 0 ]; then echo 'QUICKSTART step {i} failed'; exit 1; fi\n"
            ));
        }
        for e in &s.expect {
            let e = e.replace('\'', "'\\''");
            out.push_str(&format!(
                "if ! grep -qF -- '{e}' <<<\"$out\"; then echo 'QUICKSTART step {i} did not print: {e}'; exit 1; fi\n"
            ));
        }
    }
    out.push_str("echo QUICKSTART-DONE\n");
    out
}

/// The README's ports replaced by this cluster's.
fn with_ports(line: &str, s: &ClusterSettings) -> String {
    let mut line = line.to_string();
    for (i, port) in s.api_ports.iter().enumerate() {
        line = line.replace(&format!(":{}", 7001 + i), &format!(":{port}"));
    }
    for (i, port) in s.router_ports.iter().enumerate() {
        line = line.replace(&format!(":{}", 8081 + i), &format!(":{port}"));
    }
    line
}

fn local_cluster(state: &Path, verb: &str) -> bool {
    Command::new(repo_root().join("deploy/local-cluster"))
        .arg(verb)
        .env("MERIDIAN_LOCAL_CLUSTER_STATE", state)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the cluster when the test ends, passed or not.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        local_cluster(&self.0, "clean");
    }
}

#[test]
fn the_readme_quickstart_runs_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let lines = quickstart_block(&readme);
    let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart-cluster");
    // A cluster left by a run that was killed.
    local_cluster(&state, "clean");
    let _cleanup = Cleanup(state.clone());
    assert!(
        local_cluster(&state, "up"),
        "deploy/local-cluster up failed"
    );
    let settings = ClusterSettings::read_from(&state).expect("up wrote cluster.env");
    let lines: Vec<String> = lines.iter().map(|l| with_ports(l, &settings)).collect();
    let steps = steps(&lines);
    assert!(steps.len() > 20, "the block was not read whole: {steps:#?}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(script(&steps))
        .current_dir(repo_root())
        .env("MERIDIAN_LOCAL_CLUSTER_STATE", &state)
        .env_remove("MERIDIAN_ADDR")
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_CA_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    if !(out.status.success() && text.contains("QUICKSTART-DONE")) {
        // What the routers saw, before the cluster is removed: a step that routes depends on
        // their tables and on the regions they could reach.
        for router in ["router-eu-fra", "router-eu-ams", "router-us-iad"] {
            let logs = Command::new(repo_root().join("deploy/local-cluster"))
                .args(["logs", router])
                .env("MERIDIAN_LOCAL_CLUSTER_STATE", &state)
                .stdin(Stdio::null())
                .output();
            if let Ok(logs) = logs {
                let all = String::from_utf8_lossy(&logs.stdout);
                let lines: Vec<&str> = all.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                println!("--- {router} (last 40 lines)\n{tail}");
            }
        }
        panic!("the quickstart stopped:\n{text}");
    }
}

#[test]
fn expectations_are_read_from_the_lines_under_a_command() {
    let lines: Vec<String> = [
        "meridian apps create a \\",
        "    --port 1   # remark",
        "#   error: refused (invalid, HTTP 422)",
        "# a remark line",
        "curl -si x",
        "#   HTTP/1.1 200 OK",
        "#   meridian-region: eu-ams           the nearest region",
        "#   hello from hello release 1 instance ...",
        "meridian nodes list",
    ]
    .map(String::from)
    .to_vec();
    let steps = steps(&lines);
    assert_eq!(
        steps,
        [
            Step {
                command: "meridian apps create a     --port 1   # remark".into(),
                expect: vec!["error: refused (invalid, HTTP 422)".into()],
                fails: true,
            },
            Step {
                command: "curl -si x".into(),
                expect: vec![
                    "HTTP/1.1 200 OK".into(),
                    "meridian-region: eu-ams".into(),
                    "hello from hello release 1 instance".into()
                ],
                fails: false,
            },
            Step {
                command: "meridian nodes list".into(),
                expect: vec![],
                fails: false,
            },
        ]
    );
}
