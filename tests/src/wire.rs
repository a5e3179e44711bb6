//! What crosses the wire: packet captures with `tcpdump` (Debian's package; `.ci/run` installs
//! it) while a test does something, searched for bytes that must never appear in clear.

use std::process::{Command, Stdio};
use std::time::Duration;

/// Captures every TCP packet on every interface of this machine (loopback and Docker's
/// bridges included) while `work` runs, and answers the raw capture. Panics when tcpdump is
/// missing or may not capture (it needs root or CAP_NET_RAW): a capture that saw nothing
/// proves nothing.
pub async fn capture<F: std::future::Future<Output = ()>>(work: F) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("capture.pcap");
    let mut child = Command::new("tcpdump")
        .args(["-i", "any", "-U", "-s", "0", "-w"])
        .arg(&file)
        .arg("tcp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is missing: apt-get install tcpdump (.ci/run does)");
    // tcpdump says "listening on" once it captures.
    let stderr = child.stderr.take().expect("tcpdump's stderr");
    let listening = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("listening on"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(10), listening).await;
    assert!(
        matches!(ready, Ok(Ok(true))),
        "tcpdump could not capture (it needs root or CAP_NET_RAW)"
    );
    work.await;
    // Let the last packets reach the file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    if let Ok(keep) = std::env::var("MERIDIAN_KEEP_PCAP") {
        let _ = std::fs::copy(&file, keep);
    }
    std::fs::read(&file).expect("the capture")
}

/// How often `needle` occurs in `haystack`.
pub fn count(haystack: &[u8], needle: &str) -> usize {
    if needle.is_empty() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}
