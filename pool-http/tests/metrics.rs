//! Feature `metrics`: the client's counters and its pool's series reach a recorder under the
//! documented names, labelled by the client's name and the origin (never userinfo or path).

mod support;

use pool_core::testing::metrics::Capture;
use support::Server;

#[tokio::test]
async fn the_client_and_its_pool_are_exported_without_userinfo_or_path() {
    let server = Server::sized(2).await;
    let client = pool_http::Client::new().unwrap();
    let url = format!("http://user:s3cret@{}/private/path?token=abc", server.addr);
    for _ in 0..3 {
        let body = client.get(&url).await.unwrap().text().await.unwrap();
        assert_eq!(body, "xx");
    }

    let capture = Capture::default();
    metrics::with_local_recorder(&capture, || client.record_metrics("api"));
    let origin = format!("http://{}", server.addr);
    let get = |name: &str| {
        capture
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported: {:?}", capture.all()))
    };
    assert_eq!(get("http_client_requests{pool=api}"), 3.0);
    assert_eq!(get("http_client_body_eof{pool=api}"), 3.0);
    assert_eq!(get("http_client_streams{pool=api}"), 0.0);
    assert_eq!(get("pool_created{pool=api}"), 1.0);
    assert_eq!(get(&format!("pool_created{{pool=api,key={origin}}}")), 1.0);
    for name in capture.all().keys() {
        assert!(
            !name.contains("s3cret") && !name.contains("private") && !name.contains("token"),
            "{name}"
        );
    }
}
