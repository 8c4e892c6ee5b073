//! What a real mode deploys and how it starts it: an [`Artifact`], the
//! agent program and the files it needs (its shared libraries and ELF
//! interpreter, when dynamically linked), content-addressed by the sha256 of
//! the whole bundle, with the command that starts it. Shared by the Docker
//! and SSH providers.
//!
//! Where the program comes from, in order:
//! 1. `DISTZERO_AGENT_BIN`: a static agent binary the user built;
//! 2. the running test binary, when the caller says it was made by
//!    `workflow_tests!` ([`AgentSource::TestBinary`]): its hidden test runs
//!    the agent, so users write no agent binary;
//! 3. a static build of the workspace's `distzero-agent` (the providers'
//!    own tests, which use them directly).
//!
//! A bundle is a folder: the program at [`PROGRAM`], libraries and loader
//! in [`LIB_DIR`]; a dynamically linked program is started through its
//! loader (`lib/ld-linux-….so.2 --library-path lib agent …`), so it needs
//! nothing from the host or image it lands on.

use distzero_core::settings::AGENT_ARGS_SEP;
use distzero_core::{Error, Result, Settings};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where the program sits in a bundle folder.
pub const PROGRAM: &str = "agent";
/// Where the shared libraries and the loader sit in a bundle folder.
pub const LIB_DIR: &str = "lib";
/// The environment variable through which a test binary started as an
/// agent gets its launch arguments (joined by [`AGENT_ARGS_SEP`]).
pub const AGENT_ARGS_VAR: &str = "DISTZERO_AGENT_ARGS";

/// What the caller knows about where an agent program can come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSource {
    /// The caller is a test made by `workflow_tests!`: the running test
    /// binary is an agent through its hidden test, whose full libtest name
    /// (e.g. `__distzero_agent`) this is.
    TestBinary { test: String },
    /// Nothing known (a provider used directly): `DISTZERO_AGENT_BIN`, else
    /// a static build of the workspace's `distzero-agent`.
    Workspace,
}

/// How the program of a bundle takes the agent's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// On its command line (`distzero-agent`, `DISTZERO_AGENT_BIN`).
    Args,
    /// A libtest test binary, started as `--exact <test> --nocapture
    /// --test-threads 1 -q`; the arguments in [`AGENT_ARGS_VAR`].
    HiddenTest { test: String },
}

/// One file of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFile {
    /// Path inside the bundle folder: `agent`, `lib/libc.so.6`, …
    pub path: String,
    /// The local file it is read from.
    pub source: PathBuf,
    /// Hex sha256 of its content.
    pub sha256: String,
    pub size: u64,
}

/// The agent program to deploy and everything it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Where it came from, for messages (`DISTZERO_AGENT_BIN`, `the test
    /// binary`, `the static build of distzero-agent`).
    pub origin: String,
    /// The program first (at [`PROGRAM`]), then the libraries and loader.
    pub files: Vec<BundleFile>,
    /// Bundle path of the ELF interpreter, when the program is dynamically
    /// linked: it is then started through it.
    pub loader: Option<String>,
    pub entry: Entry,
    /// Hex sha256 of the bundle (every file's path, size and sha256).
    pub sha256: String,
}

/// A command that starts a bundle's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartCommand {
    pub argv: Vec<String>,
    /// Added to the agent's environment (besides the log level, which
    /// providers pass themselves; the cookie goes on stdin).
    pub env: Vec<(String, String)>,
}

