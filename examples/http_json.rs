//! A client that reads a JSON API: `cargo run -p examples --example http_json`.
//!
//! A local server stands in for the API. The client fetches a list, then each item, with a
//! per-host cap and a whole-request timeout, and prints what the pool did: one connection
//! served every request, because each body was read to its end.

use std::time::Duration;

use bytes::Bytes;
use examples::http_server::Server;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = Server::start(|path| {
        let body = match path {
            "/items" => serde_json::json!([1, 2, 3, 4, 5]),
            p => {
                let id: u64 = p.trim_start_matches("/items/").parse().unwrap_or(0);
                serde_json::json!({ "id": id, "name": format!("item {id}"), "price": id * 100 })
            }
        };
        ("application/json", Bytes::from(body.to_string()))
    })
    .await?;

    let client = pool_http::Client::builder()
        .max_conns_per_host(8)
        .timeout(Duration::from_secs(5))
        .build()?;

    let list = client.get(&api.url("/items")).await?;
    let ids: Vec<u64> = serde_json::from_slice(&list.into_body().bytes().await?)?;
    for id in ids {
        let response = client.get(&api.url(&format!("/items/{id}"))).await?;
        if !response.status().is_success() {
            return Err(format!("item {id}: {}", response.status()).into());
        }
        let item: serde_json::Value = serde_json::from_slice(&response.into_body().bytes().await?)?;
        println!("{} costs {}", item["name"], item["price"]);
    }

    let stats = client.stats();
    println!(
        "requests {}, connections dialled {} (server accepted {}), reused at body end {}",
        stats.requests,
        stats.pool.created,
        api.accepts(),
        stats.body_eof
    );
    Ok(())
}
