//! The agent image, made without a registry: a statically linked agent in a
//! root filesystem tar built in memory, imported as an image (`docker
//! import`) and tagged by the binary's sha256, so it is reused while the
//! binary is unchanged.

use crate::engine::Engine;
use bollard::query_parameters::CreateImageOptions;
use distzero::{Error, Result, Settings};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Repository name of agent images; the tag is the binary's hash.
pub const IMAGE_REPO: &str = "distzero-agent";
/// Where the binary sits in the image.
pub const AGENT_PATH: &str = "/distzero-agent";
/// Folders of the image: scratch space, the machine's disk, its logs.
pub const DATA_DIR: &str = "/data";
pub const LOG_DIR: &str = "/logs";

/// Package and binary built when `DISTZERO_AGENT_BIN` is unset.
pub const AGENT_PACKAGE: &str = "distzero-examples";
pub const AGENT_BIN: &str = "distzero-agent";

/// An imported agent image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentImage {
    /// `distzero-agent:<16 hex digits of the sha256>`.
    pub reference: String,
    /// Hex sha256 of the binary.
    pub sha256: String,
    /// The binary it holds.
    pub binary: PathBuf,
    /// True when the image already existed and was reused.
    pub reused: bool,
}

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

/// A root filesystem holding the agent at [`AGENT_PATH`] and the empty
/// folders /tmp, /data, /logs, /etc. Deterministic: same binary, same bytes.
pub fn rootfs_tar(agent: &[u8]) -> Result<Vec<u8>> {
    let io = |e| Error::io("writing the image's root filesystem tar", e);
    let mut tar = tar::Builder::new(Vec::with_capacity(agent.len() + 16 * 1024));
    for (dir, mode) in [
        ("tmp/", 0o1777),
        ("data/", 0o755),
        ("logs/", 0o755),
        ("etc/", 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty()).map_err(io)?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(agent.len() as u64);
    tar.append_data(&mut h, AGENT_PATH.trim_start_matches('/'), agent)
        .map_err(io)?;
    tar.into_inner().map_err(io)
}

/// Make sure an image of `binary` exists: reuse it if its hash tag is
/// there, else import a fresh root filesystem.
pub fn ensure_image(engine: &Engine, binary: &Path) -> Result<AgentImage> {
    // One import at a time in this process (parallel tests share images).
    static IMPORT: Mutex<()> = Mutex::new(());
    let _one = IMPORT.lock().unwrap_or_else(|p| p.into_inner());
    let bytes = std::fs::read(binary)
        .map_err(|e| Error::io(format!("reading the agent binary {}", binary.display()), e))?;
    let sha256 = sha256_hex(&bytes);
    let tag = &sha256[..16];
    let reference = format!("{IMAGE_REPO}:{tag}");
    let docker = engine.docker();
    match engine.block(docker.inspect_image(&reference)) {
        Ok(_) => {
            return Ok(AgentImage {
                reference,
                sha256,
                binary: binary.to_path_buf(),
                reused: true,
            })
        }
        Err(e) if crate::engine::is_not_found(&e) => {}
        Err(e) => return Err(engine.err(&format!("looking up image {reference}"), e)),
    }
    let tar = rootfs_tar(&bytes)?;
    let opts = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(IMAGE_REPO.into()),
        tag: Some(tag.into()),
        changes: vec![
            format!("ENTRYPOINT [\"{AGENT_PATH}\"]"),
            format!("LABEL distzero.agent-sha256={sha256}"),
            "WORKDIR /".into(),
        ],
        message: Some(format!("distzero agent {}", binary.display())),
        ..Default::default()
    };
    let import = async {
        let mut stream =
            docker.create_image(Some(opts), Some(bollard::body_full(tar.into())), None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok::<(), bollard::errors::Error>(())
    };
    engine
        .block(import)
        .map_err(|e| engine.err(&format!("importing image {reference}"), e))?;
    // Make sure it is really there under that name.
    engine
        .block(docker.inspect_image(&reference))
        .map_err(|e| engine.err(&format!("finding image {reference} after import"), e))?;
    prune_old_images(engine, &reference, PRUNE_AFTER);
    Ok(AgentImage {
        reference,
        sha256,
        binary: binary.to_path_buf(),
        reused: false,
    })
}

/// Agent images older than this, other than the current one, are removed
/// when a new one is imported (each rebuild of the agent makes a new image).
pub const PRUNE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Best effort: remove agent images older than `age` but `keep`; an image a
/// container still uses stays (no force).
pub fn prune_old_images(engine: &Engine, keep: &str, age: std::time::Duration) {
    use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};
    let filters = std::collections::HashMap::from([(
        "reference".to_string(),
        vec![format!("{IMAGE_REPO}:*")],
    )]);
    let opts = ListImagesOptions {
        filters: Some(filters),
        ..Default::default()
    };
    let Ok(images) = engine.block(engine.docker().list_images(Some(opts))) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let cutoff = now.saturating_sub(age.as_secs()) as i64;
    for img in images {
        if img.created >= cutoff || img.repo_tags.iter().any(|t| t == keep) {
            continue;
        }
        for tag in img
            .repo_tags
            .iter()
            .filter(|t| t.starts_with(&format!("{IMAGE_REPO}:")))
        {
            let opts = RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            };
            let _ = engine.block(engine.docker().remove_image(tag, Some(opts), None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_is_deterministic_and_holds_the_agent() {
        let a = rootfs_tar(b"binary").unwrap();
        assert_eq!(a, rootfs_tar(b"binary").unwrap());
        let mut ar = tar::Archive::new(a.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["tmp/", "data/", "logs/", "etc/", "distzero-agent"]);
    }

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
