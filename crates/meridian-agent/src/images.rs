//! Images from the control plane. When an image is not on the engine and cannot be pulled (no
//! `--registry`, or the pull failed), the agent fetches the archive `meridian images push`
//! left on the control plane and streams it into `docker load`.
//!
//! One fetch per image at a time: instances of the same image wait for the fetch in flight
//! and then find the image loaded. A failed fetch is not repeated before a backoff has passed;
//! until then every attempt ends with the failure of the last one, so reports do not flap.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::time::Instant;

use crate::control::Backoff;
use crate::runtime::{ContainerRuntime, ImageTar, RuntimeError};

/// Shortest wait before an image is fetched again after a failed fetch; also the wait after
/// the control plane said it does not have the image (asking again is cheap, and the image
/// may have been pushed meanwhile).
pub const FETCH_RETRY_MIN: Duration = Duration::from_secs(5);

/// Longest wait between two failed fetches of one image.
pub const FETCH_RETRY_MAX: Duration = Duration::from_secs(300);

/// A transfer that brings no data for this long is given up.
pub const FETCH_IDLE: Duration = Duration::from_secs(60);

/// Where images come from when the engine lacks them.
pub trait ImageSource: Send + Sync + 'static {
    /// `image` as `docker save` wrote it, streamed; `Ok(None)` when the source does not have
    /// it; `Err` with what went wrong otherwise.
    fn fetch<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<Option<ImageTar>, String>>;
}

