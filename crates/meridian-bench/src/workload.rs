//! What one request of each benchmark is: a Meridian app create or an etcd put, both as
//! HTTP/JSON so the two systems are driven the same way.

use base64::Engine;
use serde_json::{json, Value};

/// One kind of write, sent in a closed loop by every worker.
#[derive(Debug, Clone)]
pub enum Workload {
    /// `POST /v1/apps` with a fresh name each time.
    Creates {
        /// Bearer token allowed to create apps.
        token: String,
        /// Makes names unique across runs against the same cluster.
        run: String,
    },
    /// `POST /v3/kv/put` on etcd's gRPC-JSON gateway with a fresh key each time.
    EtcdPut {
        /// Makes keys unique across runs against the same cluster.
        run: String,
    },
}

/// The minimal app body every create sends; only the name changes.
pub fn app_body(name: &str) -> Value {
    json!({"name": name, "image": "bench/app:1", "port": 8080})
}

/// A DNS-label name unique to (`run`, `worker`, `seq`): letters, digits and `-` only.
pub fn app_name(run: &str, worker: usize, seq: u64) -> String {
    format!("b{run}-{worker}-{seq}")
}

impl Workload {
    /// Builds request number `seq` of `worker` against the server at `base`.
    pub fn request(
        &self,
        http: &reqwest::Client,
        base: &str,
        worker: usize,
        seq: u64,
    ) -> reqwest::RequestBuilder {
        match self {
            Self::Creates { token, run } => http
                .post(format!("{base}/v1/apps"))
                .bearer_auth(token)
                .json(&app_body(&app_name(run, worker, seq))),
            Self::EtcdPut { run } => {
                // The value is the JSON a Meridian create sends, so both systems replicate a
                // payload of about the same size.
                let name = app_name(run, worker, seq);
                let value = app_body(&name).to_string();
                let b64 = base64::engine::general_purpose::STANDARD;
                http.post(format!("{base}/v3/kv/put")).json(&json!({
                    "key": b64.encode(format!("/bench/apps/{name}")),
                    "value": b64.encode(value),
                }))
            }
        }
    }

    /// Short name of the system under test, for reports.
    pub fn system(&self) -> &'static str {
        match self {
            Self::Creates { .. } => "meridian",
            Self::EtcdPut { .. } => "etcd",
        }
    }
}

/// A short run id from the clock, so names from an earlier run never collide (which would turn
/// creates into 409s).
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut n = (nanos / 1_000) % 36u128.pow(8);
    let mut s = Vec::with_capacity(8);
    for _ in 0..8 {
        let d = (n % 36) as u32;
        s.push(std::char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    s.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        let name = app_name(&run_id(), 255, 1_999_999);
        assert!(name.len() <= 63);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert!(!name.starts_with('-') && !name.ends_with('-'));
    }

    #[test]
    fn body_is_a_valid_app() {
        let body: meridian_api::apps::AppBody =
            serde_json::from_value(app_body(&app_name("abc", 1, 2))).expect("an AppBody");
        assert_eq!(body.image, "bench/app:1");
        assert!(body.into_spec().is_ok());
    }
}