impl Artifact {
    /// The artifact to deploy (see the module docs for the order). The
    /// test binary's bundle and the static build are made once per process.
    pub fn resolve(settings: &Settings, source: &AgentSource) -> Result<Artifact> {
        if let Some(bin) = settings.agent_bin() {
            return Artifact::static_binary(&bin, "DISTZERO_AGENT_BIN");
        }
        static MADE: Mutex<Vec<(AgentSource, Artifact)>> = Mutex::new(Vec::new());
        let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, a)) = made.iter().find(|(s, _)| s == source) {
            return Ok(a.clone());
        }
        let artifact = match source {
            AgentSource::TestBinary { test } => {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::io("finding the running test binary", e))?;
                Artifact::test_binary(&exe, test)?
            }
            AgentSource::Workspace => {
                let bin = agent_binary(settings)?;
                Artifact::static_binary(&bin, "the static build of distzero-agent")?
            }
        };
        tracing::info!(
            origin = %artifact.origin,
            program = %artifact.program().display(),
            files = artifact.files.len(),
            bytes = artifact.size(),
            sha256 = %artifact.sha256,
            "agent bundle"
        );
        made.push((source.clone(), artifact.clone()));
        Ok(artifact)
    }

    /// A bundle of one static binary that takes the agent's arguments on
    /// its command line; a dynamically linked one is refused.
    pub fn static_binary(path: &Path, origin: &str) -> Result<Artifact> {
        check_static(path, origin)?;
        Artifact::bundle(path, origin, Entry::Args)
    }

    /// A bundle of a test binary made by `workflow_tests!` (its hidden test
    /// `test` runs the agent), with its shared libraries and loader.
    pub fn test_binary(path: &Path, test: &str) -> Result<Artifact> {
        Artifact::bundle(
            path,
            &format!("the test binary {}", path.display()),
            Entry::HiddenTest {
                test: test.to_string(),
            },
        )
    }

    /// A bundle of `program` and, if it is dynamically linked, the shared
    /// libraries and the loader it needs.
    pub fn bundle(program: &Path, origin: &str, entry: Entry) -> Result<Artifact> {
        let needs = shared_libraries(program)?;
        Artifact::from_parts(program, &needs, origin, entry)
    }

    /// A bundle of `program` and the files of `needs`.
    pub fn from_parts(
        program: &Path,
        needs: &Needs,
        origin: &str,
        entry: Entry,
    ) -> Result<Artifact> {
        let mut files = vec![bundle_file(PROGRAM.to_string(), program)?];
        let mut loader = None;
        if let Some(interp) = &needs.interpreter {
            let name = file_name(interp);
            let path = format!("{LIB_DIR}/{name}");
            files.push(bundle_file(path.clone(), interp)?);
            loader = Some(path);
        }
        for (name, local) in &needs.libs {
            let path = format!("{LIB_DIR}/{name}");
            if files.iter().any(|f| f.path == path) {
                continue;
            }
            files.push(bundle_file(path, local)?);
        }
        let sha256 = bundle_hash(&files);
        Ok(Artifact {
            origin: origin.to_string(),
            files,
            loader,
            entry,
            sha256,
        })
    }

    /// The local program file.
    pub fn program(&self) -> &Path {
        &self.files[0].source
    }

    /// The first 16 hex digits of the bundle's sha256: image tags and
    /// folder names.
    pub fn tag(&self) -> &str {
        &self.sha256[..16]
    }

    /// Bytes of all its files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The command that starts the agent with `args` (those of
    /// [`crate::provider::AgentLaunch::args`]) from the bundle unpacked in
    /// the folder `dir`.
    pub fn command(&self, dir: &str, args: &[String]) -> Result<StartCommand> {
        let dir = dir.trim_end_matches('/');
        let mut argv = Vec::new();
        if let Some(loader) = &self.loader {
            argv.push(format!("{dir}/{loader}"));
            argv.push("--library-path".into());
            argv.push(format!("{dir}/{LIB_DIR}"));
        }
        argv.push(format!("{dir}/{PROGRAM}"));
        let mut env = Vec::new();
        match &self.entry {
            Entry::Args => argv.extend(args.iter().cloned()),
            Entry::HiddenTest { test } => {
                if let Some(a) = args.iter().find(|a| a.contains(AGENT_ARGS_SEP)) {
                    return Err(Error::Infra(format!(
                        "agent argument {a:?} holds the separator U+001F of {AGENT_ARGS_VAR}"
                    )));
                }
                argv.extend(
                    ["--exact", test, "--nocapture", "--test-threads", "1", "-q"].map(String::from),
                );
                env.push((
                    AGENT_ARGS_VAR.to_string(),
                    args.join(&AGENT_ARGS_SEP.to_string()),
                ));
            }
        }
        Ok(StartCommand { argv, env })
    }

    /// Every file's content, checked against its hash (a file changed since
    /// the bundle was made is an error, not a silent other agent).
    pub fn read(&self) -> Result<Vec<(&BundleFile, Vec<u8>)>> {
        let mut out = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let bytes = std::fs::read(&f.source).map_err(|e| {
                Error::io(
                    format!("reading {} of the agent bundle", f.source.display()),
                    e,
                )
            })?;
            if sha256_hex(&bytes) != f.sha256 {
                return Err(Error::Infra(format!(
                    "{} changed since the agent bundle was made (rebuilt while tests run?); run again",
                    f.source.display()
                )));
            }
            out.push((f, bytes));
        }
        Ok(out)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn bundle_file(path: String, source: &Path) -> Result<BundleFile> {
    let bytes = std::fs::read(source).map_err(|e| {
        Error::io(
            format!("reading {} for the agent bundle", source.display()),
            e,
        )
    })?;
    Ok(BundleFile {
        path,
        source: source.to_path_buf(),
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
    })
}

