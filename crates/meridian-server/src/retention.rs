//! Retention: on a slow timer the leader picks what is old enough to let go — audit entries
//! past their age, releases beyond each app's newest N, nodes down and routers silent for
//! longer than the grace, tokens long expired or revoked — and commits one
//! `Command::Forget`, which every server applies alike. Audit entries are first written to
//! the leader's export directory as JSON lines (`audit-<first>-<last>.jsonl`, fsynced), so
//! what leaves the state is kept outside it.
//!
//! Each pass forgets a bounded amount (at most [`AUDIT_BATCH`] audit entries and
//! [`RELEASE_BATCH`] releases), so a backlog drains over several passes instead of in one huge
//! log entry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_core::Name;
use meridian_state::{audit, nodes, releases, routing, tokens};
use meridian_state::{Applied, AuditRecord, Command, Forget, Forgotten};

use crate::config::RetentionSettings;
use crate::ctx::{now, Ctx};
use crate::error::ApiError;

/// Most audit entries forgotten in one pass.
pub const AUDIT_BATCH: u32 = 10_000;
/// Most releases forgotten in one pass.
pub const RELEASE_BATCH: u32 = 1_000;

/// Runs until `stop` resolves.
pub async fn run(
    ctx: Ctx,
    settings: RetentionSettings,
    export_dir: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let every = Duration::from_millis(settings.every_ms.max(100));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        if !ctx.is_leader() {
            continue;
        }
        match pass(&ctx, &settings, &export_dir).await {
            Ok(Some(done)) => tracing::info!(
                audit = done.audit,
                releases = done.releases,
                nodes = done.nodes,
                routers = done.routers,
                tokens = done.tokens,
                "forgot what the retention settings let go"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e.message, "retention pass failed; trying again later")
            }
        }
    }
}

/// One pass: what to forget, the audit export, the command. `None` when nothing was due.
pub async fn pass(
    ctx: &Ctx,
    settings: &RetentionSettings,
    export_dir: &Path,
) -> Result<Option<Forgotten>, ApiError> {
    let st = ApiError::storage;
    let at = now();
    let mut f = Forget::default();
    let mut leaving = Vec::new();
    {
        let mut snap = ctx.reader().snapshot().await.map_err(st)?;
        if settings.audit_max_age_s > 0 {
            let before = at.saturating_sub(settings.audit_max_age_s);
            leaving = audit::older_than(snap.conn(), before, AUDIT_BATCH)
                .await
                .map_err(st)?;
            f.audit_through = leaving.last().map_or(0, |a| a.seq);
        }
        if settings.releases_per_app > 0 {
            f.releases =
                releases::beyond_newest(snap.conn(), settings.releases_per_app, RELEASE_BATCH)
                    .await
                    .map_err(st)?
                    .into_iter()
                    .filter_map(|(app, n)| Name::parse(&app).ok().map(|a| (a, n)))
                    .collect();
        }
        if settings.forget_gone_after_s > 0 {
            f.gone_before = at.saturating_sub(settings.forget_gone_after_s);
            f.nodes = names(
                nodes::gone_since(snap.conn(), f.gone_before)
                    .await
                    .map_err(st)?,
            );
            f.routers = names(
                routing::routers_silent_since(snap.conn(), f.gone_before)
                    .await
                    .map_err(st)?,
            );
        }
        if settings.forget_tokens_after_s > 0 {
            f.tokens_before = at.saturating_sub(settings.forget_tokens_after_s);
            f.tokens = tokens::done_since(snap.conn(), f.tokens_before)
                .await
                .map_err(st)?;
        }
    }
    if f.is_empty() {
        return Ok(None);
    }
    if !leaving.is_empty() {
        let dir = export_dir.to_path_buf();
        let written = tokio::task::spawn_blocking(move || export(&dir, &leaving))
            .await
            .map_err(ApiError::storage)?;
        if let Err(e) = written {
            tracing::error!(error = %e, dir = %export_dir.display(), "cannot export audit entries; keeping them");
            return Err(ApiError::storage(e));
        }
    }
    match ctx.propose(Command::Forget(f)).await? {
        Applied::Forgotten(done) => Ok(Some(done)),
        _ => Ok(None),
    }
}

fn names(list: Vec<String>) -> Vec<Name> {
    list.into_iter()
        .filter_map(|n| Name::parse(&n).ok())
        .collect()
}

/// Writes `entries` (oldest first, not empty) to `dir/audit-<first>-<last>.jsonl`, durably:
/// written beside it, fsynced, renamed into place, the directory fsynced. An export of the
/// same range again (a new leader repeating the pass) replaces the file with the same lines.
pub fn export(dir: &Path, entries: &[AuditRecord]) -> std::io::Result<PathBuf> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(std::io::Error::other("nothing to export"));
    };
    std::fs::create_dir_all(dir)?;
    let name = format!("audit-{:012}-{:012}.jsonl", first.seq, last.seq);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.part"));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for e in entries {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}
