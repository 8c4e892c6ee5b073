//! The agent binary a real mode deploys: `DISTZERO_AGENT_BIN`, or a static
//! build of the workspace's agent, checked to run in an empty root
//! filesystem, content-addressed by its sha256. Shared by the Docker and
//! SSH providers.

use distzero_core::{Error, Result, Settings};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Package and binary built when `DISTZERO_AGENT_BIN` is unset.
pub const AGENT_PACKAGE: &str = "distzero-examples";
pub const AGENT_BIN: &str = "distzero-agent";

/// The agent binary to deploy: `DISTZERO_AGENT_BIN`, or a static build of
/// `distzero-agent` from the current workspace (once per process).
pub fn agent_binary(settings: &Settings) -> Result<PathBuf> {
    if let Some(bin) = settings.agent_bin() {
        check_static(&bin, "DISTZERO_AGENT_BIN")?;
        return Ok(bin);
    }
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let path = snapshot(&build_static_agent(AGENT_PACKAGE, AGENT_BIN)?)?;
    *built = Some(path.clone());
    Ok(path)
}

/// A content-addressed copy (`<binary>-<16 hex of its sha256>`) beside a
/// built binary, so that a later rebuild by another process (the cloud
/// mode, a parallel test run) does not change what this process deploys.
fn snapshot(binary: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(binary)
        .map_err(|e| Error::io(format!("reading the agent binary {}", binary.display()), e))?;
    let mut name = binary.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{}", &sha256_hex(&bytes)[..16]));
    let copy = binary.with_file_name(name);
    if !copy.exists() {
        let tmp = copy.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::io(format!("making {} executable", tmp.display()), e))?;
        std::fs::rename(&tmp, &copy)
            .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))?;
    }
    Ok(copy)
}

/// The target triple of a static build for this host.
pub fn static_target() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// `cargo build --release` of one binary, statically linked, in its own
/// target folder (`<target>/agent-static`) so the normal build cache stays
/// valid. Returns the binary's path.
pub fn build_static_agent(package: &str, bin: &str) -> Result<PathBuf> {
    let meta = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| {
            Error::io(
                "running `cargo metadata` to find the workspace of the agent",
                e,
            )
        })?;
    if !meta.status.success() {
        return Err(Error::Infra(format!(
            "`cargo metadata` failed, so the agent cannot be built (set DISTZERO_AGENT_BIN to a static agent binary instead): {}",
            tail(&String::from_utf8_lossy(&meta.stderr), 20)
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)
        .map_err(|e| Error::Infra(format!("`cargo metadata` gave bad JSON: {e}")))?;
    let target_dir = meta["target_directory"]
        .as_str()
        .ok_or_else(|| Error::Infra("`cargo metadata` names no target_directory".into()))?;
    let root = meta["workspace_root"].as_str().unwrap_or(".");
    let own_target = Path::new(target_dir).join("agent-static");
    let triple = static_target();
    let out = Command::new("cargo")
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            &triple,
            "-p",
            package,
            "--bin",
            bin,
        ])
        .env("CARGO_TARGET_DIR", &own_target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .output()
        .map_err(|e| Error::io("running `cargo build` of the static agent", e))?;
    if !out.status.success() {
        return Err(Error::Infra(format!(
            "building the static agent failed (`RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target {triple} -p {package} --bin {bin}` with CARGO_TARGET_DIR={}); \
             set DISTZERO_AGENT_BIN to a prebuilt static agent to skip the build. Last lines of its output:\n{}",
            own_target.display(),
            compiler_errors(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    let path = own_target.join(&triple).join("release").join(bin);
    check_static(&path, "the static agent build")?;
    Ok(path)
}

/// The part of cargo's output worth showing: from its first error on (at
/// most 40 lines), else its last 30 lines.
fn compiler_errors(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().position(|l| l.starts_with("error")) {
        Some(i) => lines[i..]
            .iter()
            .take(40)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        None => tail(stderr, 30),
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Fail unless `path` is an ELF executable with no program interpreter (so
/// it runs in an empty root filesystem).
pub fn check_static(path: &Path, origin: &str) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::io(
            format!("reading the agent binary {} ({origin})", path.display()),
            e,
        )
    })?;
    match elf_interpreter(&bytes) {
        Err(why) => Err(Error::Infra(format!(
            "{} ({origin}) is not a 64-bit ELF executable: {why}",
            path.display()
        ))),
        Ok(Some(interp)) => Err(Error::Infra(format!(
            "{} ({origin}) is dynamically linked (it needs {interp}), so it cannot run in an empty container; \
             build it with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target {}",
            path.display(),
            static_target()
        ))),
        Ok(None) => Ok(()),
    }
}

/// The PT_INTERP of a 64-bit little-endian ELF file, if any.
fn elf_interpreter(b: &[u8]) -> std::result::Result<Option<String>, &'static str> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
    };
    if b.get(0..4) != Some(b"\x7fELF") {
        return Err("no ELF magic");
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not 64-bit little-endian");
    }
    let phoff = u64_at(0x20).ok_or("truncated header")? as usize;
    let phentsize = u16_at(0x36).ok_or("truncated header")? as usize;
    let phnum = u16_at(0x38).ok_or("truncated header")? as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        const PT_INTERP: u32 = 3;
        if u32_at(ph).ok_or("truncated program headers")? == PT_INTERP {
            let off = u64_at(ph + 8).ok_or("truncated program headers")? as usize;
            let size = u64_at(ph + 32).ok_or("truncated program headers")? as usize;
            let raw = b
                .get(off..off + size)
                .ok_or("interpreter out of the file")?;
            return Ok(Some(
                String::from_utf8_lossy(raw)
                    .trim_end_matches('\0')
                    .to_string(),
            ));
        }
    }
    Ok(None)
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_checks() {
        assert_eq!(elf_interpreter(b"#!/bin/sh"), Err("no ELF magic"));
        assert_eq!(
            elf_interpreter(b"\x7fELF\x01\x01"),
            Err("not 64-bit little-endian")
        );
        assert_eq!(elf_interpreter(b"\x7fELF\x02\x01"), Err("truncated header"));
        // This test binary is dynamically linked in a normal build.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let interp = elf_interpreter(&me).unwrap();
        assert!(
            interp.is_some_and(|i| i.contains("ld-")),
            "test binary should have an interpreter"
        );
        let e = check_static(&std::env::current_exe().unwrap(), "test")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dynamically linked") && e.contains("crt-static"),
            "{e}"
        );
    }

    #[test]
    fn build_errors_show_the_first_error() {
        let out = "   Compiling a\n   Compiling b\nerror[E0432]: unresolved import\n  --> x.rs:1\nerror: could not compile";
        assert!(compiler_errors(out).starts_with("error[E0432]"));
        assert_eq!(
            compiler_errors("   Compiling a\nfailed"),
            "   Compiling a\nfailed"
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
