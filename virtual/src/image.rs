//! The agent image, made without a registry: a statically linked agent in a
//! root filesystem tar built in memory, imported as an image (`docker
//! import`) and tagged by the binary's sha256, so it is reused while the
//! binary is unchanged.

use crate::engine::Engine;
use bollard::query_parameters::CreateImageOptions;
use distzero_core::{Error, Result};
pub use distzero_real::artifact::{agent_binary, check_static, sha256_hex, tail};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Repository name of agent images; the tag is the binary's hash.
pub const IMAGE_REPO: &str = "distzero-agent";
/// Where the binary sits in the image.
pub const AGENT_PATH: &str = "/distzero-agent";
/// Folders of the image: scratch space, the machine's disk, its logs.
pub const DATA_DIR: &str = "/data";
pub const LOG_DIR: &str = "/logs";

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
}
