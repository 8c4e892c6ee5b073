//! The disk model: one machine's storage, with durability made explicit,
//! and the storage faults. The simulator keeps one per machine in memory;
//! an agent keeps one in front of its files (`distzero_real::agent::disk`),
//! so both modes give nodes the same semantics.
//!
//! # Semantics
//!
//! A machine's disk holds *values* (a key-value face: `write`, `remove`)
//! and *logs* (append-only record lists: `append`, `truncate`). Every
//! change is *written* at once (later reads see it) but *durable* only
//! after [`DiskModel::sync`]. A crash keeps what was synced and treats the
//! unsynced changes as [`CrashLoss`] says: all lost (the default, a power
//! cut with nothing flushed), a random prefix kept (the page cache flushed
//! part of them, in order), or a prefix kept with its last change torn (a
//! log record cut short). A value is replaced whole (as a file written
//! beside and renamed over the old one, which is what the agent does): a
//! crash leaves the old or the new value, never a torn one; log records
//! are appended in place, and can tear. The model keeps the current state plus an
//! undo entry per unsynced change, so a crash rolls back without a second
//! copy of the disk.
//!
//! # Faults ([`DiskFault`])
//!
//! Seeded by the disk's own rng (drawn from the run's seed and the machine,
//! so nodes' draws do not move when a fault is added): flip a bit in a
//! stored block or in a share of reads, fail a share of writes and syncs
//! with an I/O error, refuse writes for want of space, make each sync take
//! time (the machine stalls), and the crash loss above.
//!
//! # Bounds
//!
//! At most [`MAX_UNSYNCED`] unsynced changes (past it a write fails with an
//! error that says to sync) and [`MAX_DISK_BYTES`] stored bytes per machine
//! (past it: no space).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Error as IoError, ErrorKind};
use std::time::Duration;

/// Most unsynced changes a machine's disk holds.
pub const MAX_UNSYNCED: usize = 100_000;
/// Most bytes a machine's disk stores (values and log records).
pub const MAX_DISK_BYTES: u64 = 1 << 30;
/// Longest a [`DiskFault::Slow`] sync may take.
pub const MAX_SLOW_SYNC: Duration = Duration::from_secs(2);

/// What a crash does to the changes not synced yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CrashLoss {
    /// All of them are lost.
    #[default]
    LoseUnsynced,
    /// A random prefix of them survives (possibly none, possibly all).
    KeepPrefix,
    /// A random non-empty prefix survives, its last change torn if it was
    /// a log append (values are replaced whole, never torn): a
    /// an appended record cut short at a random length.
    TearLast,
}

/// A storage fault on one machine's disk, set by a test or a nemesis with
/// [`crate::Cluster::disk_fault`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskFault {
    /// How this machine's crashes treat unsynced changes from now on.
    OnCrash(CrashLoss),
    /// Flip one bit in one stored value or log record (drawn): the damage
    /// stays until that block is written again.
    Corrupt,
    /// Flip one bit in `pct` percent of reads (the stored data stays right).
    CorruptReads { pct: u8 },
    /// Fail `pct` percent of writes, appends and syncs with an I/O error.
    Errors { pct: u8 },
    /// No space left: every write and append fails.
    Full,
    /// Every sync takes `ms` milliseconds, during which the machine does
    /// nothing else (at most [`MAX_SLOW_SYNC`]).
    Slow { ms: u64 },
    /// A healthy disk again: undoes every fault but `Corrupt` (damage to
    /// stored data stays) and resets the crash loss to the default.
    Reset,
}

impl DiskFault {
    /// Check the fault's numbers; the error names the bound.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            DiskFault::CorruptReads { pct } | DiskFault::Errors { pct } if *pct > 100 => Err(
                format!("{self:?}: pct is a percentage, 0 to 100 (got {pct})"),
            ),
            DiskFault::Slow { ms } if Duration::from_millis(*ms) > MAX_SLOW_SYNC => Err(format!(
                "{self:?}: a slow sync takes at most {} ms",
                MAX_SLOW_SYNC.as_millis()
            )),
            _ => Ok(()),
        }
    }
}