/// The hash of a bundle: sha256 of one line per file, sorted by path.
fn bundle_hash(files: &[BundleFile]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{} {} {}\n", f.sha256, f.size, f.path))
        .collect();
    lines.sort();
    sha256_hex(lines.concat().as_bytes())
}

/// What a dynamically linked program needs to run in an empty root
/// filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The ELF interpreter (PT_INTERP), as a local path.
    pub interpreter: Option<PathBuf>,
    /// Shared libraries: the name the program asks for (`libc.so.6`) and
    /// the local file that serves it.
    pub libs: Vec<(String, PathBuf)>,
}

/// The loader and shared libraries of `program`: from `ldd`, or, where
/// `ldd` cannot run, from the DT_NEEDED entries searched in the standard
/// library folders. Nothing for a static program; an error naming what is
/// missing when a library cannot be found.
pub fn shared_libraries(program: &Path) -> Result<Needs> {
    let bytes = std::fs::read(program).map_err(|e| {
        Error::io(
            format!("reading the agent program {}", program.display()),
            e,
        )
    })?;
    let interp = match elf_interpreter(&bytes) {
        Ok(Some(i)) => PathBuf::from(i),
        Ok(None) => return Ok(Needs::default()),
        Err(why) => {
            return Err(Error::Infra(format!(
                "{} is not a 64-bit ELF executable: {why}",
                program.display()
            )))
        }
    };
    if !interp.exists() {
        return Err(Error::Infra(format!(
            "{} needs the loader {}, which is not on this machine",
            program.display(),
            interp.display()
        )));
    }
    let ldd_failed = match Command::new("ldd").arg(program).output() {
        Ok(out) if out.status.success() => {
            let parsed = parse_ldd(&String::from_utf8_lossy(&out.stdout));
            if !parsed.missing.is_empty() {
                return Err(Error::Infra(format!(
                    "{} needs shared libraries that are not on this machine: {} (ldd says `not found`)",
                    program.display(),
                    parsed.missing.join(", ")
                )));
            }
            return Ok(Needs {
                interpreter: Some(interp),
                libs: parsed.libs,
            });
        }
        Ok(out) => format!(
            "ldd failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 3)
        ),
        Err(e) => format!("ldd cannot run: {e}"),
    };
    let (libs, missing) = needed_in_standard_paths(&bytes, &library_dirs());
    if !missing.is_empty() {
        return Err(Error::Infra(format!(
            "{} needs shared libraries that were found neither by ldd ({ldd_failed}) nor in {}: {}",
            program.display(),
            library_dirs().join(", "),
            missing.join(", ")
        )));
    }
    Ok(Needs {
        interpreter: Some(interp),
        libs,
    })
}

/// What `ldd` printed, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ldd {
    libs: Vec<(String, PathBuf)>,
    missing: Vec<String>,
}

fn parse_ldd(text: &str) -> Ldd {
    let mut out = Ldd::default();
    for line in text.lines().map(str::trim) {
        let Some((name, rest)) = line.split_once("=>") else {
            // `linux-vdso.so.1 (0x…)`, the loader `/lib64/ld-….so.2 (0x…)`
            // (taken from PT_INTERP instead), `statically linked`.
            continue;
        };
        let (name, rest) = (name.trim(), rest.trim());
        if rest.starts_with("not found") {
            out.missing.push(name.to_string());
            continue;
        }
        let path = rest.split(" (0x").next().unwrap_or("").trim();
        if name.starts_with('/') || !path.starts_with('/') {
            // The loader under another name, or the vdso of an old ldd.
            continue;
        }
        out.libs.push((name.to_string(), PathBuf::from(path)));
    }
    out
}

