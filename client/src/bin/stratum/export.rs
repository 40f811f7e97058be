//! `stratum export-git DIR`: write every stored object into a Git
//! repository as loose objects (`git fsck` accepts them).
//!
//! Ids are listed shard by shard on every node (deduplicated: replicas hold
//! the same objects), fetched with streaming batch-gets, verified by the
//! client, and written under the name the repository's format gives them.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use stratum_client::{BlockingClient, ObjectId};

use crate::git::{self, ObjectFormat};
use crate::CliError;

/// Ids asked per listing page and per batch-get.
const PAGE: u32 = 4096;

pub fn export_git(
    client: &BlockingClient,
    dir: &Path,
    object_format: &str,
    only: Option<Vec<ObjectId>>,
) -> Result<u8, CliError> {
    if !dir.join(".git").exists() && !dir.join("objects").exists() {
        std::fs::create_dir_all(dir)
            .map_err(|err| CliError::Local(format!("{}: {err}", dir.display())))?;
        git::git(
            dir,
            &[
                "init",
                "--quiet",
                &format!("--object-format={object_format}"),
            ],
        )?;
    }
    let format = git::object_format(dir)?;
    let objects_dir = git::objects_dir(dir)?;
    let started = Instant::now();
    let named = only.is_some();

    let ids = match only {
        Some(ids) => {
            let mut seen = HashSet::new();
            ids.into_iter().filter(|id| seen.insert(*id)).collect()
        }
        None => list_all(client)?,
    };
    let bar = ProgressBar::new(ids.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} exporting [{bar:30}] {pos}/{len} objects {per_sec}",
        )
        .map_err(|err| CliError::Local(err.to_string()))?
        .progress_chars("=> "),
    );
    let (mut written, mut existing, mut bytes) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    for chunk in ids.chunks(PAGE as usize) {
        for (id, result) in client.get_many(chunk.iter().copied()) {
            bar.inc(1);
            match result {
                Ok(object) => {
                    let name = match format {
                        ObjectFormat::Sha256 => object.id.to_hex(),
                        ObjectFormat::Sha1 => format.object_name(object.kind, &object.content),
                    };
                    bytes += object.content.len() as u64;
                    if git::write_loose(&objects_dir, &name, object.kind, &object.content)? {
                        written += 1;
                    } else {
                        existing += 1;
                    }
                }
                // Deleted between listing and reading: not an export error
                // (but an id the operator named must be there).
                Err(stratum_client::ClientError::NotFound { .. }) if !named => {}
                Err(err) => failures.push((id, err)),
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "exported {} objects ({bytes} bytes) into {} ({} format): {written} written, {existing} already there, {} failed; {seconds:.2} s",
        written + existing,
        dir.display(),
        format.name(),
        failures.len(),
    );
    for (id, err) in failures.iter().take(10) {
        eprintln!("stratum: {id}: {err}");
    }
    match failures.into_iter().next() {
        None => Ok(0),
        Some((_, err)) => Err(CliError::Client(err)),
    }
}

/// Every id any shard of any node holds, each once.
fn list_all(client: &BlockingClient) -> Result<Vec<ObjectId>, CliError> {
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for peer in client.async_client().all_shards() {
        let mut after = None;
        loop {
            let (page, next) =
                futures_lite::future::block_on(client.async_client().list_ids(&peer, after, PAGE))
                    .map_err(|err| CliError::Exit {
                        message: format!("cannot list the objects of {peer}: {err}"),
                        code: 3,
                    })?;
            ids.extend(page.into_iter().filter(|id| seen.insert(*id)));
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
    }
    Ok(ids)
}
