//! Failed authentication, limited per client address and per token presented. Each key has a
//! bucket of `burst` failures (`--failed-auth-burst`, [`BURST`] by default) that refills at one
//! per [`REFILL`]; while a key's bucket is
//! empty, every request that authenticates with it (right or wrong) is answered 429 with
//! `Retry-After`, before anything is checked, so guessing tokens or the cluster secret is slow
//! and a refused guess says nothing about whether it was right. Kept per server, in memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use meridian_api::ErrorCode;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::ApiError;

/// Failures a key may have in a row, by default.
pub const BURST: u32 = 10;
/// One more failure allowed this long after the last.
pub const REFILL: Duration = Duration::from_secs(6);
/// Most keys remembered; past that, those whose buckets are full again are let go, and if
/// that is not enough, all of them (refusing honest clients would be worse).
const MAX_KEYS: usize = 10_000;

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The client's address.
    Addr(IpAddr),
    /// A token (or secret) as presented: the first half of its SHA-256.
    Credential([u8; 16]),
}

impl Key {
    /// The key of a presented credential.
    pub fn credential(text: &str) -> Self {
        let digest = Sha256::digest(text.as_bytes());
        let mut k = [0u8; 16];
        k.copy_from_slice(&digest[..16]);
        Key::Credential(k)
    }
}

/// A bucket: failures still allowed, as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    left: f64,
    at: Instant,
}

impl Bucket {
    fn now(self, now: Instant, burst: u32) -> f64 {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() / REFILL.as_secs_f64();
        (self.left + refilled).min(f64::from(burst))
    }
}

/// The buckets of one server.
#[derive(Debug)]
pub struct FailedAuth {
    burst: u32,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl Default for FailedAuth {
    fn default() -> Self {
        Self::new(BURST)
    }
}

impl FailedAuth {
    /// Buckets of `burst` failures; 0 turns the limit off.
    pub fn new(burst: u32) -> Self {
        Self {
            burst,
            buckets: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses with 429 when any of `keys` has no failure left.
    pub fn check(&self, keys: &[Key], now: Instant) -> Result<(), ApiError> {
        if self.burst == 0 {
            return Ok(());
        }
        let buckets = self.lock();
        let wait = keys
            .iter()
            .filter_map(|k| buckets.get(k))
            .map(|b| b.now(now, self.burst))
            .filter(|left| *left < 1.0)
            .map(|left| ((1.0 - left) * REFILL.as_secs_f64()).ceil() as u64)
            .max();
        match wait {
            None => Ok(()),
            Some(secs) => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::RateLimited,
                    format!(
                        "too many failed authentications from this address or with this \
                         credential; try again in {secs} s"
                    ),
                );
                e.retry_after = Some(secs.max(1));
                Err(e)
            }
        }
    }

    /// Counts one failure against each of `keys`.
    pub fn failed(&self, keys: &[Key], now: Instant) {
        if self.burst == 0 {
            return;
        }
        let burst = self.burst;
        let mut buckets = self.lock();
        if buckets.len() + keys.len() > MAX_KEYS {
            buckets.retain(|_, b| b.now(now, burst) < f64::from(burst));
            if buckets.len() + keys.len() > MAX_KEYS {
                buckets.clear();
            }
        }
        for k in keys {
            let b = buckets.entry(k.clone()).or_insert(Bucket {
                left: f64::from(burst),
                at: now,
            });
            *b = Bucket {
                left: (b.now(now, burst) - 1.0).max(0.0),
                at: now,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Key {
        Key::Addr("192.0.2.7".parse().unwrap())
    }

    #[test]
    fn a_key_is_refused_after_its_burst_and_let_in_again_as_it_refills() {
        let limit = FailedAuth::default();
        let t0 = Instant::now();
        for _ in 0..BURST {
            limit.check(&[addr()], t0).expect("within the burst");
            limit.failed(&[addr()], t0);
        }
        let e = limit.check(&[addr()], t0).expect_err("burst spent");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(REFILL.as_secs()));
        // Another address, or the same one a refill later, is let in.
        let other = Key::Addr("192.0.2.8".parse().unwrap());
        limit.check(&[other], t0).expect("another address");
        limit.check(&[addr()], t0 + REFILL).expect("refilled");
    }

    #[test]
    fn the_strictest_key_decides() {
        let limit = FailedAuth::default();
        let t0 = Instant::now();
        let token = Key::credential("eyJ.stolen.token");
        for _ in 0..BURST {
            limit.failed(std::slice::from_ref(&token), t0);
        }
        // A fresh address with the worn-out token is refused.
        let e = limit
            .check(&[Key::Addr("198.51.100.1".parse().unwrap()), token], t0)
            .expect_err("the token is spent");
        assert_eq!(e.code, ErrorCode::RateLimited);
    }

    #[test]
    fn memory_stays_bounded() {
        let limit = FailedAuth::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 100) {
            limit.failed(&[Key::Addr(IpAddr::from(i.to_be_bytes()))], t0);
        }
        assert!(limit.lock().len() <= MAX_KEYS);
    }
}