/// The faults in force on one disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Faults {
    on_crash: CrashLoss,
    corrupt_reads_pct: u8,
    errors_pct: u8,
    full: bool,
    slow_ms: u64,
}

/// One unsynced change and what it replaced.
#[derive(Clone, Debug)]
enum Undo {
    /// A value was written or removed; `old` is what the key held.
    Value { key: String, old: Option<Vec<u8>> },
    /// Record `index` was appended to `log` (`created`: the log did not exist).
    Append {
        log: String,
        index: usize,
        created: bool,
    },
    /// `log` was cut to its first `len` records; `removed` were after them.
    Truncate {
        log: String,
        len: usize,
        removed: Vec<Vec<u8>>,
    },
}

/// The values and logs that changed since the last sync: what a file-backed
/// disk must write out on sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unsynced {
    pub values: BTreeSet<String>,
    /// Per log, the lowest record index that changed (appended or cut).
    pub logs: BTreeMap<String, usize>,
}

/// The block a [`DiskFault::Corrupt`] flipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damaged {
    Value(String),
    /// A log and the record's index in it.
    Record(String, usize),
}

/// One machine's disk. See the module's documentation.
#[derive(Clone, Debug)]
pub struct DiskModel {
    values: BTreeMap<String, Vec<u8>>,
    logs: BTreeMap<String, Vec<Vec<u8>>>,
    undo: Vec<Undo>,
    bytes: u64,
    faults: Faults,
    rng: ChaCha8Rng,
    /// The seed `rng` was made from ([`DiskModel::rekey`]).
    seed: u64,
}

