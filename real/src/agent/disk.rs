//! An agent's disk: the simulator's disk model (`distzero_core::disk`) in
//! front of files under the machine's data dir, so nodes see the same
//! semantics in every mode.
//!
//! Changes live in the model (memory) until a sync, which writes them out
//! and fsyncs: values as one file per key (`v/<key>`, written to a
//! temporary file, fsynced, renamed over the old one), logs as one file of
//! length-prefixed records per log (`l/<name>`: appended and fsynced, or
//! rewritten the same way as a value when records were cut), then the
//! folders are fsynced. A killed agent loses what it held in memory: every
//! unsynced change, as after a power cut, although the process's page
//! cache would have kept them (the agent holds them itself for that). A
//! crash that keeps a prefix or tears the last change
//! (`CrashLoss::KeepPrefix`, `TearLast`) is simulation only: here every
//! unsynced change is lost. Injected faults (errors, no space, corrupt
//! reads and blocks, slow syncs: `sleep` in the agent's loop, which stalls
//! the machine as a blocking fsync does) come from the same model.

use distzero_core::context::DiskStore;
use distzero_core::disk::{Damaged, DiskFault, DiskModel};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Error as IoError, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct FileDisk {
    dir: PathBuf,
    model: DiskModel,
    /// Records of each log as its file holds them.
    on_file: BTreeMap<String, usize>,
}

/// Longest encoded file name (file systems stop at 255 bytes).
const MAX_NAME: usize = 200;
/// Largest log record read back from a file (a longer length is damage).
const MAX_RECORD: usize = 64 << 20;

fn encode_key(key: &str) -> std::io::Result<String> {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_NAME {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!(
                "disk key of {} bytes is too long; keep keys under ~60 bytes",
                key.len()
            ),
        ));
    }
    Ok(out)
}

fn decode_name(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The records of a log file; a cut-short last record (a write the
/// process did not finish) is dropped.
fn read_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > MAX_RECORD || rest.len() < 4 + len {
            break;
        }
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

fn frame(out: &mut Vec<u8>, record: &[u8]) {
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(record);
}

/// Files of `dir` that are not temporary, by decoded name.
fn entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue; // a temporary file of a write cut short
        }
        if let Some(key) = decode_name(name) {
            out.push((key, entry.path()));
        }
    }
    Ok(out)
}

/// Write `bytes` as `path` atomically and durably: temporary file, fsync, rename.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FileDisk {
    /// Open (create) the disk in `dir` and load what it holds; its faults
    /// draw from `seed`.
    pub fn open(dir: &Path, seed: u64) -> std::io::Result<FileDisk> {
        let mut values = BTreeMap::new();
        for (key, path) in entries(&dir.join("v"))? {
            values.insert(key, std::fs::read(path)?);
        }
        let mut logs = BTreeMap::new();
        let mut on_file = BTreeMap::new();
        for (name, path) in entries(&dir.join("l"))? {
            let records = read_records(&std::fs::read(path)?);
            on_file.insert(name.clone(), records.len());
            logs.insert(name, records);
        }
        Ok(FileDisk {
            dir: dir.to_path_buf(),
            model: DiskModel::load(seed, values, logs),
            on_file,
        })
    }

    /// Write every unsynced change out and fsync it; how long a slow disk
    /// made it take (the caller stalls that long).
    pub fn sync(&mut self) -> std::io::Result<Duration> {
        let took = self.model.begin_sync()?;
        if !self.model.dirty() {
            return Ok(took);
        }
        let unsynced = self.model.unsynced();
        let (vdir, ldir) = (self.dir.join("v"), self.dir.join("l"));
        for key in &unsynced.values {
            let path = vdir.join(encode_key(key)?);
            match self.model.stored_value(key) {
                Some(v) => replace(&path, v)?,
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                },
            }
        }
        for (log, &from) in &unsynced.logs {
            let path = ldir.join(encode_key(log)?);
            let records = self.model.stored_log(log);
            let on_file = self.on_file.get(log).copied().unwrap_or(0);
            let mut bytes = Vec::new();
            if from >= on_file && records.len() >= on_file {
                // Appends only: add the new records at the file's end.
                for r in &records[on_file..] {
                    frame(&mut bytes, r);
                }
                let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
            } else {
                for r in records {
                    frame(&mut bytes, r);
                }
                replace(&path, &bytes)?;
            }
            self.on_file.insert(log.clone(), records.len());
        }
        sync_dir(&vdir)?;
        sync_dir(&ldir)?;
        self.model.synced();
        Ok(took)
    }

    /// A fault injected by the controller. A flipped block that the files
    /// hold as the model does (synced, not changed since) is flipped in its
    /// file too, so the damage outlives a crash, as a damaged sector would;
    /// a flipped unsynced change goes out damaged with the next sync, or is
    /// lost with it.
    pub fn fault(&mut self, fault: &DiskFault) -> std::io::Result<()> {
        let Some(damaged) = self.model.fault(fault) else {
            return Ok(());
        };
        let unsynced = self.model.unsynced();
        match damaged {
            Damaged::Value(key) if !unsynced.values.contains(&key) => {
                if let Some(v) = self.model.stored_value(&key) {
                    let path = self.dir.join("v").join(encode_key(&key)?);
                    replace(&path, v)?;
                }
            }
            Damaged::Record(log, i) => {
                let on_file = self.on_file.get(&log).copied().unwrap_or(0);
                let first_changed = unsynced.logs.get(&log).copied().unwrap_or(usize::MAX);
                if i < on_file && i < first_changed {
                    let path = self.dir.join("l").join(encode_key(&log)?);
                    let mut records = read_records(&std::fs::read(&path)?);
                    if let (Some(r), Some(flipped)) =
                        (records.get_mut(i), self.model.stored_record(&log, i))
                    {
                        *r = flipped.to_vec();
                        let mut bytes = Vec::new();
                        for r in &records {
                            frame(&mut bytes, r);
                        }
                        replace(&path, &bytes)?;
                    }
                }
            }
            Damaged::Value(_) => {}
        }
        Ok(())
    }
}

