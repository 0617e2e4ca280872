//! # healthcloud-guestbuild
//!
//! Builds guest crates (health apps, test components) into WebAssembly components with
//! `cargo build --target wasm32-wasip2`. One implementation serves the vendor's
//! `healthcloud app build`, the build script that embeds the example apps in `healthcloud`,
//! and the runtime's tests, which build their hostile guest components from source.
//!
//! # Examples
//!
//! ```no_run
//! use std::path::Path;
//!
//! let built = healthcloud_guestbuild::build(
//!     Path::new("example-apps/Cargo.toml"),
//!     Path::new("target/guests"),
//!     healthcloud_guestbuild::Lockfile::Locked,
//! )?;
//! for component in built {
//!     println!("{} → {}", component.package, component.wasm.display());
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use cargo_metadata::Message;

/// The target every guest is built for: WASI 0.2, which rustc links into a component.
pub const TARGET: &str = "wasm32-wasip2";

/// One built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The cargo package name.
    pub package: String,
    /// The package's directory (where its `healthcloud.toml` lives).
    pub package_dir: PathBuf,
    /// The component.
    pub wasm: PathBuf,
}

/// Whether `Cargo.lock` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockfile {
    /// Build exactly the committed lockfile (`--locked`): reproducible builds.
    Locked,
    /// Let cargo create or update it (a vendor's fresh project).
    Update,
}

/// Environment variables a surrounding cargo (a build script, `cargo test`) sets that would
/// leak into the guest build and break it: flags, wrappers and targets meant for the host.
const LEAKING_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_LLVM_COV",
    "LLVM_PROFILE_FILE",
    "CARGO_PROFILE_RELEASE_DEBUG",
    "CARGO_INCREMENTAL",
    "DEBUG",
    "OPT_LEVEL",
    "PROFILE",
    "TARGET",
    "HOST",
    "NUM_JOBS",
];

/// Builds every `cdylib` of the cargo project or workspace at `manifest_path` in release mode
/// for [`TARGET`], into `target_dir`, and returns the components. Cargo's own progress goes to
/// stderr.
pub fn build(
    manifest_path: &Path,
    target_dir: &Path,
    lockfile: Lockfile,
) -> anyhow::Result<Vec<Built>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(manifest_path)
        .arg("--target-dir")
        .arg(target_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if lockfile == Lockfile::Locked {
        command.arg("--locked");
    }
    for name in LEAKING_ENV {
        command.env_remove(name);
    }
    let output = command
        .output()
        .with_context(|| format!("could not run cargo to build {}", manifest_path.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            bail!(
                "the Rust target {TARGET} is not installed: run `rustup target add {TARGET}` and build again"
            );
        }
        bail!(
            "cargo build of {} failed:\n{stderr}",
            manifest_path.display()
        );
    }
    let built = components(&output.stdout);
    if built.is_empty() {
        bail!(
            "{} built no component: an app crate needs `[lib] crate-type = [\"cdylib\"]`",
            manifest_path.display()
        );
    }
    Ok(built)
}

/// Builds a guest workspace of this repository (`example-apps`, `tests/components`) into
/// `<repository>/target/guests`, panicking with cargo's output on failure: what the host tests
/// share. Components are keyed by their package's folder name (`bp-monitor`).
pub fn build_for_tests(repository: &Path, workspace: &str) -> HashMap<String, PathBuf> {
    build(
        &repository.join(workspace).join("Cargo.toml"),
        &repository.join("target/guests"),
        Lockfile::Locked,
    )
    .unwrap_or_else(|e| panic!("building {workspace} failed: {e:#}"))
    .into_iter()
    .map(|built| {
        let name = built
            .package_dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, built.wasm)
    })
    .collect()
}

/// The `.wasm` artifacts in cargo's JSON messages (lines that are not a message are skipped).
fn components(messages: &[u8]) -> Vec<Built> {
    Message::parse_stream(messages)
        .filter_map(Result::ok)
        .filter_map(|message| match message {
            Message::CompilerArtifact(artifact) => Some(artifact),
            _ => None,
        })
        .filter_map(|artifact| {
            let wasm = artifact
                .filenames
                .into_iter()
                .find(|file| file.as_str().ends_with(".wasm"))?;
            Some(Built {
                package: artifact.target.name.replace('_', "-"),
                package_dir: artifact
                    .manifest_path
                    .parent()
                    .map(|dir| dir.as_std_path().to_path_buf())
                    .unwrap_or_default(),
                wasm: wasm.into_std_path_buf(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wasm_artifacts_in_cargo_messages() {
        // As cargo 1.95 writes them (`--message-format=json-render-diagnostics`), paths shortened.
        let messages = br#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#serde@1.0.229","manifest_path":"/r/serde/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"serde","src_path":"/r/serde/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":["alloc"],"filenames":["/t/libserde.rlib","/t/libserde.rmeta"],"executable":null,"fresh":true}
not json
{"reason":"compiler-artifact","package_id":"path+file:///apps/bp-monitor#0.1.0","manifest_path":"/apps/bp-monitor/Cargo.toml","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"bp_monitor","src_path":"/apps/bp-monitor/src/lib.rs","edition":"2024","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"s","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/t/bp_monitor.wasm"],"executable":null,"fresh":true}
{"reason":"build-finished","success":true}"#;
        let built = components(messages);
        assert_eq!(built.len(), 1);
        assert_eq!(built[0].package, "bp-monitor");
        assert_eq!(built[0].package_dir, Path::new("/apps/bp-monitor"));
        assert_eq!(built[0].wasm, Path::new("/t/bp_monitor.wasm"));
    }
}
