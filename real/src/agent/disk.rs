//! An agent's durable disk: one file per key under the machine's data dir.
//!
//! Writes go to a temporary file renamed over the key's file, so a crash
//! leaves either the old or the new value. No fsync: a crash here is a killed
//! process, and the page cache survives it (a power cut is not modelled).

use distzero_core::context::DiskStore;
use std::collections::BTreeMap;
use std::io::{Error as IoError, ErrorKind};
use std::path::{Path, PathBuf};

pub struct FileDisk {
    dir: PathBuf,
    /// Every key and value, loaded at start: reads never touch the file system.
    cache: BTreeMap<String, Vec<u8>>,
}

/// Longest encoded file name (file systems stop at 255 bytes).
const MAX_NAME: usize = 200;

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

impl FileDisk {
    /// Open (create) the disk in `dir` and load what it holds.
    pub fn open(dir: &Path) -> std::io::Result<FileDisk> {
        std::fs::create_dir_all(dir)?;
        let mut cache = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue; // a temporary file of a write cut short
            }
            if let Some(key) = decode_name(name) {
                cache.insert(key, std::fs::read(entry.path())?);
            }
        }
        Ok(FileDisk {
            dir: dir.to_path_buf(),
            cache,
        })
    }
}

impl DiskStore for FileDisk {
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.get(key).cloned()
    }

    fn write(&mut self, key: &str, value: &[u8]) -> std::io::Result<()> {
        let name = encode_key(key)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, value)?;
        std::fs::rename(&tmp, self.dir.join(&name))?;
        self.cache.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, key: &str) -> std::io::Result<()> {
        let name = encode_key(key)?;
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.cache.remove(key);
        Ok(())
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.cache
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening_and_odd_keys_round_trip() {
        let dir = std::env::temp_dir().join(format!("distzero-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut d = FileDisk::open(&dir).unwrap();
        d.write("n0/a b%/é", b"1").unwrap();
        d.write("n0/x", b"2").unwrap();
        d.write("n1/x", b"3").unwrap();
        d.remove("n0/x").unwrap();
        d.remove("never").unwrap();
        let d = FileDisk::open(&dir).unwrap();
        assert_eq!(d.read("n0/a b%/é"), Some(b"1".to_vec()));
        assert_eq!(d.read("n0/x"), None);
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
}
