//! The agent image, made without a registry: the agent bundle (see
//! `distzero_real::artifact`: a static agent, or the test binary with its
//! shared libraries and loader) in a root filesystem tar built in memory,
//! imported as an image (`docker import`) and tagged by the bundle's hash,
//! so it is reused while the bundle is unchanged.

use crate::engine::Engine;
use bollard::query_parameters::CreateImageOptions;
use distzero_core::{Error, Result};
pub use distzero_real::artifact::{
    agent_binary, check_static, sha256_hex, tail, AgentSource, Artifact,
};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Repository name of agent images; the tag is the bundle's hash.
pub const IMAGE_REPO: &str = "distzero-agent";
/// Where the bundle sits in the image (the program at
/// `/distzero/agent`, libraries and loader in `/distzero/lib/`).
pub const BUNDLE_DIR: &str = "/distzero";
/// Folders of the image: scratch space, the machine's disk, its logs.
pub const DATA_DIR: &str = "/data";
pub const LOG_DIR: &str = "/logs";

/// An imported agent image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentImage {
    /// `distzero-agent:<16 hex digits of the bundle's sha256>`.
    pub reference: String,
    /// Hex sha256 of the bundle.
    pub sha256: String,
    /// The program it holds.
    pub binary: PathBuf,
    /// True when the image already existed and was reused.
    pub reused: bool,
    /// Bytes of the bundle.
    pub bytes: u64,
    /// How long the import took (zero when reused).
    pub import_time: Duration,
}

/// A root filesystem holding the bundle's files (`(path in the bundle,
/// content)`) under [`BUNDLE_DIR`] and the empty folders /tmp, /data,
/// /logs, /etc. Deterministic: same files, same bytes.
pub fn rootfs_tar(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let io = |e| Error::io("writing the image's root filesystem tar", e);
    let total: usize = files.iter().map(|(_, b)| b.len() + 1024).sum();
    let mut tar = tar::Builder::new(Vec::with_capacity(total + 16 * 1024));
    let bundle = BUNDLE_DIR.trim_start_matches('/');
    let mut dirs: Vec<(String, u32)> = ["tmp/", "data/", "logs/", "etc/"]
        .iter()
        .map(|d| (d.to_string(), if *d == "tmp/" { 0o1777 } else { 0o755 }))
        .collect();
    dirs.push((format!("{bundle}/"), 0o755));
    for (path, _) in files {
        let mut parent = std::path::Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(format!("{bundle}/{}/", p.display()));
            parent = p.parent();
        }
        for d in chain.into_iter().rev() {
            if !dirs.iter().any(|(x, _)| *x == d) {
                dirs.push((d, 0o755));
            }
        }
    }
    for (dir, mode) in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty()).map_err(io)?;
    }
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, format!("{bundle}/{path}"), *bytes)
            .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

/// Make sure an image of the bundle exists: reuse it if its hash tag is
/// there, else import a fresh root filesystem.
pub fn ensure_image(engine: &Engine, artifact: &Artifact) -> Result<AgentImage> {
    // One import at a time in this process (parallel tests share images).
    static IMPORT: Mutex<()> = Mutex::new(());
    let _one = IMPORT.lock().unwrap_or_else(|p| p.into_inner());
    let sha256 = artifact.sha256.clone();
    let tag = artifact.tag();
    let reference = format!("{IMAGE_REPO}:{tag}");
    let image = |reused, import_time| AgentImage {
        reference: reference.clone(),
        sha256: sha256.clone(),
        binary: artifact.program().to_path_buf(),
        reused,
        bytes: artifact.size(),
        import_time,
    };
    let docker = engine.docker();
    match engine.block(docker.inspect_image(&reference)) {
        Ok(_) => return Ok(image(true, Duration::ZERO)),
        Err(e) if crate::engine::is_not_found(&e) => {}
        Err(e) => return Err(engine.err(&format!("looking up image {reference}"), e)),
    }
    let started = Instant::now();
    let contents = artifact.read()?;
    let files: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(f, b)| (f.path.as_str(), b.as_slice()))
        .collect();
    let tar = rootfs_tar(&files)?;
    drop(files);
    drop(contents);
    let opts = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(IMAGE_REPO.into()),
        tag: Some(tag.into()),
        changes: vec![
            format!("LABEL distzero.agent-sha256={sha256}"),
            "WORKDIR /".into(),
        ],
        message: Some(format!("distzero agent: {}", artifact.origin)),
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
    let took = started.elapsed();
    eprintln!(
        "distzero-virtual: imported image {reference} ({}: {} files, {:.1} MB) in {:.1} s",
        artifact.origin,
        artifact.files.len(),
        artifact.size() as f64 / 1e6,
        took.as_secs_f64()
    );
    tracing::info!(
        image = %reference,
        origin = %artifact.origin,
        bytes = artifact.size(),
        files = artifact.files.len(),
        secs = took.as_secs_f64(),
        "agent image imported"
    );
    prune_old_images(engine, &reference, PRUNE_AFTER);
    Ok(image(false, took))
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
    fn rootfs_is_deterministic_and_holds_the_bundle() {
        let files: [(&str, &[u8]); 3] = [
            ("agent", b"binary"),
            ("lib/ld-linux-x86-64.so.2", b"loader"),
            ("lib/libc.so.6", b"libc"),
        ];
        let a = rootfs_tar(&files).unwrap();
        assert_eq!(a, rootfs_tar(&files).unwrap());
        let mut ar = tar::Archive::new(a.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "tmp/",
                "data/",
                "logs/",
                "etc/",
                "distzero/",
                "distzero/lib/",
                "distzero/agent",
                "distzero/lib/ld-linux-x86-64.so.2",
                "distzero/lib/libc.so.6"
            ]
        );
    }
}