/// Makes sure images are on the engine: already there, pulled, or fetched from an
/// [`ImageSource`]. Shared by the create tasks of a reconciler.
#[derive(Default)]
pub struct Images {
    source: Option<Arc<dyn ImageSource>>,
    /// Images being fetched or whose last fetch failed.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Images")
            .field("source", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

/// One image's fetch history.
#[derive(Debug)]
struct Slot {
    backoff: Backoff,
    /// No fetch before this.
    retry_at: Option<Instant>,
    /// How the last fetch ended, returned until `retry_at`.
    last: Option<RuntimeError>,
}

/// Why a fetch did not bring the image.
enum FetchFailure {
    /// The source does not have it.
    NotThere,
    /// Anything else: transfer, load, an archive without the image.
    Failed(String),
}

impl Images {
    /// Images from the engine only (pulled when asked to); nothing is fetched.
    pub fn engine_only() -> Self {
        Self::default()
    }

    /// Images from the engine, and from `source` when the engine lacks them.
    pub fn with_source(source: Arc<dyn ImageSource>) -> Self {
        Self {
            source: Some(source),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Makes sure `image` is on the engine behind `runtime`: it is there, or it is pulled
    /// (when `pull` is set), or fetched from the source. [`RuntimeError::ImageMissing`] with
    /// the reason when none of that works.
    pub async fn ensure<R: ContainerRuntime>(
        &self,
        runtime: &R,
        image: &str,
        pull: bool,
    ) -> Result<(), RuntimeError> {
        let Some(source) = &self.source else {
            return runtime.ensure_image(image, pull).await;
        };
        // The common case, without waiting on a fetch of the same image in flight.
        match runtime.ensure_image(image, false).await {
            Ok(()) => return Ok(()),
            Err(RuntimeError::ImageMissing { .. }) => {}
            Err(e) => return Err(e),
        }
        let slot = self.slot(image);
        let mut slot = slot.lock().await;
        // Perhaps loaded by the fetch this task waited for; else pulled, when asked to.
        let pull_failure = match runtime.ensure_image(image, pull).await {
            Ok(()) => {
                self.forget(image);
                return Ok(());
            }
            Err(RuntimeError::ImageMissing { detail, .. }) => pull.then_some(detail),
            Err(e) => return Err(e),
        };
        if let (Some(at), Some(last)) = (slot.retry_at, &slot.last) {
            if Instant::now() < at {
                return Err(last.clone());
            }
        }
        let failure = match fetch_and_load(source.as_ref(), runtime, image).await {
            Ok(()) => {
                self.forget(image);
                return Ok(());
            }
            Err(f) => f,
        };
        let detail = match failure {
            FetchFailure::NotThere => {
                slot.retry_at = Some(Instant::now() + FETCH_RETRY_MIN);
                match pull_failure {
                    None => format!(
                        "not on the engine, not pushed to the control plane (meridian images \
                         push {image}), and pulling is off"
                    ),
                    Some(pull) => format!(
                        "{pull}; not pushed to the control plane either (meridian images push \
                         {image})"
                    ),
                }
            }
            FetchFailure::Failed(why) => {
                let wait = slot.backoff.fail();
                slot.retry_at = Some(Instant::now() + wait);
                tracing::warn!(%image, error = %why, retry_in = ?wait,
                    "cannot fetch image from the control plane");
                let fetch = format!("fetching it from the control plane failed: {why}");
                match pull_failure {
                    None => format!("not on the engine, and {fetch}"),
                    Some(pull) => format!("{pull}; {fetch}"),
                }
            }
        };
        let err = RuntimeError::ImageMissing {
            image: image.to_string(),
            detail,
        };
        slot.last = Some(err.clone());
        Err(err)
    }

    fn slot(&self, image: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(image.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Slot {
                    backoff: Backoff::new(FETCH_RETRY_MIN, FETCH_RETRY_MAX),
                    retry_at: None,
                    last: None,
                }))
            })
            .clone()
    }

    /// The image is there: its history no longer matters.
    fn forget(&self, image: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(image);
    }
}

/// Fetches `image` from `source` and streams it into the engine, then checks it arrived.
async fn fetch_and_load<R: ContainerRuntime>(
    source: &dyn ImageSource,
    runtime: &R,
    image: &str,
) -> Result<(), FetchFailure> {
    let started = Instant::now();
    let tar = match source.fetch(image).await {
        Ok(Some(tar)) => tar,
        Ok(None) => return Err(FetchFailure::NotThere),
        Err(e) => return Err(FetchFailure::Failed(e)),
    };
    tracing::info!(%image, "fetching image from the control plane");
    let bytes = Arc::new(AtomicU64::new(0));
    let broke = Arc::new(Mutex::new(None));
    let loaded = runtime
        .load_image(watch_transfer(tar, bytes.clone(), broke.clone()))
        .await;
    let bytes = bytes.load(Ordering::Relaxed);
    let broke = broke.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(why) = broke {
        return Err(FetchFailure::Failed(format!(
            "the transfer broke off after {bytes} bytes: {why}"
        )));
    }
    if let Err(e) = loaded {
        return Err(FetchFailure::Failed(e.to_string()));
    }
    match runtime.ensure_image(image, false).await {
        Ok(()) => {
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(%image, bytes, seconds = format!("{seconds:.1}"),
                "loaded image fetched from the control plane");
            Ok(())
        }
        Err(RuntimeError::ImageMissing { .. }) => Err(FetchFailure::Failed(format!(
            "the archive from the control plane ({bytes} bytes) does not hold {image}"
        ))),
        Err(e) => Err(FetchFailure::Failed(e.to_string())),
    }
}

/// `tar`, counting its bytes into `bytes`, ending with an error after [`FETCH_IDLE`] without
/// data, and noting in `broke` why it broke off (the engine's answer to a cut-off upload says
/// little about the cause).
fn watch_transfer(
    tar: ImageTar,
    bytes: Arc<AtomicU64>,
    broke: Arc<Mutex<Option<String>>>,
) -> ImageTar {
    let note = move |why: String| {
        let mut slot = broke.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(why);
    };
    futures::stream::unfold(Some(tar), move |tar| {
        let bytes = bytes.clone();
        let note = note.clone();
        async move {
            let mut tar = tar?;
            match tokio::time::timeout(FETCH_IDLE, tar.next()).await {
                Ok(Some(Ok(chunk))) => {
                    bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    Some((Ok(chunk), Some(tar)))
                }
                Ok(Some(Err(e))) => {
                    note(e.to_string());
                    Some((Err(e), None))
                }
                Ok(None) => None,
                Err(_) => {
                    let why = format!("no data for {FETCH_IDLE:?}");
                    note(why.clone());
                    Some((Err(io::Error::new(io::ErrorKind::TimedOut, why)), None))
                }
            }
        }
    })
    .boxed()
}
