//! An axum service calling a backend through pool-http with tower layers stacked on the
//! client: `cargo run -p examples --example axum_gateway`.
//!
//! The gateway answers `GET /users/{id}` by asking a backend (a local server standing in
//! for it) through `Client` as a `tower::Service`, under a tower-http layer that stamps every
//! backend call with a header, a per-call timeout and a concurrency limit. The example then
//! calls the gateway itself a few times, prints what came back and what the pool did, and
//! exits.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use examples::http_server::Server;
use pool_http::Body;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_http::set_header::SetRequestHeaderLayer;

/// The backend as the gateway's handlers see it: a tower service, layers included.
type Backend = BoxCloneSyncService<http::Request<String>, http::Response<Body>, tower::BoxError>;

#[derive(Clone)]
struct App {
    backend: Backend,
    base: String,
}

async fn user(State(app): State<App>, Path(id): Path<u64>) -> Result<String, StatusCode> {
    let request = http::Request::get(format!("{}/users/{id}", app.base))
        .body(String::new())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let response = app
        .backend
        .oneshot(request)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok(format!("gateway saw: {}", String::from_utf8_lossy(&body)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = Server::start(|path| {
        let id = path.trim_start_matches("/users/");
        let body = serde_json::json!({ "id": id, "name": format!("user {id}") });
        ("application/json", Bytes::from(body.to_string()))
    })
    .await?;

    let client = pool_http::Client::builder()
        .max_conns_per_host(16)
        .build()?;
    let stack = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-gateway"),
            HeaderValue::from_static("axum-example"),
        ))
        .timeout(Duration::from_secs(2))
        .concurrency_limit(64)
        .service(client.clone());
    let app = App {
        backend: BoxCloneSyncService::new(stack),
        base: backend.url(""),
    };
    let router = axum::Router::new()
        .route("/users/{id}", get(user))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });

    // Callers of the gateway (the same client type, another pool).
    let callers = pool_http::Client::new()?;
    for id in [1, 2, 3] {
        let text = callers
            .get(&format!("http://{gateway}/users/{id}"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        println!("{text}");
    }
    let stats = client.stats();
    println!(
        "backend calls {}, connections to the backend {} (it accepted {})",
        stats.requests,
        stats.pool.created,
        backend.accepts()
    );
    Ok(())
}
