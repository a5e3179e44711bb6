//! The one body type the router sends and returns: upstream bodies passed through frame by
//! frame (never gathered whole), and the short bodies of the router's own replies.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::upstreams::InFlight;

/// Errors of bodies passed through.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// A request or response body.
pub(crate) struct ProxyBody {
    kind: Kind,
    /// Keeps the upstream counted as busy until the client has the whole body (or left).
    _in_flight: Option<InFlight>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(Incoming),
    Rewind(Rewind),
}

impl ProxyBody {
    /// No body.
    pub(crate) fn empty() -> Self {
        Self::of(Kind::Empty)
    }

    /// A body held in memory (the router's own replies).
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self::of(Kind::Full(Some(bytes)))
        }
    }

    /// A body streamed from the other side, keeping `in_flight` until it is done with.
    pub(crate) fn stream(body: Incoming, in_flight: Option<InFlight>) -> Self {
        Self {
            kind: Kind::Stream(body),
            _in_flight: in_flight,
        }
    }

    fn of(kind: Kind) -> Self {
        Self {
            kind,
            _in_flight: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Rewind(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
            Kind::Rewind(body) => body.taken.as_ref().is_some_and(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
            Kind::Rewind(body) => body
                .taken
                .as_ref()
                .map_or_else(|| body.slot.hint, Body::size_hint),
        }
    }
}

/// A request body that stays available for another attempt until an attempt starts reading
/// it. A connection that was refused never reads the body, so the request can go to the next
/// backend whatever its method.
#[derive(Clone)]
pub(crate) struct RewindSlot {
    body: Arc<Mutex<Option<Incoming>>>,
    hint: SizeHint,
}

impl RewindSlot {
    pub(crate) fn new(body: Incoming) -> Self {
        let hint = body.size_hint();
        Self {
            body: Arc::new(Mutex::new(Some(body))),
            hint,
        }
    }

    /// Whether no attempt has started reading the body yet.
    pub(crate) fn is_unread(&self) -> bool {
        self.lock().is_some()
    }

    /// The body for the next attempt, unless an earlier attempt started reading it.
    pub(crate) fn attempt(&self) -> Option<ProxyBody> {
        self.is_unread().then(|| {
            ProxyBody::of(Kind::Rewind(Rewind {
                slot: self.clone(),
                taken: None,
            }))
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Incoming>> {
        // Nothing panics while holding the lock, and the slot is valid in any state.
        self.body
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Rewind {
    slot: RewindSlot,
    taken: Option<Incoming>,
}

impl Rewind {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            self.taken = self.slot.lock().take();
        }
        match &mut self.taken {
            Some(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(Some(Err(
                "the request body was already sent on another attempt".into(),
            ))),
        }
    }
}
