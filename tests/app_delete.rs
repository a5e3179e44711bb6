//! `meridian apps delete` against a real server: it asks on a terminal, and without one
//! refuses unless `--yes`, rather than wait for an answer that never comes.

use meridian_tests::workers::create_app_args;
use meridian_tests::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_app_without_a_terminal_needs_yes() {
    let mut c = Cluster::start(1).await;
    c.bootstrap().await;
    let (code, _, err) = c.cli(&create_app_args("web", &[]));
    assert_eq!(code, 0, "{err}");

    // The CLI's input is not a terminal here: it refuses at once, naming --yes.
    let (code, out, err) = c.cli(&["apps", "delete", "web"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        "error: will not delete app web without a confirmation, and the input is not a \
         terminal to ask on; pass --yes to go ahead without asking\n"
    );
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = c.cli(&["apps", "show", "web"]);
    assert_eq!(code, 0, "still there: {err}");

    let (code, out, err) = c.cli(&["apps", "delete", "web", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Deleted app web\n");
    let (code, _, err) = c.cli(&["apps", "show", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 404"), "{err}");
    let (code, _, err) = c.cli(&["apps", "delete", "web", "-y"]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 404"), "{err}");
}
