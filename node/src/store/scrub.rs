//! Scrub: re-reads every live record at a bounded rate and checks it as a
//! read would (header, CRC-32, SHA-256 against the id stored in the record).
//!
//! Damage confirmed by a second read of the same bytes is unindexed: the
//! bytes stay on disk (nothing is deleted), but the object no longer counts
//! as stored, so a later put, or read repair from a replica, writes a fresh
//! copy instead of being deduplicated against a broken one. Damage seen once
//! and not on the re-read, or re-read as different bytes (a transient
//! misdirected or short read), is only reported.

use std::time::Duration;

use stratum_wire::ObjectId;

use super::error::{Corruption, Result};
use super::fs::StoreFs;
use super::index::{key_of, Location};
use super::record::{self, RecordHeader};
use super::Shared;

/// One damaged record found by a scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubFinding {
    pub segment: u16,
    pub offset: u64,
    /// The id the record claims, when its header was readable.
    pub id: Option<ObjectId>,
    pub corruption: Corruption,
    /// Confirmed by a second read and removed from the index.
    pub unindexed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ScrubReport {
    pub records_checked: u64,
    pub bytes_checked: u64,
    pub findings: Vec<ScrubFinding>,
    /// Records that could not be read at all (I/O errors).
    pub read_errors: u64,
    pub elapsed: Duration,
}

/// What a check of one record read: intact (its id), or damaged (the id
/// its header claims, if readable, and how).
type Verdict = std::result::Result<ObjectId, (Option<ObjectId>, Corruption)>;

/// Checks one record. Also returns a fingerprint of the bytes read, so a
/// second read can tell damage on the media (the same bytes again) from a
/// read that went wrong (different bytes).
async fn check<F: StoreFs>(
    shared: &Shared<F>,
    key: u64,
    location: Location,
) -> Result<(Verdict, u64)> {
    let bytes = shared.read_bytes(location, location.len as usize).await?;
    let bytes = bytes.as_ref();
    let fingerprint = (u64::from(crc32fast::hash(bytes)) << 32) | bytes.len() as u64;
    let claimed = RecordHeader::parse(bytes).ok().map(|header| header.id);
    let dictionaries = std::rc::Rc::clone(&shared.dictionaries.borrow().dictionaries);
    let verdict = match record::check_object(bytes, &dictionaries) {
        Ok((header, _, _)) if key_of(&header.id) == key => Ok(header.id),
        Ok((header, _, _)) => Err((Some(header.id), Corruption::KeyMismatch)),
        Err(corruption) => Err((claimed, corruption)),
    };
    Ok((verdict, fingerprint))
}

/// Reads the record at `location` again and, if it is still damaged on the
/// media, removes its index entry (and any cached copy) so the object can be
/// stored again (anti-entropy then fetches a good copy from a replica).
/// Returns whether it did. `seen` is the fingerprint of an earlier read
/// that found the damage (`None`: read once more first). Damage is acted on
/// only when two reads return the same bytes: a misdirected or short read
/// returns different bytes each time, and unindexing a good record would
/// lose it. Damage that looks like an I/O anomaly rather than bad media (a
/// read that returned fewer bytes than asked, or an intact record of another
/// object) is never acted on. A header whose length disagrees with the
/// index, in a read that returned every byte, is media damage.
pub(crate) async fn unindex_if_confirmed<F: StoreFs>(
    shared: &Shared<F>,
    key: u64,
    location: Location,
    id: Option<ObjectId>,
    seen: Option<u64>,
) -> bool {
    let seen = match seen {
        Some(seen) => seen,
        None => match check(shared, key, location).await {
            Ok((Err(_), fingerprint)) => fingerprint,
            Ok((Ok(_), _)) | Err(_) => return false,
        },
    };
    let media_damage = match check(shared, key, location).await {
        Ok((_, fingerprint)) if fingerprint != seen => false,
        // Every byte the index knows of the record was read, yet its header
        // asks for more: the length field itself is damaged, not the read.
        Ok((Err((_, Corruption::ShortRead { got, .. })), _)) => got >= location.len as usize,
        Ok((Err((_, Corruption::WrongObject { .. } | Corruption::KeyMismatch)), _)) => false,
        // The record may well be intact: this shard lost the dictionary it
        // needs (a damaged file), not the record. Never unindexed for that.
        Ok((Err((_, Corruption::Codec(stratum_wire::CodecError::UnknownDictionary(_)))), _)) => {
            false
        }
        Ok((Err(_), _)) => true,
        Ok((Ok(_), _)) | Err(_) => false,
    };
    if !media_damage || !shared.index.borrow_mut().remove(key, location) {
        return false;
    }
    if let Some(segment) = shared.segments.borrow_mut().get_mut(&location.segment) {
        segment.live_bytes = segment.live_bytes.saturating_sub(u64::from(location.len));
    }
    if let Some(id) = id {
        shared.cache.borrow_mut().remove(&id);
    }
    // No longer held: anti-entropy fetches a good copy from a replica. By
    // the index key, not the id the damaged header claims: that id may
    // itself be damaged.
    forget_unvouched(shared, key).await;
    tracing::error!(
        segment = location.segment,
        offset = location.offset,
        id = ?id,
        "damaged record unindexed; a re-put of the object stores a good copy"
    );
    true
}

