//! The lane's clocks: one timer per connection, moved cheaply, and the `Date` field.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Sleep;

/// A timer that is cheap to move later: a later deadline only takes effect once the armed
/// one passes, so per request it costs a clock read rather than a timer-wheel update.
pub(crate) struct Alarm {
    sleep: Pin<Box<Sleep>>,
    deadline: tokio::time::Instant,
}

impl Alarm {
    pub(crate) fn new() -> Self {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            deadline: far,
        }
    }

    pub(crate) fn set(&mut self, after: Duration) {
        self.deadline = tokio::time::Instant::now() + after;
        if self.deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(self.deadline);
        }
    }

    /// Resolves once the deadline last set has passed.
    pub(crate) async fn ring(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if tokio::time::Instant::now() >= self.deadline {
                return;
            }
            self.sleep.as_mut().reset(self.deadline);
        }
    }
}

/// The `Date` field's value, formatted once a second.
#[derive(Default)]
pub(crate) struct Date {
    second: u64,
    text: String,
}

impl Date {
    pub(crate) fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        self.text.as_bytes()
    }
}