/// The standard library folders of this machine.
fn library_dirs() -> Vec<String> {
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    vec![
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
    ]
}

/// The DT_NEEDED closure of an ELF file searched in `dirs`: (found, missing).
fn needed_in_standard_paths(elf: &[u8], dirs: &[String]) -> (Vec<(String, PathBuf)>, Vec<String>) {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let mut missing = Vec::new();
    let mut todo: Vec<String> = elf_needed(elf).unwrap_or_default();
    while let Some(name) = todo.pop() {
        if found.iter().any(|(n, _)| *n == name) || missing.contains(&name) {
            continue;
        }
        match dirs
            .iter()
            .map(|d| Path::new(d).join(&name))
            .find(|p| p.exists())
        {
            Some(p) => {
                if let Ok(b) = std::fs::read(&p) {
                    todo.extend(elf_needed(&b).unwrap_or_default());
                }
                found.push((name, p));
            }
            None => missing.push(name),
        }
    }
    found.sort();
    missing.sort();
    (found, missing)
}

/// The DT_NEEDED names of an ELF file.
fn elf_needed(b: &[u8]) -> std::result::Result<Vec<String>, String> {
    let elf = goblin::elf::Elf::parse(b).map_err(|e| e.to_string())?;
    Ok(elf.libraries.iter().map(|l| l.to_string()).collect())
}

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