/// The keys of `map` that start with `prefix`, sorted.
fn with_prefix<V>(map: &BTreeMap<String, V>, prefix: &str) -> Vec<String> {
    map.range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Errors say what failed; the caller names the operation.
fn io_error() -> IoError {
    IoError::other("I/O error (an injected disk fault)")
}

fn no_space() -> IoError {
    IoError::new(
        ErrorKind::StorageFull,
        format!(
            "no space left on the disk (an injected disk fault, or the {MAX_DISK_BYTES}-byte bound)"
        ),
    )
}

impl DiskModel {
    /// An empty disk whose faults draw from `seed`.
    pub fn new(seed: u64) -> DiskModel {
        DiskModel {
            values: BTreeMap::new(),
            logs: BTreeMap::new(),
            undo: Vec::new(),
            bytes: 0,
            faults: Faults::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
        }
    }

    /// Draw from now on from a stream keyed by the disk's seed and `key`
    /// (the simulator passes the virtual time of a fault or a crash): what
    /// a fault does then depends on when it comes, not on what faults came
    /// before it, so removing one while shrinking leaves the others' draws
    /// (the block a `Corrupt` flips, the prefix a power loss keeps) alone.
    pub fn rekey(&mut self, key: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(crate::net::mix64(self.seed ^ crate::net::mix64(key)));
    }

    /// A disk holding `values` and `logs`, all durable (an agent's files).
    pub fn load(
        seed: u64,
        values: BTreeMap<String, Vec<u8>>,
        logs: BTreeMap<String, Vec<Vec<u8>>>,
    ) -> DiskModel {
        let bytes = values.values().map(|v| v.len() as u64).sum::<u64>()
            + logs
                .values()
                .flat_map(|l| l.iter())
                .map(|r| r.len() as u64)
                .sum::<u64>();
        DiskModel {
            values,
            logs,
            bytes,
            ..DiskModel::new(seed)
        }
    }

    fn maybe_corrupt(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        let pct = self.faults.corrupt_reads_pct;
        if pct > 0 && !bytes.is_empty() && self.rng.gen_range(0..100u8) < pct {
            let bit = self.rng.gen_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        bytes
    }

    /// Fail a write as the faults and bounds say, before it changes anything.
    fn check_write(&mut self, adds: usize) -> std::io::Result<()> {
        if self.undo.len() >= MAX_UNSYNCED {
            return Err(IoError::other(format!(
                "{MAX_UNSYNCED} changes are waiting for a sync; sync the disk more often"
            )));
        }
        // Removing and truncating need no space.
        if (self.faults.full && adds > 0) || self.bytes + adds as u64 > MAX_DISK_BYTES {
            return Err(no_space());
        }
        let pct = self.faults.errors_pct;
        if pct > 0 && self.rng.gen_range(0..100u8) < pct {
            return Err(io_error());
        }
        Ok(())
    }

    pub fn read(&mut self, key: &str) -> Option<Vec<u8>> {
        let v = self.values.get(key)?.clone();
        Some(self.maybe_corrupt(v))
    }

    pub fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        self.check_write(value.len())?;
        let old = self.values.insert(key.to_string(), value.to_vec());
        self.bytes += value.len() as u64;
        self.bytes -= old.as_ref().map_or(0, |o| o.len() as u64);
        self.undo.push(Undo::Value {
            key: key.to_string(),
            old,
        });
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> std::io::Result<()> {
        if !self.values.contains_key(key) {
            return Ok(());
        }
        self.check_write(0)?;
        let old = self.values.remove(key);
        self.bytes -= old.as_ref().map_or(0, |o| o.len() as u64);
        self.undo.push(Undo::Value {
            key: key.to_string(),
            old,
        });
        Ok(())
    }

    /// Keys of values that start with `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        with_prefix(&self.values, prefix)
    }

    /// Append a record to `log` (created if missing); its index.
    pub fn append(&mut self, log: &str, record: &[u8]) -> std::io::Result<u64> {
        self.check_write(record.len())?;
        let created = !self.logs.contains_key(log);
        let records = self.logs.entry(log.to_string()).or_default();
        records.push(record.to_vec());
        let index = records.len() as u64 - 1;
        self.bytes += record.len() as u64;
        self.undo.push(Undo::Append {
            log: log.to_string(),
            index: index as usize,
            created,
        });
        Ok(index)
    }

    /// Records in `log`.
    pub fn log_len(&self, log: &str) -> u64 {
        self.logs.get(log).map_or(0, |l| l.len() as u64)
    }

    /// Record `index` of `log`.
    pub fn read_record(&mut self, log: &str, index: u64) -> Option<Vec<u8>> {
        let r = self
            .logs
            .get(log)?
            .get(usize::try_from(index).ok()?)?
            .clone();
        Some(self.maybe_corrupt(r))
    }

    /// Keep the first `len` records of `log`.
    pub fn truncate(&mut self, log: &str, len: u64) -> std::io::Result<()> {
        if self.log_len(log) <= len {
            return Ok(());
        }
        self.check_write(0)?;
        let records = self.logs.get_mut(log).expect("log checked above");
        let removed = records.split_off(len as usize);
        self.bytes -= removed.iter().map(|r| r.len() as u64).sum::<u64>();
        self.undo.push(Undo::Truncate {
            log: log.to_string(),
            len: len as usize,
            removed,
        });
        Ok(())
    }

    /// Names of the logs that start with `prefix`, sorted.
    pub fn logs(&self, prefix: &str) -> Vec<String> {
        with_prefix(&self.logs, prefix)
    }

    /// What changed since the last sync (for a file-backed disk).
    pub fn unsynced(&self) -> Unsynced {
        let mut u = Unsynced::default();
        for change in &self.undo {
            match change {
                Undo::Value { key, .. } => {
                    u.values.insert(key.clone());
                }
                Undo::Append { log, index, .. } => {
                    let at = u.logs.entry(log.clone()).or_insert(usize::MAX);
                    *at = (*at).min(*index);
                }
                Undo::Truncate { log, len, .. } => {
                    let at = u.logs.entry(log.clone()).or_insert(usize::MAX);
                    *at = (*at).min(*len);
                }
            }
        }
        u
    }

    /// Whether any change waits for a sync.
    pub fn dirty(&self) -> bool {
        !self.undo.is_empty()
    }

    /// The current value of `key` and records of `log`, uncorrupted (what a
    /// file-backed disk writes out).
    pub fn stored_value(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
    }
    pub fn stored_log(&self, log: &str) -> &[Vec<u8>] {
        self.logs.get(log).map_or(&[], Vec::as_slice)
    }

    /// Check a sync against the faults: the error, or how long it takes.
    /// The caller makes the changes durable (a file-backed disk writes its
    /// files) and then calls [`DiskModel::synced`].
    pub fn begin_sync(&mut self) -> std::io::Result<Duration> {
        if self.undo.is_empty() {
            return Ok(Duration::ZERO);
        }
        let pct = self.faults.errors_pct;
        if pct > 0 && self.rng.gen_range(0..100u8) < pct {
            // The changes stay unsynced: a crash may still lose them.
            return Err(io_error());
        }
        Ok(Duration::from_millis(self.faults.slow_ms))
    }

    /// Every change so far is durable.
    pub fn synced(&mut self) {
        self.undo.clear();
    }

    /// [`DiskModel::begin_sync`] then [`DiskModel::synced`]: the simulator's sync.
    pub fn sync(&mut self) -> std::io::Result<Duration> {
        let took = self.begin_sync()?;
        self.synced();
        Ok(took)
    }

    /// Undo the last unsynced change.
    fn undo_last(&mut self) {
        match self.undo.pop() {
            Some(Undo::Value { key, old }) => {
                let new = match old {
                    Some(v) => {
                        self.bytes += v.len() as u64;
                        self.values.insert(key, v)
                    }
                    None => self.values.remove(&key),
                };
                self.bytes -= new.map_or(0, |n| n.len() as u64);
            }
            Some(Undo::Append { log, created, .. }) => {
                let records = self.logs.get_mut(&log).expect("an appended log exists");
                let r = records.pop().expect("an appended record exists");
                self.bytes -= r.len() as u64;
                if created {
                    debug_assert!(records.is_empty());
                    self.logs.remove(&log);
                }
            }
            Some(Undo::Truncate { log, removed, .. }) => {
                self.bytes += removed.iter().map(|r| r.len() as u64).sum::<u64>();
                self.logs.entry(log).or_default().extend(removed);
            }
            None => {}
        }
    }

    /// Cut the last kept change short (a torn write), if it appended a
    /// non-empty record. A value is replaced whole: never torn.
    fn tear_last(&mut self) {
        let Some(Undo::Append { log, index, .. }) = self.undo.last() else {
            return;
        };
        let record = &mut self.logs.get_mut(log).expect("an appended log exists")[*index];
        if record.is_empty() {
            return;
        }
        let len = record.len();
        let keep = self.rng.gen_range(0..len);
        record.truncate(keep);
        self.bytes -= (len - keep) as u64;
    }

    /// The machine crashed: unsynced changes go as the crash loss in force
    /// says. Returns how many changes were kept (for the log).
    pub fn crash(&mut self) -> usize {
        let n = self.undo.len();
        let keep = match self.faults.on_crash {
            CrashLoss::LoseUnsynced => 0,
            CrashLoss::KeepPrefix => self.rng.gen_range(0..=n),
            CrashLoss::TearLast if n == 0 => 0,
            CrashLoss::TearLast => self.rng.gen_range(1..=n),
        };
        while self.undo.len() > keep {
            self.undo_last();
        }
        if self.faults.on_crash == CrashLoss::TearLast && keep > 0 {
            self.tear_last();
        }
        self.undo.clear();
        keep
    }

    /// Apply a fault (validated by the caller). A `Corrupt` says which
    /// block it flipped (a disk in front of files flips it there too).
    pub fn fault(&mut self, fault: &DiskFault) -> Option<Damaged> {
        match *fault {
            DiskFault::OnCrash(loss) => self.faults.on_crash = loss,
            DiskFault::Corrupt => return self.corrupt_stored(),
            DiskFault::CorruptReads { pct } => self.faults.corrupt_reads_pct = pct.min(100),
            DiskFault::Errors { pct } => self.faults.errors_pct = pct.min(100),
            DiskFault::Full => self.faults.full = true,
            DiskFault::Slow { ms } => {
                self.faults.slow_ms = ms.min(MAX_SLOW_SYNC.as_millis() as u64)
            }
            DiskFault::Reset => self.faults = Faults::default(),
        }
        None
    }

    /// Flip one bit of one stored value or record, drawn among all of them
    /// (in key order: deterministic). Nothing when the disk holds no bytes.
    fn corrupt_stored(&mut self) -> Option<Damaged> {
        let blocks: Vec<(bool, String, usize)> = self
            .values
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| (false, k.clone(), 0))
            .chain(self.logs.iter().flat_map(|(k, l)| {
                l.iter()
                    .enumerate()
                    .filter(|(_, r)| !r.is_empty())
                    .map(move |(i, _)| (true, k.clone(), i))
            }))
            .collect();
        if blocks.is_empty() {
            return None;
        }
        let (is_log, name, i) = blocks[self.rng.gen_range(0..blocks.len())].clone();
        let bytes = if is_log {
            &mut self.logs.get_mut(&name).expect("drawn log")[i]
        } else {
            self.values.get_mut(&name).expect("drawn value")
        };
        let bit = self.rng.gen_range(0..bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        tracing::info!(block = %name, record = is_log.then_some(i), "disk block corrupted");
        Some(if is_log {
            Damaged::Record(name, i)
        } else {
            Damaged::Value(name)
        })
    }

    /// The bytes of `log`'s record `index` as stored (damage included).
    pub fn stored_record(&self, log: &str, index: usize) -> Option<&[u8]> {
        self.logs.get(log)?.get(index).map(Vec::as_slice)
    }

    /// Stored bytes (values and records).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> DiskModel {
        DiskModel::new(7)
    }

    /// The values of `d` that now read differently from what was written.
    fn flipped(d: &mut DiskModel, n: usize) -> Vec<usize> {
        (0..n)
            .filter(|i| d.read(&format!("k{i}")) != Some(format!("value {i}").into_bytes()))
            .collect()
    }

    #[test]
    fn a_fault_draws_by_its_time_not_by_the_faults_before_it() {
        let fill = || {
            let mut d = disk();
            for i in 0..50 {
                d.write(&format!("k{i}"), format!("value {i}").as_bytes())
                    .unwrap();
            }
            d.sync().unwrap();
            d
        };
        // Alone, a Corrupt at time 200 flips one value.
        let mut alone = fill();
        alone.rekey(200);
        alone.fault(&DiskFault::Corrupt);
        let hit = flipped(&mut alone, 50);
        assert_eq!(hit.len(), 1);
        // After another Corrupt (at 100) it flips the same one.
        let mut after = fill();
        after.rekey(100);
        after.fault(&DiskFault::Corrupt);
        let first = flipped(&mut after, 50);
        after.rekey(200);
        after.fault(&DiskFault::Corrupt);
        let both = flipped(&mut after, 50);
        assert!(both.contains(&hit[0]), "{both:?} misses {hit:?}");
        assert!(both.iter().all(|i| first.contains(i) || hit.contains(i)));
        // At another time, it would draw anew (the key matters).
        let picks: std::collections::BTreeSet<usize> = (0..20u64)
            .map(|t| {
                let mut d = fill();
                d.rekey(t);
                d.fault(&DiskFault::Corrupt);
                flipped(&mut d, 50)[0]
            })
            .collect();
        assert!(picks.len() > 5, "{picks:?}");
    }

    #[test]
    fn a_crash_loses_what_was_not_synced() {
        let mut d = disk();
        d.write("a", b"1").unwrap();
        d.append("wal", b"x").unwrap();
        d.sync().unwrap();
        d.write("a", b"2").unwrap();
        d.write("b", b"3").unwrap();
        d.append("wal", b"y").unwrap();
        d.truncate("wal", 0).unwrap();
        assert_eq!(d.read("a").unwrap(), b"2");
        assert_eq!(d.log_len("wal"), 0);
        assert_eq!(d.crash(), 0);
        assert_eq!(d.read("a").unwrap(), b"1");
        assert_eq!(d.read("b"), None);
        assert_eq!(d.log_len("wal"), 1);
        assert_eq!(d.read_record("wal", 0).unwrap(), b"x");
        assert_eq!(d.bytes(), 2);
        assert!(!d.dirty());
    }

    #[test]
    fn a_log_created_since_the_sync_is_gone_after_a_crash() {
        let mut d = disk();
        d.append("new", b"r").unwrap();
        d.crash();
        assert_eq!(d.logs(""), Vec::<String>::new());
        assert_eq!(d.bytes(), 0);
    }

    #[test]
    fn keep_prefix_keeps_changes_in_order() {
        for seed in 0..50 {
            let mut d = DiskModel::new(seed);
            d.fault(&DiskFault::OnCrash(CrashLoss::KeepPrefix));
            for i in 0..5u8 {
                d.append("wal", &[i]).unwrap();
            }
            let kept = d.crash();
            assert_eq!(d.log_len("wal"), kept as u64);
            for i in 0..kept {
                assert_eq!(d.read_record("wal", i as u64).unwrap(), vec![i as u8]);
            }
        }
    }

    #[test]
    fn tear_last_cuts_the_last_kept_record_short() {
        let mut torn = 0;
        for seed in 0..50 {
            let mut d = DiskModel::new(seed);
            d.fault(&DiskFault::OnCrash(CrashLoss::TearLast));
            for _ in 0..3 {
                d.append("wal", b"abcdefgh").unwrap();
            }
            let kept = d.crash();
            assert!((1..=3).contains(&kept));
            assert_eq!(d.log_len("wal"), kept as u64);
            let last = d.read_record("wal", kept as u64 - 1).unwrap();
            assert!(last.len() < 8, "the last kept record is torn");
            torn += 1;
            for i in 0..kept as u64 - 1 {
                assert_eq!(d.read_record("wal", i).unwrap(), b"abcdefgh");
            }
        }
        assert_eq!(torn, 50);
    }

    #[test]
    fn a_value_is_never_torn() {
        for seed in 0..50 {
            let mut d = DiskModel::new(seed);
            d.write("k", b"old").unwrap();
            d.sync().unwrap();
            d.fault(&DiskFault::OnCrash(CrashLoss::TearLast));
            d.write("k", b"newer value").unwrap();
            d.crash();
            let v = d.read("k").unwrap();
            assert!(v == b"old" || v == b"newer value", "{v:?}");
        }
    }

    #[test]
    fn faults_fail_writes_and_flip_bits() {
        let mut d = disk();
        d.write("k", b"value").unwrap();
        d.fault(&DiskFault::Full);
        let e = d.write("k", b"other").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert_eq!(
            d.read("k").unwrap(),
            b"value",
            "a failed write changes nothing"
        );
        d.fault(&DiskFault::Reset);
        d.fault(&DiskFault::Errors { pct: 100 });
        assert!(d.append("wal", b"r").is_err());
        assert!(d.sync().is_err());
        assert!(d.dirty(), "a failed sync leaves the changes unsynced");
        d.fault(&DiskFault::Reset);
        d.fault(&DiskFault::CorruptReads { pct: 100 });
        assert_ne!(d.read("k").unwrap(), b"value");
        d.fault(&DiskFault::Reset);
        assert_eq!(
            d.read("k").unwrap(),
            b"value",
            "corrupt reads leave data intact"
        );
        d.fault(&DiskFault::Corrupt);
        assert_ne!(
            d.read("k").unwrap(),
            b"value",
            "the one stored block is damaged"
        );
        d.fault(&DiskFault::Slow { ms: 30 });
        d.write("k", b"x").unwrap();
        assert_eq!(d.sync().unwrap(), Duration::from_millis(30));
    }

    #[test]
    fn unsynced_names_what_changed() {
        let mut d = disk();
        d.append("wal", b"a").unwrap();
        d.append("wal", b"b").unwrap();
        d.sync().unwrap();
        d.append("wal", b"c").unwrap();
        d.append("wal", b"d").unwrap();
        d.write("v", b"1").unwrap();
        let u = d.unsynced();
        assert_eq!(u.values.into_iter().collect::<Vec<_>>(), vec!["v"]);
        assert_eq!(u.logs.get("wal"), Some(&2));
        d.truncate("wal", 1).unwrap();
        assert_eq!(d.unsynced().logs.get("wal"), Some(&1));
    }

    #[test]
    fn bounds_are_named() {
        let mut d = disk();
        for i in 0..MAX_UNSYNCED {
            d.write(&format!("k{}", i % 10), b"").unwrap();
        }
        let e = d.write("k", b"").unwrap_err();
        assert!(e.to_string().contains("sync the disk more often"), "{e}");
        assert!(DiskFault::Errors { pct: 101 }.validate().is_err());
        assert!(DiskFault::Slow { ms: 10_000 }.validate().is_err());
    }
}