/// After a record too damaged to name its object was unindexed: every id
/// held live under its index key that no remaining index entry vouches
/// for is forgotten. Else the holdings would list an object the shard can
/// no longer serve, and anti-entropy, which compares holdings, would never
/// fetch it again.
pub(crate) async fn forget_unvouched<F: StoreFs>(shared: &Shared<F>, key: u64) {
    let ids: Vec<ObjectId> = shared
        .holdings
        .borrow()
        .live()
        .filter(|id| key_of(id) == key)
        .copied()
        .collect();
    let remaining: Vec<Location> = shared.index.borrow().candidates(key).collect();
    for id in ids {
        let mut vouched = false;
        for location in &remaining {
            match shared.read_header(*location).await {
                Ok(header) if header.id != id => {}
                // Its record, or one that cannot be read now: kept (a
                // read error is not proof of loss).
                _ => {
                    vouched = true;
                    break;
                }
            }
        }
        if !vouched {
            shared.holdings.borrow_mut().forget(&id);
            tracing::warn!(%id, "a damaged record's object is no longer held; repair will fetch it");
        }
    }
}

/// Scrubs every record live when the scrub starts, reading at most
/// `bytes_per_second`.
pub(crate) async fn scrub<F: StoreFs>(
    shared: &Shared<F>,
    bytes_per_second: u64,
) -> Result<ScrubReport> {
    let started = crate::clock::now();
    let entries: Vec<(u64, Location)> = shared.index.borrow().iter().collect();
    let mut report = ScrubReport::default();
    for (key, location) in entries {
        // Skip entries removed or moved since the scrub started.
        if !shared
            .index
            .borrow()
            .candidates(key)
            .any(|found| found == location)
        {
            continue;
        }
        report.records_checked += 1;
        report.bytes_checked += u64::from(location.len);
        match check(shared, key, location).await {
            Ok((Ok(_), _)) => {}
            Ok((Err((id, corruption)), fingerprint)) => {
                let confirmed =
                    unindex_if_confirmed(shared, key, location, id, Some(fingerprint)).await;
                tracing::error!(
                    segment = location.segment,
                    offset = location.offset,
                    id = ?id,
                    %corruption,
                    unindexed = confirmed,
                    "scrub found a damaged record"
                );
                report.findings.push(ScrubFinding {
                    segment: location.segment,
                    offset: location.offset,
                    id,
                    corruption,
                    unindexed: confirmed,
                });
            }
            Err(err) => {
                tracing::warn!(segment = location.segment, offset = location.offset, error = %err, "scrub read failed");
                report.read_errors += 1;
            }
        }
        // Rate limit: stay at or under `bytes_per_second` on average.
        if bytes_per_second > 0 {
            let due =
                Duration::from_secs_f64(report.bytes_checked as f64 / bytes_per_second as f64);
            let elapsed = crate::clock::since(started);
            if due > elapsed {
                crate::clock::sleep(due - elapsed).await;
            }
        }
    }
    report.elapsed = crate::clock::since(started);
    let mut stats = shared.stats.borrow_mut();
    stats.scrubs += 1;
    stats.scrub_findings += report.findings.len() as u64;
    tracing::info!(
        records = report.records_checked,
        bytes = report.bytes_checked,
        findings = report.findings.len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "scrub finished"
    );
    Ok(report)
}
