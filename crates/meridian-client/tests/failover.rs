//! The failover rules against small fake servers on loopback: which failures move a call to the
//! next server, which never do, leader hints, and the deadlines of ordinary calls and long
//! polls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::TryStreamExt;
use meridian_api::regions::RegionBody;
use meridian_api::{ErrorCode, SERVED_BY_HEADER};
use meridian_client::{BuildError, Client, ClientError, Timeouts};

/// What a fake server does with every request.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Answers after `delay`.
    Answer { delay: Duration },
    /// Answers 503 with this code.
    Refuse(&'static str),
    /// Answers, saying it relayed the answer from the leader at this URL.
    Relay(String),
}

#[derive(Clone)]
struct Fake {
    node_id: u64,
    behaviour: Arc<Mutex<Behaviour>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

async fn handle(State(fake): State<Fake>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    fake.hits.lock().unwrap().push(format!("{method} {path}"));
    let behaviour = fake.behaviour.lock().unwrap().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap();
    let relayed = match behaviour {
        Behaviour::Refuse(code) => {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"not now"}}}}"#);
            return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
        Behaviour::Answer { delay } => {
            tokio::time::sleep(delay).await;
            None
        }
        Behaviour::Relay(leader) => Some(leader),
    };
    let json = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/regions") => String::from_utf8(body.to_vec()).unwrap(),
        ("GET", "/v1/regions") => "[]".into(),
        ("GET", "/v1/health") => format!(r#"{{"status":"ok","node_id":{}}}"#, fake.node_id),
        ("GET", "/v1/cluster") => r#"{"leader":2,"term":3,"members":[]}"#.into(),
        ("POST", "/v1/agent/nodes/w1/heartbeat") => r#"{"status":"ready","generation":1}"#.into(),
        ("GET", "/v1/agent/images") => "tar bytes".into(),
        ("GET", "/v1/agent/nodes/w1/assignments") => {
            r#"{"node":"w1","generation":4,"instances":[]}"#.into()
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut resp = Response::new(Body::from(json));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(leader) = relayed {
        resp.headers_mut()
            .insert(SERVED_BY_HEADER, leader.parse().unwrap());
    }
    resp
}

/// A fake server with `node_id` doing `behaviour`, and its URL.
async fn fake(node_id: u64, behaviour: Behaviour) -> (String, Fake) {
    let fake = Fake {
        node_id,
        behaviour: Arc::new(Mutex::new(behaviour)),
        hits: Arc::default(),
    };
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

fn answers() -> Behaviour {
    Behaviour::Answer {
        delay: Duration::ZERO,
    }
}

/// A loopback URL nothing listens on: connections are refused at once.
fn closed() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn region() -> RegionBody {
    RegionBody {
        name: "eu-fra".into(),
        country: "DE".into(),
        latitude: 50.1,
        longitude: 8.7,
    }
}

fn client(servers: &[&String], timeouts: Timeouts) -> Client {
    Client::builder(servers.iter().map(|s| s.as_str()))
        .token("t".to_string())
        .timeouts(timeouts)
        .build()
        .unwrap()
}

#[tokio::test]
async fn writes_skip_servers_that_cannot_be_reached() {
    let down = closed();
    let (up, fake) = fake(1, answers()).await;
    let c = client(&[&down, &up], Timeouts::default());
    assert_eq!(c.create_region(&region()).await.unwrap(), region());
    assert_eq!(fake.hits(), ["POST /v1/regions"]);
    assert_eq!(
        c.server(),
        up,
        "the next call starts where this one was answered"
    );
}

#[tokio::test]
async fn no_leader_moves_a_write_on() {
    let (a, first) = fake(1, Behaviour::Refuse("no_leader")).await;
    let (b, second) = fake(2, answers()).await;
    let c = client(&[&a, &b], Timeouts::default());
    c.create_region(&region()).await.unwrap();
    assert_eq!(first.hits().len(), 1);
    assert_eq!(second.hits().len(), 1);
}

#[tokio::test]
async fn a_write_of_unknown_outcome_is_never_sent_twice() {
    for code in ["commit_timeout", "not_leader", "leader_unreachable"] {
        let (a, first) = fake(1, Behaviour::Refuse(code)).await;
        let (b, second) = fake(2, answers()).await;
        let c = client(&[&a, &b], Timeouts::default());
        let e = c.create_region(&region()).await.unwrap_err();
        assert_eq!(e.code(), Some(&ErrorCode::parse(code)));
        assert_eq!(e.to_string(), format!("not now ({code}, HTTP 503)"));
        assert!(second.hits().is_empty(), "{code}: sent twice");

        // Reads, repeatable writes and clients that opted in do move on (fresh clients, so
        // each starts at the first server again).
        let fresh = || client(&[&a, &b], Timeouts::default());
        fresh().regions().await.unwrap();
        fresh().heartbeat("w1").await.unwrap();
        fresh()
            .repeating_writes()
            .create_region(&region())
            .await
            .unwrap();
        assert_eq!(
            second.hits(),
            [
                "GET /v1/regions",
                "POST /v1/agent/nodes/w1/heartbeat",
                "POST /v1/regions"
            ]
        );
        assert_eq!(first.hits().len(), 1 + 3);
    }
}

#[tokio::test]
async fn a_write_that_times_out_is_not_sent_again() {
    let timeouts = Timeouts {
        request: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let slow = Behaviour::Answer {
        delay: Duration::from_secs(5),
    };
    let (a, first) = fake(1, slow).await;
    let (b, second) = fake(2, answers()).await;
    let c = client(&[&a, &b], timeouts);
    let e = c.create_region(&region()).await.unwrap_err();
    assert!(matches!(e, ClientError::Transport { .. }), "{e}");
    assert!(second.hits().is_empty());
    // A read that times out goes to the next server.
    *first.behaviour.lock().unwrap() = Behaviour::Answer {
        delay: Duration::from_secs(5),
    };
    let c = client(&[&a, &b], timeouts);
    c.regions().await.unwrap();
    assert_eq!(second.hits(), ["GET /v1/regions"]);
}

#[tokio::test]
async fn long_polls_wait_longer_than_ordinary_calls() {
    let timeouts = Timeouts {
        request: Duration::from_millis(200),
        long_poll_grace: Duration::from_millis(800),
        ..Timeouts::default()
    };
    let (a, _) = fake(
        1,
        Behaviour::Answer {
            delay: Duration::from_millis(500),
        },
    )
    .await;
    let c = client(&[&a], timeouts);
    let e = c.regions().await.unwrap_err();
    assert!(e.to_string().starts_with("cannot reach"), "{e}");
    // 300 ms asked for, plus 800 ms of grace: the answer after 500 ms arrives in time.
    let got = c.assignments("w1", 3, 300).await.unwrap();
    assert_eq!(got.generation, 4);
}

#[tokio::test]
async fn an_image_comes_from_the_next_server_when_one_stays_silent() {
    let timeouts = Timeouts {
        request: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let silent = Behaviour::Answer {
        delay: Duration::from_secs(5),
    };
    let (a, _) = fake(1, silent).await;
    let (b, second) = fake(2, answers()).await;
    let c = client(&[&a, &b], timeouts);
    let tar = c.fetch_image("web:1").await.unwrap().expect("an image");
    let bytes: Vec<u8> = tar
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .unwrap();
    assert_eq!(bytes, b"tar bytes");
    assert_eq!(second.hits(), ["GET /v1/agent/images"]);
}

#[tokio::test]
async fn leader_bound_calls_follow_the_leader_a_follower_names() {
    let (leader_url, leader) = fake(2, answers()).await;
    let (follower_url, follower) = fake(1, Behaviour::Relay(format!("{leader_url}/"))).await;
    let c = client(&[&follower_url, &leader_url], Timeouts::default());
    c.regions().await.unwrap();
    assert_eq!(c.known_leader(), Some(leader_url.as_str()));
    // Calls any server answers stay with the one that answered last...
    c.health().await.unwrap();
    // ...and calls for the leader go there directly.
    c.regions().await.unwrap();
    assert_eq!(follower.hits(), ["GET /v1/regions", "GET /v1/health"]);
    assert_eq!(leader.hits(), ["GET /v1/regions"]);
}

#[tokio::test]
async fn the_leader_is_found_by_its_node_id() {
    let (a, _) = fake(1, answers()).await;
    let (b, _) = fake(2, answers()).await;
    let c = client(&[&a, &b], Timeouts::default());
    assert_eq!(c.find_leader().await.unwrap(), Some(b.clone()));
    assert_eq!(c.known_leader(), Some(b.as_str()));
}

#[tokio::test]
async fn one_unreachable_server_reads_plainly() {
    let down = closed();
    let c = client(&[&down], Timeouts::default());
    let e = c.regions().await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("cannot reach {down}/v1/regions: ")),
        "{text}"
    );
    assert_eq!(text.matches(&down).count(), 1, "{text}");
    assert_eq!(e.status(), None);
}

#[tokio::test]
async fn when_every_server_fails_each_is_named_once() {
    let (a, b) = (closed(), closed());
    let c = client(&[&a, &b], Timeouts::default());
    let e = c.regions().await.unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("tried 2 servers: cannot reach "), "{text}");
    assert_eq!(text.matches(&a).count(), 1, "{text}");
    assert_eq!(text.matches(&b).count(), 1, "{text}");
}

#[test]
fn the_token_is_never_shown() {
    let c = Client::new("http://a:1", Some("s3cr3t".into())).unwrap();
    let shown = format!(
        "{c:?} {:?}",
        Client::builder(["http://a:1"]).token("s3cr3t".to_string())
    );
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[test]
fn a_client_without_usable_servers_is_not_built() {
    let none = Client::builder(Vec::<String>::new()).build().unwrap_err();
    assert!(matches!(none, BuildError::NoServers));
    let bad = Client::new("127.0.0.1:7001", None).unwrap_err();
    assert_eq!(
        bad.to_string(),
        "server address `127.0.0.1:7001` must look like http://HOST:PORT or https://HOST"
    );
}
