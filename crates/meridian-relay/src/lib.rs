//! `meridian-relay`: a TCP relay that adds one-way latency between the test cluster's fake
//! regions (the test kernel has no netem qdisc).
//!
//! Every chunk read from one side is written to the other side `delay` after it was read. Each
//! direction is a queue of timestamped chunks, so the delay adds latency without throttling
//! throughput; order is kept, and EOF (half-close) is forwarded after the delayed data. An error
//! on either side resets both.

pub mod config;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

pub use config::{Config, ConfigError};

/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;
/// Bytes in flight per direction (read but not yet written): past this the relay stops reading,
/// which is TCP backpressure, like a real link's window. 16 MiB over 50 ms is ~320 MiB/s.
const IN_FLIGHT: usize = 16 * 1024 * 1024;
/// How long to wait for the target to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One route as served: accept on `listen`, forward to `to` (resolved per connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub listen: SocketAddr,
    pub to: String,
    /// Delay of bytes going client → target.
    pub forward: Duration,
    /// Delay of bytes going target → client.
    pub backward: Duration,
}

/// Accepts connections on `listener` forever, relaying each to `route.to`.
pub async fn serve(listener: TcpListener, route: Route) {
    let route = Arc::new(route);
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let route = Arc::clone(&route);
                tokio::spawn(async move {
                    match relay(client, &route).await {
                        Ok((up, down)) => {
                            tracing::debug!(%peer, to = %route.to, up, down, "connection closed")
                        }
                        Err(e) => tracing::warn!(%peer, to = %route.to, "connection reset: {e}"),
                    }
                });
            }
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin or exit.
                tracing::warn!(listen = %route.listen, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Relays one accepted connection until both directions have closed; returns the bytes
/// forwarded each way. On error both sockets are reset.
pub async fn relay(mut client: TcpStream, route: &Route) -> io::Result<(u64, u64)> {
    client.set_nodelay(true)?;
    // `connect` with a host name resolves it now, so a restarted target's new IP is picked up.
    let target = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(route.to.as_str()))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", route.to)));
    let mut target = match target {
        Ok(t) => t,
        Err(e) => {
            let _ = client.set_zero_linger();
            return Err(e);
        }
    };
    target.set_nodelay(true)?;
    let result = {
        let (client_r, client_w) = client.split();
        let (target_r, target_w) = target.split();
        tokio::try_join!(
            pipe(client_r, target_w, route.forward),
            pipe(target_r, client_w, route.backward),
        )
    };
    if result.is_err() {
        // Closing with zero linger sends RST, so neither peer mistakes the failure for EOF.
        let _ = client.set_zero_linger();
        let _ = target.set_zero_linger();
    }
    result
}

/// One chunk (or EOF, `data: None`) waiting to be written at `at`.
struct Queued {
    at: Instant,
    data: Option<Vec<u8>>,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Copies `r` to `w`, writing each chunk `delay` after it was read, then forwards EOF as a
/// write shutdown `delay` after it was seen. Returns the bytes copied.
async fn pipe<R, W>(mut r: R, mut w: W, delay: Duration) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    let budget = Arc::new(Semaphore::new(IN_FLIGHT));
    let reader = async move {
        let mut buf = vec![0; CHUNK];
        loop {
            let n = r.read(&mut buf).await?;
            let at = Instant::now() + delay;
            if n == 0 {
                let _ = tx.send(Queued {
                    at,
                    data: None,
                    _budget: None,
                });
                return Ok::<_, io::Error>(());
            }
            let permit = Arc::clone(&budget)
                .acquire_many_owned(n as u32)
                .await
                .expect("semaphore is never closed");
            let queued = Queued {
                at,
                data: Some(buf[..n].to_vec()),
                _budget: Some(permit),
            };
            if tx.send(queued).is_err() {
                return Ok(()); // the writer failed; `try_join!` reports its error
            }
        }
    };
    let writer = async move {
        let mut copied = 0u64;
        while let Some(q) = rx.recv().await {
            tokio::time::sleep_until(q.at).await;
            match q.data {
                Some(data) => {
                    w.write_all(&data).await?;
                    copied += data.len() as u64;
                }
                None => {
                    w.shutdown().await?;
                    break;
                }
            }
        }
        Ok(copied)
    };
    let ((), copied) = tokio::try_join!(reader, writer)?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks read at t arrive at t + delay, each on its own schedule (no serialising sleep),
    /// and EOF arrives delay after it was sent. Virtual time makes the timings exact.
    #[tokio::test(start_paused = true)]
    async fn chunks_keep_their_own_deadlines() {
        let delay = Duration::from_millis(50);
        let (mut src, relay_in) = tokio::io::duplex(1024);
        let (relay_out, mut dst) = tokio::io::duplex(1024);
        let task = tokio::spawn(pipe(relay_in, relay_out, delay));
        let start = Instant::now();
        let ms = |t: Instant| (t - start).as_millis();

        src.write_all(b"a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        src.write_all(b"b").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        src.shutdown().await.unwrap();

        let mut byte = [0; 1];
        dst.read_exact(&mut byte).await.unwrap();
        assert_eq!((&byte, ms(Instant::now())), (b"a", 50));
        dst.read_exact(&mut byte).await.unwrap();
        assert_eq!((&byte, ms(Instant::now())), (b"b", 60));
        assert_eq!(dst.read(&mut byte).await.unwrap(), 0);
        assert_eq!(ms(Instant::now()), 70);
        assert_eq!(task.await.unwrap().unwrap(), 2);
    }
}
