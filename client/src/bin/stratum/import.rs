//! `stratum import-git REPO`: store every object of a Git repository.
//!
//! Objects stream out of `git cat-file --batch-all-objects --batch` and into
//! a pool of putting threads (each put waits for durability, so many are
//! kept in flight). In a SHA-256 repository Git's object name is the
//! Stratum id, and each one is checked to be so.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use stratum_client::git_batch::{read_batch, GitObject};
use stratum_client::{BlockingClient, ClientError, ObjectId, PutOutcome};

use crate::git::{self, ObjectFormat};
use crate::CliError;

enum Outcome {
    Stored(ObjectId, u64),
    Present(ObjectId, u64),
    Failed(String, ClientError),
    Mismatch(String, String),
}

pub fn import_git(
    client: &BlockingClient,
    repo: &Path,
    concurrency: usize,
    record: Option<&Path>,
) -> Result<u8, CliError> {
    let mut record = match record {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|err| CliError::Local(format!("{}: {err}", path.display())))?,
        )),
        None => None,
    };
    let format = git::object_format(repo)?;
    let (total_objects, total_bytes) = inventory(repo)?;
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} importing [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .map_err(|err| CliError::Local(err.to_string()))?
        .progress_chars("=> "),
    );
    let started = Instant::now();

    let (work, queue) = flume::bounded::<GitObject>(concurrency * 4);
    let (done, outcomes) = flume::unbounded::<Outcome>();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let queue = queue.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                for object in queue.iter() {
                    let _ = done.send(put_one(&client, format, object));
                }
            })
        })
        .collect();
    drop(queue);
    drop(done);

    let (child, stdout) = crate::git::cat_all_objects(repo, &["--unordered"])?;
    let read = read_batch(stdout, |object| work.send(object).is_ok())
        .map_err(|err| CliError::Local(format!("reading git cat-file: {err}")));
    drop(work);

    let (mut stored, mut present, mut bytes) = (0u64, 0u64, 0u64);
    let mut failures: Vec<(String, CliError)> = Vec::new();
    for outcome in outcomes.iter() {
        match outcome {
            Outcome::Stored(id, len) => {
                note(&mut record, id)?;
                stored += 1;
                bytes += len;
                bar.inc(len);
            }
            Outcome::Present(id, len) => {
                note(&mut record, id)?;
                present += 1;
                bytes += len;
                bar.inc(len);
            }
            Outcome::Failed(name, err) => failures.push((name, CliError::Client(err))),
            Outcome::Mismatch(name, id) => failures.push((
                name.clone(),
                CliError::Exit {
                    message: format!(
                        "git object {name} hashes to {id} here: the repository is corrupt"
                    ),
                    code: 4,
                },
            )),
        }
        bar.set_message(format!("{} objects", stored + present));
    }
    for worker in workers {
        let _ = worker.join();
    }
    bar.finish_and_clear();
    if let Some(mut file) = record {
        file.flush()
            .map_err(|err| CliError::Local(format!("--record: {err}")))?;
    }
    let status = child
        .wait_with_output()
        .map_err(|err| CliError::Local(format!("git cat-file: {err}")))?;
    read?;
    if !status.status.success() {
        return Err(CliError::Local(format!(
            "git cat-file failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        )));
    }

    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    let objects = stored + present;
    println!(
        "imported {objects} of {total_objects} objects ({bytes} bytes) from {} ({} format): {stored} stored, {present} already present, {} failed; {seconds:.2} s, {:.0} objects/s, {:.1} MB/s",
        repo.display(),
        format.name(),
        failures.len(),
        objects as f64 / seconds,
        bytes as f64 / seconds / 1e6,
    );
    for (name, err) in failures.iter().take(10) {
        eprintln!("stratum: {name}: {err}");
    }
    match failures.into_iter().next() {
        None => Ok(0),
        Some((_, err)) => Err(CliError::Exit {
            message: "some objects were not imported (see above)".into(),
            code: err_code(&err),
        }),
    }
}

fn note(
    record: &mut Option<std::io::BufWriter<std::fs::File>>,
    id: ObjectId,
) -> Result<(), CliError> {
    if let Some(file) = record {
        writeln!(file, "{id}").map_err(|err| CliError::Local(format!("--record: {err}")))?;
    }
    Ok(())
}

fn err_code(err: &CliError) -> u8 {
    match err {
        CliError::Exit { code, .. } => *code,
        CliError::Client(ClientError::Corrupt { .. }) => 4,
        CliError::Client(ClientError::Rejected { .. } | ClientError::TooLarge { .. }) => 5,
        _ => 3,
    }
}

fn put_one(client: &BlockingClient, format: ObjectFormat, object: GitObject) -> Outcome {
    let len = object.content.len() as u64;
    match client.put(object.kind, object.content) {
        Ok(receipt) => {
            if format == ObjectFormat::Sha256 && receipt.id.to_hex() != object.name {
                return Outcome::Mismatch(object.name, receipt.id.to_hex());
            }
            match receipt.outcome {
                PutOutcome::Stored => Outcome::Stored(receipt.id, len),
                PutOutcome::AlreadyPresent => Outcome::Present(receipt.id, len),
            }
        }
        Err(err) => Outcome::Failed(object.name, err),
    }
}

/// Counts the repository's objects and bytes (for the progress bar).
fn inventory(repo: &Path) -> Result<(u64, u64), CliError> {
    let output = git::git(
        repo,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectsize)",
        ],
    )?;
    let mut count = 0;
    let mut bytes = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        count += 1;
        bytes += line.trim().parse::<u64>().unwrap_or(0);
    }
    Ok((count, bytes))
}
