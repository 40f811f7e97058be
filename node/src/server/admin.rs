//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /health`. It runs on its own small thread, off the shard cores, and
//! asks each core for a snapshot by message: it never reads core state
//! directly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::mesh::{CoreMsg, Mesh};
use super::metrics::{render_prometheus, MetricsSnapshot};
use crate::store::WriteMode;

/// How long a core gets to answer a snapshot request.
const CORE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client gets to send its request line and headers.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request line or header accepted.
const MAX_LINE: usize = 8 << 10;

/// Binds `addr` and serves on a background thread.
pub fn start(addr: SocketAddr, mesh: Mesh, node_id: u32) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(err) = serve(stream, &mesh, node_id) {
                            tracing::debug!(error = %err, "admin request failed");
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "admin accept failed"),
                }
            }
        })?;
    Ok(bound)
}

/// Snapshots of every core; `Err` names the cores that did not answer.
fn collect(mesh: &Mesh) -> (Vec<MetricsSnapshot>, Vec<u16>) {
    let mut snapshots = Vec::new();
    let mut missing = Vec::new();
    for shard in 0..mesh.cores() {
        let (reply, answer) = flume::bounded(1);
        if mesh.try_send(shard, CoreMsg::Metrics { reply }).is_err() {
            missing.push(shard);
            continue;
        }
        match answer.recv_timeout(CORE_TIMEOUT) {
            Ok(snapshot) => snapshots.push(snapshot),
            Err(_) => missing.push(shard),
        }
    }
    (snapshots, missing)
}

fn serve(stream: TcpStream, mesh: &Mesh, node_id: u32) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(64 << 10);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.len() > MAX_LINE {
        return respond(stream, 414, "text/plain", "request line too long\n");
    }
    // Read (and ignore) the headers up to the blank line.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(stream, 405, "text/plain", "only GET is served\n");
    }
    match path {
        "/metrics" => {
            let (snapshots, missing) = collect(mesh);
            let mut body = render_prometheus(node_id, &snapshots);
            body.push_str("# HELP stratum_shards_unresponsive Shards that did not answer this scrape.\n# TYPE stratum_shards_unresponsive gauge\n");
            body.push_str(&format!(
                "stratum_shards_unresponsive{{node=\"{node_id}\"}} {}\n",
                missing.len()
            ));
            respond(stream, 200, "text/plain; version=0.0.4", &body)
        }
        "/health" => {
            let (snapshots, missing) = collect(mesh);
            let mut problems: Vec<String> = missing
                .iter()
                .map(|shard| format!("shard {shard}: not answering"))
                .collect();
            for snapshot in &snapshots {
                if snapshot.store.stalled_io_ops > 0 {
                    problems.push(format!(
                        "shard {}: {} segment I/O operations stalled (device or ring wedged)",
                        snapshot.shard_id, snapshot.store.stalled_io_ops
                    ));
                }
                match &snapshot.write_mode {
                    WriteMode::Writable => {}
                    WriteMode::ReadOnly(reason) => {
                        problems.push(format!("shard {}: read-only: {reason}", snapshot.shard_id))
                    }
                    WriteMode::Failed(reason) => {
                        problems.push(format!("shard {}: failed: {reason}", snapshot.shard_id))
                    }
                }
            }
            if problems.is_empty() {
                respond(
                    stream,
                    200,
                    "text/plain",
                    &format!("ok: {} shards serving\n", snapshots.len()),
                )
            } else {
                respond(stream, 503, "text/plain", &(problems.join("\n") + "\n"))
            }
        }
        _ => respond(
            stream,
            404,
            "text/plain",
            "not found: try /metrics or /health\n",
        ),
    }
}

fn respond(
    mut stream: TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        _ => "Service Unavailable",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
