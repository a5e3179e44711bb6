//! Query strings: the few handlers that take parameters parse them here, so malformed ones get
//! the JSON 400 instead of axum's plain-text rejection.

use std::collections::HashMap;

use crate::error::ApiError;

/// `a=1&b=%2F` into a map, keys and values percent-decoded.
pub fn query_params(raw: Option<String>) -> HashMap<String, String> {
    raw.unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// A non-negative integer query parameter, or a 400 naming it.
pub fn query_u64(
    params: &HashMap<String, String>,
    key: &str,
    default: u64,
) -> Result<u64, ApiError> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter {key}={v:?} must be a whole number"
            ))
        }),
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
    use super::{percent_decode, query_params};

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
        let p = query_params(Some("name=web%3A1&after=3&flag".into()));
        assert_eq!(p.get("name").map(String::as_str), Some("web:1"));
        assert_eq!(p.get("after").map(String::as_str), Some("3"));
        assert!(!p.contains_key("flag"));
    }
}
