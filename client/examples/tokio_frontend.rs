//! A tokio program using the async client: store a few objects
//! concurrently, then stream them back with a batch-get, as a frontend
//! assembling a pack would.
//!
//! ```text
//! stratum-node &                       # a local node on 127.0.0.1:7700
//! cargo run -p stratum-client --example tokio_frontend [-- ADDR]
//! ```

use stratum_client::{Client, ClientConfig, ObjectKind};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7700".into());
    // The client runs its own I/O threads; its futures only wait on
    // channels, so they are at home on tokio's workers.
    let client = Client::connect(ClientConfig::seeds([node])).await?;

    let puts: Vec<_> = (0..100)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .put(ObjectKind::Blob, format!("blob number {n}\n").into_bytes())
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for put in puts {
        ids.push(put.await??.id);
    }
    println!("stored {} objects", ids.len());

    let mut stream = client.get_many(ids);
    let mut bytes = 0;
    while let Some((id, result)) = stream.next().await {
        let object = result.map_err(|err| format!("{id}: {err}"))?;
        bytes += object.content.len();
    }
    println!("streamed them back: {bytes} bytes, each checked against its id");
    Ok(())
}
