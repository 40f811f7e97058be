//! Running a workload against a cluster.
//!
//! Closed loop: `concurrency` requesters, each issuing its next operation
//! when the previous one completes. Open loop (`--rate`): operations are
//! issued on a fixed schedule whatever the cluster does (up to
//! `concurrency` outstanding; past that the generator waits, and the wait
//! is charged to the operations it delays, see `pacing`). A warm-up runs
//! first and is not measured; the measured part lasts `duration` or until
//! `ops` operations completed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngExt, SeedableRng};
use stratum_client::{Client, ClientError, ObjectId, ObjectKind};

use crate::pacing::{corrected_latency, Schedule};
use crate::report::{error_label, traffic_between, OpKind, Recorder, Report};
use crate::workload::{object, Content, KeyPicker, Popularity, SizeDist};

/// Which operations a run issues.
#[derive(Debug, Clone)]
pub enum Workload {
    Put,
    Get,
    /// Gets with probability `read_ratio`, puts otherwise.
    Mixed {
        read_ratio: f64,
    },
    /// Batches of `batch` preloaded ids through `get_many`.
    BatchGet {
        batch: usize,
    },
    /// Puts of a real repository's objects, in a loop.
    Replay {
        objects: Arc<Vec<(ObjectKind, Vec<u8>)>>,
    },
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::Mixed { .. } => "mixed",
            Self::BatchGet { .. } => "batch-get",
            Self::Replay { .. } => "replay",
        }
    }

    fn reads(&self) -> bool {
        matches!(self, Self::Get | Self::Mixed { .. } | Self::BatchGet { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub workload: Workload,
    pub size: SizeDist,
    /// What objects are made of (compressible or not).
    pub content: Content,
    pub popularity: Popularity,
    /// Objects stored before measuring, for reads to pick from.
    pub keys: usize,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    pub ops: Option<u64>,
    /// Compare every object read with the bytes that were written.
    pub verify: bool,
    pub seed: u64,
    pub progress: bool,
}

impl Settings {
    pub fn workload_name(&self) -> &'static str {
        self.workload.name()
    }
}

/// A preloaded object: its id and how to regenerate its bytes.
#[derive(Debug, Clone, Copy)]
struct Key {
    id: ObjectId,
    seed: u64,
    len: usize,
}

/// Writes the id of every acknowledged put, one hex id per line.
pub struct IdRecord(Mutex<BufWriter<File>>);

impl IdRecord {
    pub fn create(path: &std::path::Path) -> Result<Self, String> {
        let file =
            File::create(path).map_err(|err| format!("--record {}: {err}", path.display()))?;
        Ok(Self(Mutex::new(BufWriter::new(file))))
    }

    fn note(&self, id: &ObjectId) {
        if let Ok(mut file) = self.0.lock() {
            let _ = writeln!(file, "{id}");
        }
    }

    pub fn finish(&self) -> Result<(), String> {
        let mut file = self.0.lock().map_err(|_| "--record: poisoned".to_owned())?;
        file.flush().map_err(|err| format!("--record: {err}"))?;
        file.get_ref()
            .sync_all()
            .map_err(|err| format!("--record: {err}"))
    }
}

struct Shared {
    client: Client,
    settings: Settings,
    keys: Vec<Key>,
    picker: Option<KeyPicker>,
    record: Option<Arc<IdRecord>>,
    measure_from: Instant,
    end: Instant,
    /// Operations completed (measured or not), for the progress line.
    completed: AtomicU64,
    /// Measured operations completed, against `settings.ops`.
    measured: AtomicU64,
    /// Sequence for fresh put seeds.
    next_put: AtomicU64,
}

impl Shared {
    fn done(&self) -> bool {
        Instant::now() >= self.end
            || self
                .settings
                .ops
                .is_some_and(|ops| self.measured.load(Ordering::Relaxed) >= ops)
    }

    fn fresh_seed(&self) -> u64 {
        let n = self.next_put.fetch_add(1, Ordering::Relaxed);
        self.settings.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ n
    }

    /// Issues one operation; records it when it ends in the measured part.
    async fn one(
        &self,
        rng: &mut rand::rngs::SmallRng,
        recorder: &mut Recorder,
        intended: Option<Instant>,
    ) {
        let sent = Instant::now();
        let intended = intended.unwrap_or(sent);
        let (kind, result) = match &self.settings.workload {
            Workload::Put => (OpKind::Put, self.put(rng).await),
            Workload::Get => (OpKind::Get, self.get(rng, recorder).await),
            Workload::Mixed { read_ratio } => {
                if rng.random_bool(*read_ratio) {
                    (OpKind::Get, self.get(rng, recorder).await)
                } else {
                    (OpKind::Put, self.put(rng).await)
                }
            }
            Workload::BatchGet { batch } => (
                OpKind::BatchGet,
                self.batch_get(rng, *batch, recorder).await,
            ),
            Workload::Replay { objects } => {
                let index = self.next_put.fetch_add(1, Ordering::Relaxed) as usize % objects.len();
                let (kind, content) = &objects[index];
                (OpKind::Put, self.store(*kind, content.clone()).await)
            }
        };
        let done = Instant::now();
        self.completed.fetch_add(1, Ordering::Relaxed);
        if intended < self.measure_from {
            return;
        }
        self.measured.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(bytes) => recorder.ok(kind, corrected_latency(intended, sent, done), bytes),
            Err(err) => {
                if matches!(err, ClientError::Corrupt { .. }) {
                    recorder.data_error(format!("{}: {err}", kind.name()));
                }
                recorder.error(kind, error_label(&err));
            }
        }
    }

    async fn store(&self, kind: ObjectKind, content: Vec<u8>) -> Result<u64, ClientError> {
        let len = content.len() as u64;
        let receipt = self.client.put(kind, content).await?;
        if let Some(record) = &self.record {
            record.note(&receipt.id);
        }
        Ok(len)
    }

    async fn put(&self, rng: &mut rand::rngs::SmallRng) -> Result<u64, ClientError> {
        let (_, kind, content) = object(
            self.fresh_seed(),
            self.settings.size.sample(rng),
            self.settings.content,
        );
        self.store(kind, content).await
    }

    fn pick(&self, rng: &mut rand::rngs::SmallRng) -> Key {
        let index = self.picker.as_ref().map_or(0, |picker| picker.pick(rng));
        self.keys[index]
    }

    /// Checks what a read returned: an acknowledged object must be there,
    /// and with `--verify` byte for byte what was written.
    fn check(&self, key: &Key, got: Result<&[u8], &ClientError>, recorder: &mut Recorder) {
        match got {
            Ok(content) => {
                if self.settings.verify
                    && content
                        != object(key.seed, key.len, self.settings.content)
                            .2
                            .as_slice()
                {
                    recorder
                        .data_error(format!("{}: content differs from what was written", key.id));
                }
            }
            Err(ClientError::NotFound { .. }) => {
                recorder.data_error(format!("{}: acknowledged, now not found", key.id));
            }
            Err(_) => {}
        }
    }

    async fn get(
        &self,
        rng: &mut rand::rngs::SmallRng,
        recorder: &mut Recorder,
    ) -> Result<u64, ClientError> {
        let key = self.pick(rng);
        let result = self.client.get(key.id).await;
        self.check(
            &key,
            result.as_ref().map(|object| object.content.as_ref()),
            recorder,
        );
        result.map(|object| object.content.len() as u64)
    }

    async fn batch_get(
        &self,
        rng: &mut rand::rngs::SmallRng,
        batch: usize,
        recorder: &mut Recorder,
    ) -> Result<u64, ClientError> {
        let keys: Vec<Key> = (0..batch).map(|_| self.pick(rng)).collect();
        let by_id: std::collections::HashMap<ObjectId, Key> =
            keys.iter().map(|key| (key.id, *key)).collect();
        let mut stream = self.client.get_many(by_id.keys().copied());
        let (mut bytes, mut first_error) = (0u64, None);
        while let Some((id, result)) = stream.next().await {
            if let Some(key) = by_id.get(&id) {
                self.check(
                    key,
                    result.as_ref().map(|object| object.content.as_ref()),
                    recorder,
                );
            }
            match result {
                Ok(object) => bytes += object.content.len() as u64,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(bytes),
        }
    }
}

/// Stores `keys` objects for reads to pick from (not measured).
async fn preload(
    client: &Client,
    settings: &Settings,
    record: Option<&IdRecord>,
) -> Result<Vec<Key>, String> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(settings.seed);
    let plan: Vec<(u64, usize)> = (0..settings.keys as u64)
        .map(|index| {
            (
                settings
                    .seed
                    .wrapping_add(index)
                    .wrapping_mul(0x2545_F491_4F6C_DD1D),
                settings.size.sample(&mut rng),
            )
        })
        .collect();
    let mut keys = Vec::with_capacity(plan.len());
    for chunk in plan.chunks(settings.concurrency.max(1)) {
        let puts = chunk.iter().map(|(seed, len)| {
            let (seed, len) = (*seed, *len);
            let client = client.clone();
            let mode = settings.content;
            tokio::spawn(async move {
                let (id, kind, content) = object(seed, len, mode);
                client
                    .put(kind, content)
                    .await
                    .map(|_| Key { id, seed, len })
            })
        });
        let puts: Vec<_> = puts.collect();
        for put in puts {
            let key = put
                .await
                .map_err(|err| format!("preload task failed: {err}"))?
                .map_err(|err| format!("preloading keys failed: {err}"))?;
            if let Some(record) = record {
                record.note(&key.id);
            }
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Runs `settings` against `client`; the report covers the measured part.
pub async fn run(
    client: Client,
    settings: Settings,
    record: Option<Arc<IdRecord>>,
) -> Result<Report, String> {
    let keys = if settings.workload.reads() {
        if settings.keys == 0 {
            return Err("--keys must be at least 1 for a workload that reads".into());
        }
        preload(&client, &settings, record.as_deref()).await?
    } else {
        Vec::new()
    };
    let picker = if keys.is_empty() {
        None
    } else {
        Some(KeyPicker::new(keys.len(), &settings.popularity)?)
    };
    let traffic_before = client.traffic();
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let shared = Arc::new(Shared {
        client,
        keys,
        picker,
        record,
        measure_from,
        end: measure_from + settings.duration,
        completed: AtomicU64::new(0),
        measured: AtomicU64::new(0),
        next_put: AtomicU64::new(0),
        settings,
    });
    let bar = progress(&shared);
    let recorder = match shared.settings.rate {
        None => closed_loop(&shared).await,
        Some(rate) => open_loop(&shared, Schedule::new(start, rate)).await,
    };
    let measured = Instant::now().saturating_duration_since(measure_from);
    if let Some(bar) = bar {
        // It clears its line and ends once the run is done.
        let _ = bar.await;
    }
    let traffic = traffic_between(traffic_before, shared.client.traffic());
    Ok(Report {
        measured,
        recorder,
        traffic,
    })
}

async fn closed_loop(shared: &Arc<Shared>) -> Recorder {
    let workers: Vec<_> = (0..shared.settings.concurrency.max(1))
        .map(|worker| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(
                    shared.settings.seed ^ (worker as u64 + 1) << 32,
                );
                let mut recorder = Recorder::default();
                while !shared.done() {
                    shared.one(&mut rng, &mut recorder, None).await;
                }
                recorder
            })
        })
        .collect();
    let mut total = Recorder::default();
    for worker in workers {
        if let Ok(recorder) = worker.await {
            total.merge(recorder);
        }
    }
    total
}

