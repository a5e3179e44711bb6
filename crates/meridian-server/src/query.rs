//! Query strings: every handler that takes parameters, and the leader forwarding for `stale`,
//! parses them here, so a missing, malformed or out-of-range one gets the JSON 400
//! `invalid_query` naming it, instead of axum's plain-text rejection or a silent default.
//! Parameters no route declares are ignored.

use std::collections::HashMap;

use crate::error::ApiError;

/// Largest number the state stores (SQLite integers are signed 64-bit): sequence numbers and
/// generations never exceed it, and the document declares them int64.
pub const MAX_STORED: u64 = i64::MAX as u64;

/// A request's query parameters, keys and values percent-decoded. A key given twice keeps its
/// last value; a key without `=` has the empty value.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses `a=1&b=%2F`.
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.unwrap_or_default()
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .map(|(k, v)| (percent_decode(k), percent_decode(v)))
                .collect(),
        )
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of a required parameter.
    pub fn required(&self, key: &str, what: &str) -> Result<&str, ApiError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ApiError::invalid_query(
                key,
                format!("give {what}, as ?{key}=..."),
            )),
        }
    }

    /// A whole number in `0..=max`: digits only, no sign. `default` when absent.
    pub fn u64(&self, key: &str, default: u64, max: u64) -> Result<u64, ApiError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let n = v
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                ApiError::invalid_query(
                    key,
                    format!("query parameter {key}={v:?} must be a whole number"),
                )
            })?;
        if n > max {
            return Err(ApiError::invalid_query(
                key,
                format!("query parameter {key}={n} is above its maximum, {max}"),
            ));
        }
        Ok(n)
    }

    /// `true` or `false`, nothing else. `default` when absent.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(ApiError::invalid_query(
                key,
                format!("query parameter {key}={v:?} must be true or false"),
            )),
        }
    }
}

/// `%XX` escapes and `+` decoded; anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, Query};
    use meridian_api::ErrorCode;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("web%3A1.4"), "web:1.4");
        assert_eq!(
            percent_decode("reg.example%2Fteam%2Fweb%3A2"),
            "reg.example/team/web:2"
        );
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }

    #[test]
    fn parameters_are_split_and_decoded() {
        let q = Query::parse(Some("name=web%3A1&after=3&flag&&x="));
        assert_eq!(q.get("name"), Some("web:1"));
        assert_eq!(q.get("after"), Some("3"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn numbers_are_digits_within_range() {
        let q = Query::parse(Some(
            "a=12&b=-1&c=%2B5&d=&e=1e3&f=99999999999999999999&g=61",
        ));
        assert_eq!(q.u64("a", 0, 100), Ok(12));
        assert_eq!(q.u64("none", 7, 100), Ok(7));
        for key in ["b", "c", "d", "e", "f", "g"] {
            let e = q.u64(key, 0, 60).expect_err(key);
            assert_eq!(
                (e.status.as_u16(), e.code, e.field.as_deref()),
                (400, ErrorCode::InvalidQuery, Some(key))
            );
        }
    }

    #[test]
    fn booleans_are_true_or_false_only() {
        let q = Query::parse(Some("a=true&b=false&c=1&d=0&e=&f=TRUE&g"));
        assert_eq!(q.bool("a", false), Ok(true));
        assert_eq!(q.bool("b", true), Ok(false));
        assert_eq!(q.bool("none", true), Ok(true));
        for key in ["c", "d", "e", "f", "g"] {
            let e = q.bool(key, false).expect_err(key);
            assert_eq!(
                (e.code, e.field.as_deref()),
                (ErrorCode::InvalidQuery, Some(key))
            );
        }
    }

    #[test]
    fn required_parameters_must_be_given() {
        let q = Query::parse(Some("app=web&ip="));
        assert_eq!(q.required("app", "the app"), Ok("web"));
        for key in ["ip", "none"] {
            let e = q.required(key, "it").expect_err(key);
            assert_eq!(
                (e.code, e.field.as_deref()),
                (ErrorCode::InvalidQuery, Some(key))
            );
        }
    }
}
