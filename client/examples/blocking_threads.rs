//! A plain-threads program using the blocking client: several threads
//! share one client (and its connections).
//!
//! ```text
//! stratum-node &                       # a local node on 127.0.0.1:7700
//! cargo run -p stratum-client --example blocking_threads [-- ADDR]
//! ```

use stratum_client::{BlockingClient, ClientConfig, ClientError, ObjectKind};

fn main() -> Result<(), ClientError> {
    let node = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7700".into());
    let client = BlockingClient::connect(ClientConfig::seeds([node]))?;

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let client = client.clone();
            std::thread::spawn(move || -> Result<usize, ClientError> {
                let mut checked = 0;
                for n in 0..50 {
                    let content = format!("worker {worker} object {n}\n").into_bytes();
                    let receipt = client.put(ObjectKind::Blob, content.clone())?;
                    let object = client.get(receipt.id)?;
                    assert_eq!(object.content, content);
                    checked += 1;
                }
                Ok(checked)
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.join().expect("worker thread")?;
    }
    println!("{total} objects written and read back from 4 threads");
    Ok(())
}