impl DiskStore for FileDisk {
    fn read(&mut self, key: &str) -> Option<Vec<u8>> {
        self.model.read(key)
    }
    fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        encode_key(key)?;
        self.model.write(key, value)
    }
    fn remove(&mut self, key: &str) -> std::io::Result<()> {
        encode_key(key)?;
        self.model.remove(key)
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.model.keys(prefix)
    }
    fn append(&mut self, log: &str, record: &[u8]) -> std::io::Result<u64> {
        encode_key(log)?;
        self.model.append(log, record)
    }
    fn log_len(&self, log: &str) -> u64 {
        self.model.log_len(log)
    }
    fn read_record(&mut self, log: &str, index: u64) -> Option<Vec<u8>> {
        self.model.read_record(log, index)
    }
    fn truncate(&mut self, log: &str, len: u64) -> std::io::Result<()> {
        self.model.truncate(log, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("distzero-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn synced_values_survive_reopening_and_odd_keys_round_trip() {
        let dir = dir("values");
        let mut d = FileDisk::open(&dir, 1).unwrap();
        d.write("n0/a b%/é", b"1").unwrap();
        d.write("n0/x", b"2").unwrap();
        d.write("n1/x", b"3").unwrap();
        d.sync().unwrap();
        d.remove("n0/x").unwrap();
        d.remove("never").unwrap();
        d.sync().unwrap();
        d.write("n1/x", b"unsynced").unwrap();
        d.write("n2/y", b"unsynced").unwrap();
        // Reopening is what a killed agent's restart does.
        let mut d = FileDisk::open(&dir, 1).unwrap();
        assert_eq!(d.read("n0/a b%/é"), Some(b"1".to_vec()));
        assert_eq!(d.read("n0/x"), None);
        assert_eq!(
            d.read("n1/x"),
            Some(b"3".to_vec()),
            "the unsynced write is lost"
        );
        assert_eq!(
            d.keys("n"),
            vec!["n0/a b%/é".to_string(), "n1/x".to_string()]
        );
        let e = encode_key(&"k".repeat(300)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("disk key of 300 bytes is too long"),
            "{e}"
        );
        // The limit is on the encoded name: each `/` takes three bytes.
        assert!(encode_key(&"/".repeat(66)).is_ok());
        assert!(encode_key(&"/".repeat(67))
            .unwrap_err()
            .to_string()
            .contains("disk key of 67 bytes is too long"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn logs_append_truncate_and_lose_what_was_not_synced() {
        let dir = dir("logs");
        let mut d = FileDisk::open(&dir, 1).unwrap();
        for r in [b"a", b"b", b"c"] {
            d.append("n0/wal", r).unwrap();
        }
        d.sync().unwrap();
        d.append("n0/wal", b"d").unwrap();
        d.sync().unwrap();
        d.truncate("n0/wal", 2).unwrap();
        d.append("n0/wal", b"e").unwrap();
        d.sync().unwrap();
        d.append("n0/wal", b"lost").unwrap();
        let mut d = FileDisk::open(&dir, 1).unwrap();
        assert_eq!(d.log_len("n0/wal"), 3);
        let got: Vec<Vec<u8>> = (0..3)
            .map(|i| d.read_record("n0/wal", i).unwrap())
            .collect();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"e".to_vec()]);
        // A record cut short in the file (a write the process did not
        // finish) is dropped on reading.
        let path = dir.join("l").join(encode_key("n0/wal").unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[9, 0, 0, 0, b'x']);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(FileDisk::open(&dir, 1).unwrap().log_len("n0/wal"), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn injected_faults_act_on_the_file_disk() {
        let dir = dir("faults");
        let mut d = FileDisk::open(&dir, 1).unwrap();
        d.write("k", b"v").unwrap();
        d.fault(&DiskFault::Errors { pct: 100 }).unwrap();
        assert!(d.sync().is_err());
        d.fault(&DiskFault::Reset).unwrap();
        d.fault(&DiskFault::Slow { ms: 5 }).unwrap();
        assert_eq!(d.sync().unwrap(), Duration::from_millis(5));
        d.fault(&DiskFault::Reset).unwrap();
        d.fault(&DiskFault::Full).unwrap();
        assert_eq!(
            d.write("k", b"w").unwrap_err().kind(),
            ErrorKind::StorageFull
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A flipped bit in a synced block is in its file: a restarted agent
    /// reads it back as damaged, as the simulator's disk does after a crash.
    #[test]
    fn a_corrupted_block_outlives_a_restart() {
        for seed in 0..20 {
            let dir = dir(&format!("corrupt-{seed}"));
            let mut d = FileDisk::open(&dir, seed).unwrap();
            d.write("k", b"value").unwrap();
            for r in [b"a", b"b", b"c"] {
                d.append("wal", r).unwrap();
            }
            d.sync().unwrap();
            let before = |d: &mut FileDisk| {
                (
                    d.read("k"),
                    (0..3).map(|i| d.read_record("wal", i)).collect::<Vec<_>>(),
                )
            };
            let clean = before(&mut d);
            d.fault(&DiskFault::Corrupt).unwrap();
            let damaged = before(&mut d);
            assert_ne!(damaged, clean, "seed {seed}: nothing flipped");
            let mut again = FileDisk::open(&dir, seed).unwrap();
            assert_eq!(
                before(&mut again),
                damaged,
                "seed {seed}: the damage is on file"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
