//! Bodies flow through the router as they come, both ways, and upgraded connections become
//! tunnels.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use support::*;
use tokio::sync::{mpsc, Mutex};

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 50 * 1024 * 1024;

/// A body fed through a channel of one frame: the sender waits whenever the reader lags.
fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let frames = tokio_stream(rx).map(|b| Ok::<_, BoxError>(Frame::data(b)));
    (tx, BodyExt::boxed(StreamBody::new(frames)))
}

fn tokio_stream(mut rx: mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_large_response_streams_through_without_waiting_for_its_end() {
    let (go, wait) = tokio::sync::watch::channel(false);
    let finished = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicUsize::new(0));
    let (done, sent) = (Arc::clone(&finished), Arc::clone(&produced));
    let web = backend(move |_req: Request<Incoming>| {
        let (mut wait, done, sent) = (wait.clone(), Arc::clone(&done), Arc::clone(&sent));
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                tx.send(Bytes::from_static(b"first")).await.unwrap();
                let _ = wait.wait_for(|go| *go).await;
                let chunk = Bytes::from(vec![b'x'; CHUNK]);
                for _ in 0..TOTAL / CHUNK {
                    if tx.send(chunk.clone()).await.is_err() {
                        return;
                    }
                    sent.fetch_add(CHUNK, Ordering::SeqCst);
                }
                done.store(true, Ordering::SeqCst);
            });
            Response::new(body)
        }
    })
    .await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;

    let r = get(router.addr, WEB, "/big").await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.into_body();
    let mut first = Vec::new();
    while first.len() < 5 {
        let frame = body.frame().await.unwrap().unwrap();
        first.extend_from_slice(frame.data_ref().unwrap());
    }
    assert_eq!(first, b"first");
    assert!(
        !finished.load(Ordering::SeqCst),
        "the start came before the backend's end"
    );

    go.send(true).unwrap();
    // While the client reads nothing, the backend gets only as far as the socket buffers
    // on the way let it (about 10 MB here): the router holds back instead of buffering.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ahead = produced.load(Ordering::SeqCst);
    assert!(
        ahead < 40 * 1024 * 1024,
        "{ahead} bytes sent to a client reading nothing"
    );
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len();
        }
    }
    assert_eq!(received, TOTAL);
    assert!(finished.load(Ordering::SeqCst));
    router.stop().await;
}

#[tokio::test]
async fn a_request_body_streams_to_the_backend() {
    // The backend reports its first chunk at once, then counts the rest.
    let (first_tx, mut first_rx) = mpsc::channel::<Bytes>(1);
    let first_tx = Arc::new(Mutex::new(Some(first_tx)));
    let web = backend(move |req: Request<Incoming>| {
        let first_tx = Arc::clone(&first_tx);
        async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.unwrap().into_data() else {
                    continue;
                };
                if total == 0 {
                    if let Some(tx) = first_tx.lock().await.take() {
                        tx.send(data.clone()).await.unwrap();
                    }
                }
                total += data.len();
            }
            Response::new(full(total.to_string()))
        }
    })
    .await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;

    let (tx, body) = channel_body();
    let addr = router.addr;
    let response = tokio::spawn(async move {
        let r = send(&client(), addr, "PUT", WEB, "/upload", &[], body).await;
        (r.status(), text(r).await)
    });
    tx.send(Bytes::from_static(b"hello")).await.unwrap();
    // The backend holds the first chunk while the client has not sent the rest.
    assert_eq!(first_rx.recv().await.unwrap(), "hello");
    let chunk = Bytes::from(vec![b'y'; CHUNK]);
    for _ in 0..16 {
        tx.send(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let (status, body) = response.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, (5 + 16 * CHUNK).to_string());
    router.stop().await;
}

#[tokio::test]
async fn an_upgraded_connection_carries_bytes_both_ways() {
    let web = upgrading_echo().await;
    let wire = table(vec![app("web", &[], &[("eu-fra", web.address())])], vec![]);
    let router = start(config("eu-fra"), wire, in_paris()).await;

    let head = talk_through_upgrade(router.addr, WEB).await;
    assert!(head.contains("meridian-region: eu-fra"), "{head}");
    router.stop().await;
}
