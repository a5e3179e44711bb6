//! Images without a registry: a blob uploaded to one server, named through another, fetched by
//! an agent token from a third that holds no copy (it relays from the holder).

use futures::TryStreamExt;
use meridian_api::images::RegisterImage;
use meridian_tests::workers::hello_images;
use meridian_tests::{http, Cluster};
use meridian_tls::CertRole;
use sha2::{Digest, Sha256};

fn saved_hello() -> Vec<u8> {
    hello_images();
    let out = std::process::Command::new("docker")
        .args(["save", "meridian-hello:latest"])
        .output()
        .expect("docker save");
    assert!(out.status.success());
    out.stdout
}

/// `bytes` as the stream an upload sends.
fn tar_stream(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::iter([Ok(bytes::Bytes::from(bytes))])
}

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_image_is_fetched_through_any_server() {
    let mut c = Cluster::start(3).await;
    c.bootstrap().await;
    let tar = saved_hello();
    let stored = c
        .client(1)
        .upload_image_blob(tar_stream(tar.clone()))
        .await
        .expect("upload");
    assert_eq!(stored.digest, digest(&tar));
    assert_eq!((stored.size, stored.server), (tar.len() as u64, 2));
    let image = c
        .client(2)
        .register_image(&RegisterImage {
            name: "shop/web:1.0".into(),
            digest: stored.digest.clone(),
            server: stored.server,
        })
        .await
        .expect("register");
    assert_eq!(image.holders, vec![2]);
    let listed = c.client(0).images().await.unwrap();
    assert_eq!(listed.len(), 1);

    let agent_token = c.token("agent").await;
    for i in [0, 2, 1] {
        let agent = c.agent_client(i, &agent_token, "fra-1", "eu-fra");
        let stream = agent
            .fetch_image("shop/web:1.0")
            .await
            .expect("fetch")
            .expect("found");
        let body: Vec<u8> = stream
            .map_ok(|chunk| chunk.to_vec())
            .try_concat()
            .await
            .unwrap();
        assert_eq!(digest(&body), stored.digest, "through server {}", i + 1);
    }
    let agent = c.agent_client(0, &agent_token, "fra-1", "eu-fra");
    assert!(agent.fetch_image("shop/none:1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_image_input_gets_clear_errors() {
    let mut c = Cluster::start(1).await;
    let admin = c.bootstrap().await;
    let client = c.client(0);
    let status = |e: meridian_client::ClientError| e.status();
    // Empty upload.
    assert_eq!(
        status(
            client
                .upload_image_blob(tar_stream(Vec::new()))
                .await
                .unwrap_err()
        ),
        Some(400)
    );
    // A digest nobody holds, a malformed digest, a malformed name.
    let zero = format!("sha256:{}", "0".repeat(64));
    for (name, digest, field) in [
        ("web:1", zero.as_str(), "server"),
        ("web:1", "sha256:xyz", "digest"),
        ("Bad Name!", zero.as_str(), "name"),
    ] {
        let resp = http()
            .post(format!("{}/v1/images", c.url(0)))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": name, "digest": digest, "server": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{name} {digest}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    // Viewers cannot push; agents fetch only with their own token; ?name is required.
    let viewer = c.token("viewer").await;
    let as_viewer = c.client_with(0, Some(viewer));
    assert_eq!(
        status(
            as_viewer
                .upload_image_blob(tar_stream(vec![1, 2, 3]))
                .await
                .unwrap_err()
        ),
        Some(403)
    );
    assert_eq!(
        status(as_viewer.fetch_image("web:1").await.err().expect("refused")),
        Some(403)
    );
    let resp = meridian_tests::http_as(CertRole::Agent, "eu-fra", "fra-1")
        .get(format!("{}/v1/agent/images", c.url(0)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Server-only: refused without a server's certificate, and without the cluster secret.
    let resp = http()
        .get(format!("{}/v1/internal/images/{zero}", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = meridian_tests::http_as(CertRole::Agent, "eu-fra", "fra-1")
        .get(format!("{}/v1/internal/images/{zero}", c.url(0)))
        .header(
            meridian_api::CLUSTER_SECRET_HEADER,
            "test-cluster-secret-0123456789",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        403,
        "an agent's certificate is not a server's"
    );
    let resp = meridian_tests::http_as(CertRole::Server, "test", "server-9")
        .get(format!("{}/v1/internal/images/{zero}", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