/// The PT_INTERP of a 64-bit ELF file, if any.
fn elf_interpreter(b: &[u8]) -> std::result::Result<Option<String>, String> {
    let elf = goblin::elf::Elf::parse(b).map_err(|e| e.to_string())?;
    if !elf.is_64 {
        return Err("a 32-bit ELF file".into());
    }
    Ok(elf.interpreter.map(str::to_string))
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
        let mut script = b"#!/bin/sh\n".to_vec();
        script.resize(128, b' ');
        let not_elf = elf_interpreter(&script).unwrap_err();
        assert!(not_elf.to_lowercase().contains("magic"), "{not_elf}");
        let truncated = elf_interpreter(b"\x7fELF\x02\x01").unwrap_err();
        assert!(!truncated.is_empty());
        // A 32-bit header (the first 52 bytes of an ELFCLASS32 file).
        let mut elf32 = vec![0u8; 52];
        elf32[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
        elf32[16] = 2; // ET_EXEC
        elf32[18] = 3; // EM_386
        elf32[20] = 1; // EV_CURRENT
        elf32[40] = 52; // e_ehsize
        let e = elf_interpreter(&elf32).unwrap_err();
        assert!(
            e.contains("32-bit") || e.to_lowercase().contains("malformed"),
            "{e}"
        );
        // This test binary is dynamically linked in a normal build.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needed = elf_needed(&me).unwrap();
        assert!(
            needed.iter().any(|l| l.starts_with("libc.so")),
            "{needed:?}"
        );
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

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "dz-artifact-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_test_binary_bundle_holds_its_loader_and_libraries() {
        let me = std::env::current_exe().unwrap();
        let needs = shared_libraries(&me).unwrap();
        let interp = needs.interpreter.clone().expect("a loader");
        assert!(file_name(&interp).starts_with("ld-"), "{interp:?}");
        assert!(
            needs
                .libs
                .iter()
                .any(|(n, p)| n == "libc.so.6" && p.exists()),
            "{needs:?}"
        );
        // The fallback (DT_NEEDED in the standard folders) finds them too.
        let (found, missing) =
            needed_in_standard_paths(&std::fs::read(&me).unwrap(), &library_dirs());
        assert!(missing.is_empty(), "{missing:?}");
        assert!(found.iter().any(|(n, _)| n == "libc.so.6"), "{found:?}");
        let a = Artifact::test_binary(&me, "__distzero_agent").unwrap();
        assert_eq!(a.files[0].path, PROGRAM);
        assert_eq!(a.program(), me.as_path());
        let loader = a.loader.clone().unwrap();
        assert!(loader.starts_with("lib/ld-"), "{loader}");
        assert!(a.files.iter().any(|f| f.path == "lib/libc.so.6"));
        assert_eq!(a.read().unwrap().len(), a.files.len());
        let c = a
            .command(
                "/d",
                &[
                    "--machine".into(),
                    "1".into(),
                    "--run-id".into(),
                    "r".into(),
                ],
            )
            .unwrap();
        assert_eq!(
            c.argv,
            [
                format!("/d/{loader}").as_str(),
                "--library-path",
                "/d/lib",
                "/d/agent",
                "--exact",
                "__distzero_agent",
                "--nocapture",
                "--test-threads",
                "1",
                "-q"
            ]
        );
        assert_eq!(
            c.env,
            [(
                AGENT_ARGS_VAR.to_string(),
                "--machine\u{1f}1\u{1f}--run-id\u{1f}r".to_string()
            )]
        );
        assert!(a.command("/d", &["a\u{1f}b".into()]).is_err());
    }

    #[test]
    fn the_bundle_hash_follows_every_file() {
        let d = temp_dir("hash");
        let (prog, ld, lib) = (d.join("prog"), d.join("ld-x.so.2"), d.join("libz.so.1"));
        std::fs::write(&prog, b"program 1").unwrap();
        std::fs::write(&ld, b"loader").unwrap();
        std::fs::write(&lib, b"library 1").unwrap();
        let needs = Needs {
            interpreter: Some(ld.clone()),
            libs: vec![("libz.so.1".into(), lib.clone())],
        };
        let make = || Artifact::from_parts(&prog, &needs, "test", Entry::Args).unwrap();
        let a = make();
        assert_eq!(
            a.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["agent", "lib/ld-x.so.2", "lib/libz.so.1"]
        );
        assert_eq!(a.loader.as_deref(), Some("lib/ld-x.so.2"));
        assert_eq!(a.size(), 9 + 6 + 9);
        assert_eq!(make().sha256, a.sha256, "same files, same hash");
        std::fs::write(&lib, b"library 2").unwrap();
        let b = make();
        assert_ne!(b.sha256, a.sha256, "a library changed");
        // A bundle read after its file changed is refused.
        assert!(a.read().unwrap_err().to_string().contains("changed"));
        std::fs::write(&prog, b"program 2").unwrap();
        let c = make();
        assert_ne!(c.sha256, b.sha256, "the program changed");
        assert_ne!(c.sha256, a.sha256);
        assert_eq!(c.tag().len(), 16);
        let c2 = a.command("/x/", &["--machine".into(), "2".into()]).unwrap();
        assert_eq!(
            c2.argv,
            [
                "/x/lib/ld-x.so.2",
                "--library-path",
                "/x/lib",
                "/x/agent",
                "--machine",
                "2"
            ]
        );
        assert!(c2.env.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_static_binary_is_a_bundle_of_one() {
        let d = temp_dir("static");
        let prog = d.join("prog");
        std::fs::write(&prog, b"static").unwrap();
        let a = Artifact::from_parts(&prog, &Needs::default(), "test", Entry::Args).unwrap();
        assert_eq!(a.files.len(), 1);
        assert_eq!(a.loader, None);
        let c = a.command("/b", &["--x".into()]).unwrap();
        assert_eq!(c.argv, ["/b/agent", "--x"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f16)\n\
            \tlibfoo.so.3 => not found\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f16)\n\
            \t/lib64/ld-linux-x86-64.so.2 => /usr/lib64/ld-linux-x86-64.so.2 (0x00007f16)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f16)\n";
        let p = parse_ldd(text);
        assert_eq!(
            p.libs,
            [
                (
                    "libgcc_s.so.1".to_string(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1")
                ),
                (
                    "libc.so.6".to_string(),
                    PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")
                ),
            ]
        );
        assert_eq!(p.missing, ["libfoo.so.3"]);
        let (found, missing) = needed_in_standard_paths(b"not elf", &library_dirs());
        assert!(found.is_empty() && missing.is_empty());
    }
}
