//! `hello`: the tiny app Meridian's agent tests run in containers. Standard library only, so a
//! static build fits alone in an image (see `deploy/images/hello-image.sh`).
//!
//! - `GET /` answers `hello from <app> release <release> instance <instance>[ version <v>]`.
//! - `GET /health` answers `ok`, or 500 when `HELLO_HEALTH=fail`.
//! - `GET /requests` answers how many requests it served, `/health` and itself left out, so a
//!   test can tell which instances a router sent traffic to.
//! - `GET /headers` answers the request's headers, one `name: value` per line.
//! - `HELLO_EXIT=<code>` makes it exit with that code at once (a crashing app).
//! - Listens on `0.0.0.0:$PORT` (default 8080), one thread per connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests served, `/health` and `/requests` left out.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Longest request head read; anything longer is answered 431.
const MAX_HEAD: usize = 8 * 1024;

fn main() {
    if let Ok(code) = std::env::var("HELLO_EXIT") {
        std::process::exit(code.trim().parse().unwrap_or(1));
    }
    exit_on_sigterm();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(8080);
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on port {port}: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("hello: listening on 0.0.0.0:{port}");
    let app = Reply::from_env();
    let app: &'static Reply = Box::leak(Box::new(app));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                std::thread::spawn(move || {
                    // A client that goes away mid-request is not worth a log line.
                    let _ = serve(stream, app);
                });
            }
            Err(e) => eprintln!("hello: accept failed: {e}"),
        }
    }
}

/// What the app answers, fixed at start from the environment.
struct Reply {
    greeting: String,
    healthy: bool,
}

impl Reply {
    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "?".to_string());
        let mut greeting = format!(
            "hello from {} release {} instance {}",
            var("MERIDIAN_APP"),
            var("MERIDIAN_RELEASE"),
            var("MERIDIAN_INSTANCE")
        );
        if let Ok(v) = std::env::var("HELLO_VERSION") {
            greeting.push_str(&format!(" version {v}"));
        }
        greeting.push('\n');
        let healthy = std::env::var("HELLO_HEALTH").map_or(true, |v| v != "fail");
        Self { greeting, healthy }
    }
}

fn serve(stream: TcpStream, reply: &Reply) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the headers, up to the blank line.
    let mut head = request_line.len();
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        head += n;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if head > MAX_HEAD {
            return respond(stream, 431, "request head too large\n");
        }
        headers.push_str(line.trim_end());
        headers.push('\n');
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if !matches!(path, "/health" | "/requests") {
        SERVED.fetch_add(1, Ordering::Relaxed);
    }
    match (method, path) {
        ("GET", "/") => respond(stream, 200, &reply.greeting),
        ("GET", "/requests") => {
            let n = SERVED.load(Ordering::Relaxed);
            respond(stream, 200, &format!("{n}\n"))
        }
        ("GET", "/headers") => respond(stream, 200, &headers),
        ("GET", "/health") if reply.healthy => respond(stream, 200, "ok\n"),
        ("GET", "/health") => respond(stream, 500, "failing on purpose (HELLO_HEALTH=fail)\n"),
        ("GET", _) => respond(stream, 404, "not found\n"),
        _ => respond(stream, 405, "only GET\n"),
    }
}

fn respond(mut stream: TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// In a container this process is PID 1, and the kernel drops signals to PID 1 that have no
/// handler: without one, `docker stop` would wait out its whole timeout and then SIGKILL. The
/// standard library has no signal API, but it links the C library anyway, so `signal(2)` is
/// declared here directly rather than pulling in the `libc` crate.
#[cfg(target_os = "linux")]
fn exit_on_sigterm() {
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }
    extern "C" fn on_signal(_: i32) {
        // Only async-signal-safe calls are allowed here; `_exit` is one.
        // SAFETY: `_exit` ends the process without running anything else.
        unsafe { _exit(0) }
    }
    // SAFETY: `signal` only records the handler; `on_signal` calls nothing but `_exit`.
    unsafe {
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
    }
}

#[cfg(not(target_os = "linux"))]
fn exit_on_sigterm() {}
