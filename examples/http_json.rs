//! A client that reads and writes a JSON API: `cargo run -p examples --example http_json`.
//!
//! A local server stands in for the API. The client fetches a list, then each item, POSTs a
//! new one as JSON, with a per-host cap and a whole-request timeout, and prints what the pool
//! did: one connection served every request, because each body was read to its end.

use std::time::Duration;

use bytes::Bytes;
use examples::http_server::Server;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Item {
    id: u64,
    name: String,
    price: u64,
}

#[derive(Serialize)]
struct NewItem<'a> {
    name: &'a str,
    price: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = Server::start(|path| {
        let body = match path {
            "/items" => serde_json::json!([1, 2, 3, 4, 5]),
            "/items/new" => serde_json::json!({ "id": 6, "name": "created", "price": 0 }),
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
        .body_limit(1 << 20) // a hostile API cannot make `json` buffer more than 1 MiB
        .build()?;

    let ids: Vec<u64> = client.get(&api.url("/items")).await?.json().await?;
    for id in ids {
        let item: Item = client
            .get(&api.url(&format!("/items/{id}")))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        println!("{} (#{}) costs {}", item.name, item.id, item.price);
    }
    let created: Item = client
        .post(&api.url("/items/new"))
        .json(&NewItem {
            name: "lamp",
            price: 4200,
        })
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("created #{}", created.id);

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
