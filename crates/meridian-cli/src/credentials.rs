//! The address and token `meridian login` saves for later client commands.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// File name inside the config directory.
const FILE_NAME: &str = "credentials.toml";

/// What `login` saved: a server address and the token that works there.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Server base URL, e.g. `http://127.0.0.1:7001`.
    pub addr: String,
    /// API token (a JWT).
    pub token: String,
    /// The cluster's CA certificate, to check the server's certificate against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

// By hand so a stray `{:?}` never puts the token in a log.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The credentials file for this user, from the process environment.
pub fn default_path() -> anyhow::Result<PathBuf> {
    path_from(|name| std::env::var_os(name))
}

/// The credentials file: `$MERIDIAN_CONFIG_DIR/credentials.toml`, else
/// `$XDG_CONFIG_HOME/meridian/credentials.toml`, else `~/.config/meridian/credentials.toml`.
/// Empty variables count as unset, as the XDG spec asks.
pub fn path_from(var: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("MERIDIAN_CONFIG_DIR") {
        return Ok(dir.join(FILE_NAME));
    }
    // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
    if let Some(dir) = set("XDG_CONFIG_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("meridian").join(FILE_NAME));
    }
    if let Some(home) = set("HOME") {
        return Ok(home.join(".config").join("meridian").join(FILE_NAME));
    }
    bail!("cannot tell where to keep credentials: set MERIDIAN_CONFIG_DIR or HOME")
}

/// Reads saved credentials; `None` when nothing was saved yet.
pub fn load(path: &Path) -> anyhow::Result<Option<Credentials>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    warn_if_readable_by_others(path);
    let creds = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid credentials file", path.display()))?;
    Ok(Some(creds))
}

/// Saves credentials readable by the owner only (mode 0600), with [`write_private`].
pub fn save(path: &Path, creds: &Credentials) -> anyhow::Result<()> {
    let text = toml::to_string(creds).context("cannot encode credentials")?;
    write_private(path, &text)
}

/// Writes `text` to `path` readable by the owner only (mode 0600), creating its directory
/// (0700). Written to a fresh file and renamed over the old one, so a crash never leaves half
/// a file and an old, looser mode never carries over.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = create_private_file(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Creates `dir` and any missing parents; new ones are readable by the owner only (0700).
#[cfg(unix)]
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `dir` and any missing parents.
#[cfg(not(unix))]
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: never follow a symlink someone planted at the temporary name.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "credentials file is readable by others; run chmod 600 on it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            addr: "http://10.0.0.1:7001".into(),
            token: "eyJ.secret.sig".into(),
            ca_file: Some("/etc/meridian/ca.pem".into()),
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/meridian/credentials.toml");
        save(&path, &creds()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(creds()));

        let newer = Credentials {
            token: "other".into(),
            ..creds()
        };
        save(&path, &newer).unwrap();
        assert_eq!(load(&path).unwrap(), Some(newer));
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_private_even_over_a_loose_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        fs::write(&path, "loose").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &creds()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_file_is_none_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        assert_eq!(load(&path).unwrap(), None);
        fs::write(&path, "addr = 3").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("credentials.toml"), "{err}");
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", creds()).contains("secret"));
    }

    #[test]
    fn path_prefers_meridian_dir_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = env(&[
            ("MERIDIAN_CONFIG_DIR", "/m"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            path_from(all).unwrap(),
            PathBuf::from("/m/credentials.toml")
        );
        let xdg = env(&[
            ("MERIDIAN_CONFIG_DIR", ""),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            path_from(xdg).unwrap(),
            PathBuf::from("/x/meridian/credentials.toml")
        );
        let home = env(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/h")]);
        assert_eq!(
            path_from(home).unwrap(),
            PathBuf::from("/h/.config/meridian/credentials.toml")
        );
        assert!(path_from(env(&[])).is_err());
    }
}
