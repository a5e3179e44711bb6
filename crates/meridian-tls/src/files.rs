//! Writing certificates and keys: keys readable by their owner only.

use std::io::Write;
use std::path::Path;

use crate::TlsError;

/// Writes `text` to a new file at `path`, mode 0600 for a key (`private`) and 0644 for a
/// certificate. Refuses to replace an existing file unless `overwrite`: a CA key written over
/// by mistake cannot be got back.
pub fn write_new(path: &Path, text: &str, private: bool, overwrite: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !overwrite && path.exists() {
        return Err(TlsError::Exists(path.to_path_buf()));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(io)?;
    // An existing file keeps its mode through `open`: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}