async fn open_loop(shared: &Arc<Shared>, schedule: Schedule) -> Recorder {
    let slots = Arc::new(tokio::sync::Semaphore::new(
        shared.settings.concurrency.max(1),
    ));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Recorder>();
    let mut index = 0u64;
    let mut total = Recorder::default();
    while !shared.done() {
        let intended = schedule.intended(index);
        tokio::time::sleep_until(intended.into()).await;
        // At the outstanding limit the generator waits here; the wait is
        // charged to this operation (measured from `intended`).
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let shared = Arc::clone(shared);
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut rng =
                rand::rngs::SmallRng::seed_from_u64(shared.settings.seed ^ index.rotate_left(29));
            let mut recorder = Recorder::default();
            shared.one(&mut rng, &mut recorder, Some(intended)).await;
            let _ = done_tx.send(recorder);
        });
        index += 1;
        while let Ok(recorder) = done_rx.try_recv() {
            total.merge(recorder);
        }
    }
    drop(done_tx);
    while let Some(recorder) = done_rx.recv().await {
        total.merge(recorder);
    }
    total
}

/// The live progress line (current rate), on stderr.
fn progress(shared: &Arc<Shared>) -> Option<tokio::task::JoinHandle<()>> {
    if !shared.settings.progress {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
        bar.set_style(style);
    }
    let shared = Arc::clone(shared);
    Some(tokio::spawn(async move {
        let mut last = (Instant::now(), 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let completed = shared.completed.load(Ordering::Relaxed);
            let rate =
                (completed - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
            last = (now, completed);
            let phase = if now < shared.measure_from {
                "warm-up"
            } else {
                "measuring"
            };
            bar.set_message(format!("{phase}: {completed} ops, {rate:.0} ops/s now"));
            bar.tick();
            if shared.done() {
                bar.finish_and_clear();
                return;
            }
        }
    }))
}

/// Reads back every id in `ids` (with failover, or from `direct_node`
/// only); every missing or damaged one is a data error.
pub async fn verify(
    client: Client,
    ids: Vec<ObjectId>,
    direct_node: Option<u32>,
    concurrency: usize,
    progress: bool,
) -> Report {
    let started = Instant::now();
    let traffic_before = client.traffic();
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let bar = if progress {
        let bar = ProgressBar::new(ids.len() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} verifying [{bar:30}] {pos}/{len} {per_sec}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Some(bar)
    } else {
        None
    };
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (client, ids, next, bar) = (
                client.clone(),
                Arc::clone(&ids),
                Arc::clone(&next),
                bar.clone(),
            );
            tokio::spawn(async move {
                let mut recorder = Recorder::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(id) = ids.get(index).copied() else {
                        return recorder;
                    };
                    let sent = Instant::now();
                    let result = match direct_node {
                        Some(node) => client.get_from(node, id).await,
                        None => client.get(id).await,
                    };
                    match result {
                        Ok(object) => {
                            recorder.ok(OpKind::Verify, sent.elapsed(), object.content.len() as u64)
                        }
                        Err(err) => {
                            recorder.error(OpKind::Verify, error_label(&err));
                            recorder.data_error(format!("{id}: {err}"));
                        }
                    }
                    if let Some(bar) = &bar {
                        bar.inc(1);
                    }
                }
            })
        })
        .collect();
    let mut total = Recorder::default();
    for worker in workers {
        if let Ok(recorder) = worker.await {
            total.merge(recorder);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Report {
        measured: started.elapsed(),
        recorder: total,
        traffic: traffic_between(traffic_before, client.traffic()),
    }
}
