//! What `meridian agent` and `meridian router` share in gathering settings: reading the
//! `--config` TOML file, and naming a missing setting with every way to give it.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// The `--config` file, or every setting unset when there is none.
pub fn read_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// The error for a required setting given no way: `who` is `agent` or `router`.
pub fn missing(who: &str, what: &str, flag: &str, env: &str, key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "missing {who} setting: {what} (flag {flag}, env {env}, or `{key}` in the --config file)"
    )
}

/// The control-plane URLs: the flag's (or its variable's) when given, else the file's; `env`
/// names the variable in the error when there are none.
pub fn servers(
    who: &str,
    env: &str,
    given: &[String],
    file: Option<Vec<String>>,
) -> anyhow::Result<Vec<String>> {
    let servers = if given.is_empty() {
        file.unwrap_or_default()
    } else {
        given.to_vec()
    };
    if servers.is_empty() {
        return Err(missing(who, "server URLs", "--server", env, "servers"));
    }
    Ok(servers)
}
