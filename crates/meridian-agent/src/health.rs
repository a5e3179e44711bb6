//! Health checks: one probe ([`probe`]), the verdict they add up to ([`HealthVerdict`]), and a
//! task per running instance that keeps probing ([`Monitor`]).

use std::sync::Arc;
use std::time::Duration;

use meridian_core::app::Probe;
use meridian_core::HealthCheck;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Longest status line read from an HTTP probe.
const MAX_STATUS_LINE: usize = 1024;

/// What the probes of one instance add up to so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    /// No probe has passed yet, and none has failed after the grace period.
    Pending,
    /// The last probe that counted passed.
    Passing,
    /// The last probe that counted failed, for this reason.
    Failing(String),
}

impl HealthVerdict {
    /// The verdict after one more probe. A pass always counts; a failure counts only after the
    /// grace period, and then one is enough.
    pub fn after(&self, outcome: Result<(), String>, in_grace: bool) -> HealthVerdict {
        match outcome {
            Ok(()) => HealthVerdict::Passing,
            Err(_) if in_grace => self.clone(),
            Err(why) => HealthVerdict::Failing(why),
        }
    }
}

/// Where an instance can be probed, in order of preference: `(host, port)`.
pub type Targets = Vec<(String, u16)>;

/// Runs one probe against the first target that answers within `limit`; an error says why
/// the first target failed.
pub async fn probe(
    probe: &Probe,
    targets: &[(String, u16)],
    limit: Duration,
) -> Result<(), String> {
    let mut first_error = None;
    for (host, port) in targets {
        let attempt = timeout(limit, probe_one(probe, host, *port)).await;
        let error = match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "no answer from {host}:{port} within {} ms",
                limit.as_millis()
            ),
        };
        first_error.get_or_insert(error);
    }
    Err(first_error.unwrap_or_else(|| "nowhere to probe: no address yet".into()))
}

async fn probe_one(probe: &Probe, host: &str, port: u16) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let path = match probe {
        Probe::Tcp => return Ok(()),
        Probe::Http { path } => path,
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: meridian-agent\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send GET {path} to {host}:{port}: {e}"))?;
    // Only the status line matters.
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("GET {path} on {host}:{port} broke off: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match parse_status(&buf) {
        Some(status) if (200..400).contains(&status) => Ok(()),
        Some(status) => Err(format!("GET {path} answered {status}")),
        None => Err(format!("GET {path} on {host}:{port} gave no HTTP answer")),
    }
}

/// The status code of an HTTP/1.x status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A task probing one container until it is dropped.
#[derive(Debug)]
pub struct Monitor {
    container: String,
    verdict: watch::Receiver<HealthVerdict>,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Starts probing `targets` by `check`, at once and then every interval. Grace counts from
    /// now (the agent sees the container running) and lasts at least one interval; `wake` is
    /// notified whenever the verdict changes.
    pub fn spawn(container: &str, check: HealthCheck, targets: Targets, wake: Arc<Notify>) -> Self {
        let (tx, verdict) = watch::channel(HealthVerdict::Pending);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let interval = Duration::from_millis(check.interval_ms.max(10));
            // The first probe runs at once, usually before the app listens. Failing it would
            // get a sound instance replaced with `grace_ms = 0`, so grace lasts at least one
            // interval; a pass still counts at once.
            let grace = Duration::from_millis(check.grace_ms).max(interval);
            let limit = Duration::from_millis(check.timeout_ms.max(1));
            loop {
                let at = Instant::now();
                let outcome = probe(&check.probe, &targets, limit).await;
                let in_grace = at.duration_since(started) < grace;
                let changed = tx.send_if_modified(|v| {
                    let next = v.after(outcome, in_grace);
                    let changed = *v != next;
                    *v = next;
                    changed
                });
                if changed {
                    wake.notify_one();
                }
                tokio::time::sleep_until(at + interval).await;
            }
        });
        Self {
            container: container.to_string(),
            verdict,
            task,
        }
    }

    /// The container this monitor probes.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The verdict so far.
    pub fn verdict(&self) -> HealthVerdict {
        self.verdict.borrow().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn failures_in_grace_do_not_count() {
        let v = HealthVerdict::Pending;
        assert_eq!(v.after(Err("x".into()), true), HealthVerdict::Pending);
        assert_eq!(v.after(Ok(()), true), HealthVerdict::Passing);
        assert_eq!(
            v.after(Err("x".into()), false),
            HealthVerdict::Failing("x".into())
        );
        let passing = HealthVerdict::Passing;
        assert_eq!(passing.after(Err("x".into()), true), HealthVerdict::Passing);
        assert_eq!(
            passing.after(Err("x".into()), false),
            HealthVerdict::Failing("x".into())
        );
        // A later pass makes it healthy again.
        assert_eq!(
            HealthVerdict::Failing("x".into()).after(Ok(()), false),
            HealthVerdict::Passing
        );
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500 Oops\r\nX: y\r\n"), Some(500));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    async fn serve_once(status: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_probe_reads_the_status() {
        let ok = serve_once("200 OK").await;
        let redirect = serve_once("302 Found").await;
        let bad = serve_once("503 Unavailable").await;
        let http = Probe::Http { path: "/h".into() };
        let t = Duration::from_secs(2);
        let at = |p: u16| vec![("127.0.0.1".to_string(), p)];
        assert_eq!(probe(&http, &at(ok), t).await, Ok(()));
        assert_eq!(probe(&http, &at(redirect), t).await, Ok(()));
        let err = probe(&http, &at(bad), t).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
        assert_eq!(probe(&Probe::Tcp, &at(bad), t).await, Ok(()));
    }

    #[tokio::test]
    async fn falls_back_to_the_next_target() {
        let ok = serve_once("200 OK").await;
        // A port nothing listens on: bind, note, close.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let targets = vec![
            ("127.0.0.1".to_string(), closed),
            ("127.0.0.1".to_string(), ok),
        ];
        let http = Probe::Http { path: "/".into() };
        assert_eq!(probe(&http, &targets, Duration::from_secs(2)).await, Ok(()));
        let err = probe(&http, &targets[..1], Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}
