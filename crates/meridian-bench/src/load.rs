//! The closed loop: N workers, each sending its next request as soon as the last one answered,
//! until the deadline or the request budget runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::workload::Workload;

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Servers; worker `i` uses `urls[i % urls.len()]`.
    pub urls: Vec<String>,
    /// Concurrent workers (requests in flight).
    pub concurrency: usize,
    /// Time to run before measuring, to open connections and warm caches.
    pub warmup: Duration,
    /// Time measured after the warm-up.
    pub duration: Duration,
    /// Requests allowed in all, warm-up included; the run stops early when they are spent.
    pub max_requests: u64,
    /// How long one request may take before it counts as an error.
    pub request_timeout: Duration,
}

/// What the measured window saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency of each 2xx answer, microseconds.
    pub latencies_us: Vec<u64>,
    /// Non-2xx answers, transport failures and timeouts.
    pub errors: u64,
    /// A few error descriptions, to tell what went wrong.
    pub error_samples: Vec<String>,
    /// Length of the measured window actually used (shorter if the budget ran out).
    pub measured: Duration,
    /// Requests cut off in flight by the hard stop; neither successes nor errors.
    pub cut_off: u64,
}

const ERROR_SAMPLES: usize = 5;

#[derive(Debug, Default)]
struct WorkerTally {
    latencies_us: Vec<u64>,
    errors: u64,
    error_samples: Vec<String>,
    cut_off: u64,
    last_finish: Option<Instant>,
}

/// Runs `workload` according to `plan` and gathers what every worker measured.
pub async fn run(http: reqwest::Client, workload: Workload, plan: Plan) -> Outcome {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let stop_at = measure_from + plan.duration;
    let tickets = Arc::new(AtomicU64::new(0));
    let workload = Arc::new(workload);
    let plan = Arc::new(plan);

    let mut tasks = Vec::with_capacity(plan.concurrency);
    for worker in 0..plan.concurrency {
        let (http, workload, plan, tickets) = (
            http.clone(),
            workload.clone(),
            plan.clone(),
            tickets.clone(),
        );
        tasks.push(tokio::spawn(async move {
            worker_loop(
                &http,
                &workload,
                &plan,
                &tickets,
                worker,
                measure_from,
                stop_at,
            )
            .await
        }));
    }

    let mut out = Outcome::default();
    let mut last_finish = measure_from;
    for t in tasks {
        // A worker that panicked contributes nothing; the others still count.
        let Ok(tally) = t.await else { continue };
        out.latencies_us.extend(tally.latencies_us);
        out.errors += tally.errors;
        out.cut_off += tally.cut_off;
        for s in tally.error_samples {
            if out.error_samples.len() < ERROR_SAMPLES {
                out.error_samples.push(s);
            }
        }
        if let Some(f) = tally.last_finish {
            last_finish = last_finish.max(f);
        }
    }
    // Normally the full window; shorter when the request budget ended the run first.
    out.measured = last_finish
        .min(stop_at)
        .saturating_duration_since(measure_from);
    if out.measured.is_zero() {
        out.measured = plan.duration;
    }
    out.latencies_us.sort_unstable();
    out
}

async fn worker_loop(
    http: &reqwest::Client,
    workload: &Workload,
    plan: &Plan,
    tickets: &AtomicU64,
    worker: usize,
    measure_from: Instant,
    stop_at: Instant,
) -> WorkerTally {
    let mut tally = WorkerTally::default();
    let Some(base) = plan.urls.get(worker % plan.urls.len().max(1)) else {
        return tally;
    };
    let mut seq: u64 = 0;
    while Instant::now() < stop_at {
        if tickets.fetch_add(1, Ordering::Relaxed) >= plan.max_requests {
            break;
        }
        seq += 1;
        let sent = Instant::now();
        let limit = stop_at.min(sent + plan.request_timeout);
        let exchange = async {
            let resp = workload.request(http, base, worker, seq).send().await?;
            let status = resp.status();
            // Read the whole body: the exchange is not over (nor the connection reusable)
            // before that.
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let result = tokio::time::timeout_at(limit, exchange).await;
        let done = Instant::now();
        let answer = match result {
            Err(_) if done >= stop_at => {
                tally.cut_off += 1;
                break;
            }
            Err(_) => Err(format!("timed out after {:?}", done - sent)),
            Ok(Ok((status, _))) if status.is_success() => Ok(()),
            Ok(Ok((status, body))) => {
                let text = String::from_utf8_lossy(&body);
                Err(format!(
                    "{status}: {}",
                    text.chars().take(200).collect::<String>()
                ))
            }
            Ok(Err(e)) => {
                // A refused or broken connection fails at once; pause so a dead server is
                // not hammered in a tight loop.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(format!("transport: {e}"))
            }
        };
        // Only requests sent after the warm-up count.
        if sent >= measure_from {
            match answer {
                Ok(()) => {
                    let us = u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX);
                    tally.latencies_us.push(us);
                }
                Err(what) => tally.error(what),
            }
            tally.last_finish = Some(done);
        }
    }
    tally
}

impl WorkerTally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(what);
        }
    }
}
