//! Host bindings of the `platform` world (context, fhir, log, kv), one `bindgen!` per released
//! version of the contract in `wit/`: the host serves every version an installed app may have
//! been built against. WASI and wasi:http bindings come from wasmtime-wasi and
//! wasmtime-wasi-http.
//!
//! The current version's interfaces are re-exported here; a frozen version's are under its
//! own module ([`v0_1`]) and each capability answers them by forwarding to its current host
//! calls. Two versions are two `bindgen!`s rather than one over both folders because each
//! version folder carries its own copy of the WASI packages, and one WIT resolve refuses a
//! package twice.

#[allow(missing_docs, reason = "bindgen-generated")]
mod generated {
    /// `healthcloud:platform@0.2.0`, the current contract.
    pub mod current {
        wasmtime::component::bindgen!({
            path: "../wit/0.2.0",
            world: "healthcloud:platform/platform",
            imports: {
                "healthcloud:platform/fhir": async,
                "healthcloud:platform/kv": async,
                default: tracing,
            },
        });
    }

    /// `healthcloud:platform@0.1.0`, frozen.
    pub mod v0_1 {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
            world: "healthcloud:platform/platform",
            imports: {
                "healthcloud:platform/fhir": async,
                "healthcloud:platform/kv": async,
                default: tracing,
            },
        });
    }
}

pub use generated::current::healthcloud::platform::{context, fhir, kv, log};

/// `healthcloud:platform@0.1.0`: frozen, served for apps built against it. It differs from the
/// current version only in `fhir`'s `search-page`, which has no `incomplete`.
pub mod v0_1 {
    pub use super::generated::v0_1::healthcloud::platform::{context, fhir, kv, log};
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use std::path::{Path, PathBuf};

    /// Every file under `dir`, sorted by path.
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files(&path));
            } else {
                found.push(path);
            }
        }
        found.sort();
        found
    }

    /// The digest of a contract folder: each file's path (relative) and bytes.
    fn digest(dir: &Path) -> String {
        let mut hash = Sha256::new();
        for file in files(dir) {
            let relative = file
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            hash.update(relative.replace('\\', "/").as_bytes());
            hash.update([0]);
            hash.update(std::fs::read(&file).unwrap());
            hash.update([0]);
        }
        hex::encode(hash.finalize())
    }

    #[test]
    fn released_contracts_are_frozen() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let released = [(
            "0.1.0",
            "1d70393861e85f3c7dcdaefc06db678d92009e7321c4c5563a8b92733ebcef80",
        )];
        for (version, pinned) in released {
            assert_eq!(
                digest(&wit.join(version)),
                pinned,
                "wit/{version} is a released contract, frozen: apps built against it must keep \
                 running. Put the change in a new version folder (see wit/README.md)"
            );
        }
    }
}
