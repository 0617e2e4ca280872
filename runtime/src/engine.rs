//! One wasmtime `Engine` for all apps: pooling allocator, epoch interruption, the linker with
//! every host capability, and a compile cache on disk.

use std::collections::HashMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::capability::Capabilities;
use crate::install::{self, InstallError, Prepared};
use crate::instance::InstanceState;
use crate::limits::{EPOCH_TICK, Limits};
use healthcloud_package::manifest::Manifest;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// The engine, its linker and the compile cache.
pub struct AppEngine {
    engine: Engine,
    linker: Linker<InstanceState>,
    cache: Option<CompileCache>,
    /// Components loaded now, by digest: every install of the same bytes (one version in many
    /// regions) shares one compiled, pre-instantiated component.
    loaded: Mutex<HashMap<String, Weak<Prepared>>>,
    /// Set when swap appears while slots are reset by scan (see [`AppEngine::new`]): from
    /// then on no instance may start.
    swap_appeared: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for AppEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEngine")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl AppEngine {
    /// An engine sized by `limits`, caching compiled code in `cache_dir` when given.
    pub fn new(limits: &Limits, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        // Per-component maxima a Rust wasm32-wasip2 component stays well within, and pool
        // totals that fit every slot at its maximum, so no component can take a share of
        // the pool beyond its own slot.
        const CORE_INSTANCES: u32 = 32;
        const MEMORIES: u32 = 2;
        const TABLES: u32 = 32;
        let slots = limits.pool_instances;
        let scan_reset = !swap_active(SWAPS);
        if !scan_reset {
            tracing::warn!(
                "swap is active (or {SWAPS} cannot be read): instance memory is reset the slower \
                 way, since the fast one cannot see swapped-out pages; turn swap off on app \
                 cloud nodes for full speed"
            );
        }
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(slots)
            .total_core_instances(slots * CORE_INSTANCES)
            .total_memories(slots * MEMORIES)
            .total_tables(slots * TABLES)
            .total_stacks(slots)
            .max_core_instances_per_component(CORE_INSTANCES)
            .max_memories_per_component(MEMORIES)
            .max_tables_per_component(TABLES)
            .max_memory_size(limits.memory_bytes)
            // A slot's memory goes back to the next instance as it was, without page faults:
            // the kernel's PAGEMAP_SCAN lists the pages the last instance wrote; the first
            // 64 KiB of them are reset in place and everything after the last one listed is
            // returned to the kernel (Linux 6.7+; elsewhere the first 64 KiB are zeroed and the
            // rest returned). Hello with a fresh instance per request: about 10k -> 20k
            // requests/s here, the server's CPU per request 160 -> 63 µs. With the scan,
            // keeping 1 MiB resident measured the same as 64 KiB; without it, 30% slower.
            // The scan cannot see a written page that was swapped out: such a page would be
            // neither reset nor returned, and the next instance could read it. So it is used
            // only while no swap is active (see `refuses_instances`).
            .pagemap_scan(if scan_reset {
                Enabled::Auto
            } else {
                Enabled::No
            })
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10)
            // Returning a slot's memory to the kernel flushes the TLB on every core; in batches
            // that costs far less per request (hello, fresh instances: +15% requests/s here).
            .decommit_batch_size(16);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling))
            .epoch_interruption(true)
            .wasm_component_model(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the WebAssembly engine")?;
        let swap_appeared = scan_reset.then(|| Arc::new(AtomicBool::new(false)));
        start_epoch_ticker(&engine, swap_appeared.clone());
        let mut linker = Linker::new(&engine);
        // WASI and wasi:http (its outgoing handler included: the outbound capability's hooks
        // decide what leaves), then every platform capability links itself.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Capabilities::link(&mut linker)?;
        let cache = cache_dir
            .map(|dir| CompileCache::open(dir, &engine))
            .transpose()?;
        Ok(AppEngine {
            engine,
            linker,
            cache,
            loaded: Default::default(),
            swap_appeared,
        })
    }

    /// Why no instance may start, if swap was turned on after the engine chose to reset
    /// memory by scan: a swapped-out page of one request's instance could reach the next.
    pub(crate) fn refuses_instances(&self) -> Option<&'static str> {
        self.swap_appeared
            .as_ref()
            .is_some_and(|appeared| appeared.load(Ordering::Relaxed))
            .then_some(
                "swap was turned on after this node started, and its instance memory reset \
                 cannot see swapped-out pages: no app instance starts until the node is \
                 restarted (or swap is turned off again)",
            )
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Validates `component` against `manifest` (a component, not a core module or
    /// precompiled code; every import allowed by name by the requested capabilities; the
    /// wasi:http handler exported), compiles it and pre-instantiates it. Returns the
    /// pre-instantiated app and the component's sha256.
    pub(crate) fn prepare(
        &self,
        manifest: &Manifest,
        component: &[u8],
    ) -> Result<(Arc<Prepared>, String), InstallError> {
        let digest = install::digest(component);
        let shared = self
            .loaded
            .lock()
            .expect("loaded components lock poisoned")
            .get(&digest)
            .and_then(Weak::upgrade);
        if let Some(prepared) = shared {
            // The same bytes passed every check already; only this manifest's allowance of
            // their imports is new.
            install::check_component_imports(&self.engine, &prepared.component, manifest)?;
            return Ok((prepared, digest));
        }
        let compiled = install::validate(
            |bytes| self.compile_digested(bytes, &digest),
            &self.engine,
            component,
            manifest,
        )?;
        let instance_pre = self
            .linker
            .instantiate_pre(&compiled)
            .map_err(|e| InstallError::Invalid(format!("{e:#}")))?;
        let pre =
            ProxyPre::new(instance_pre).map_err(|e| InstallError::NotAnApp(format!("{e:#}")))?;
        let prepared = Arc::new(Prepared {
            component: compiled,
            pre,
        });
        let mut loaded = self.loaded.lock().expect("loaded components lock poisoned");
        loaded.retain(|_, weak| weak.strong_count() > 0);
        loaded.insert(digest.clone(), Arc::downgrade(&prepared));
        Ok((prepared, digest))
    }

    /// Checks `component` against `manifest` as an install would, without installing it
    /// (`healthcloud app build`, the store's publish).
    pub fn validate(&self, manifest: &Manifest, component: &[u8]) -> Result<(), InstallError> {
        self.prepare(manifest, component).map(|_| ())
    }

    /// Compiles a component, or loads the code this data directory compiled for the same
    /// bytes earlier.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        self.compile_digested(bytes, &install::digest(bytes))
    }

    /// [`compile`](Self::compile) for bytes whose sha256 `digest` the caller just computed.
    fn compile_digested(&self, bytes: &[u8], digest: &str) -> anyhow::Result<Component> {
        if let Some(cache) = &self.cache
            && let Some(component) = cache.load(&self.engine, digest)
        {
            return Ok(component);
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Some(cache) = &self.cache
            && let Err(error) = cache.store(digest, &component)
        {
            tracing::warn!(%error, digest, "could not cache compiled code; it will be compiled again");
        }
        Ok(component)
    }
}

/// Advances the epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine, swap_appeared: Option<Arc<AtomicBool>>) {
    let weak = engine.weak();
    // Swap is looked for about once a second.
    let swap_every = (Duration::from_secs(1).as_millis() / EPOCH_TICK.as_millis()).max(1);
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            let mut ticks: u128 = 0;
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                ticks += 1;
                if let Some(appeared) = &swap_appeared
                    && ticks.is_multiple_of(swap_every)
                {
                    look_for_swap(SWAPS, appeared);
                }
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("cannot start the epoch thread");
}

/// Records in `appeared` whether swap is active now, by the table at `path`, and says so
/// loudly when it has just appeared.
fn look_for_swap(path: &str, appeared: &AtomicBool) {
    let active = swap_active(path);
    let before = appeared.swap(active, Ordering::Relaxed);
    if active && !before {
        tracing::error!(
            "swap was turned on: app instances are refused (503) until this node restarts or \
             swap is off again"
        );
    }
}

/// Where Linux lists the active swap areas (zram and other compressed swap included).
const SWAPS: &str = "/proc/swaps";

/// Whether any swap area is active, by the table at `path` (a header line, then one line per
/// area). Unreadable counts as active: the fast reset is only used when swap is known off.
fn swap_active(path: &str) -> bool {
    fs::read_to_string(path).map_or(true, |table| {
        table.lines().skip(1).any(|line| !line.trim().is_empty())
    })
}

/// Compiled code on disk, keyed by the component's digest and the engine's configuration.
///
/// `Component::deserialize` trusts its input completely (it is machine code), so a file is
/// only loaded if it carries a MAC, under a key kept beside (not in) the cache directory, over
/// the component's digest, the engine configuration and the code: code is loaded only if we
/// wrote it, for exactly those bytes.
#[derive(Debug)]
struct CompileCache {
    dir: PathBuf,
    key: Vec<u8>,
    engine_hash: String,
}

type CacheMac = Hmac<Sha256>;
const MAC_BYTES: usize = 32;

impl CompileCache {
    fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        create_private_dir(dir)?;
        let key_path = dir.with_extension("key");
        let key = match fs::read(&key_path) {
            Ok(key) if key.len() == 32 => key,
            _ => {
                let mut key = vec![0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                let parent = key_path.parent().unwrap_or(Path::new("."));
                write_atomically(parent, &key_path, &key)?;
                key
            }
        };
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CompileCache {
            dir: dir.to_owned(),
            key,
            engine_hash: format!("{:016x}", hasher.finish()),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    fn mac(&self, digest: &str) -> CacheMac {
        let mut mac = CacheMac::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(digest.as_bytes());
        mac.update(self.engine_hash.as_bytes());
        mac
    }

    fn load(&self, engine: &Engine, digest: &str) -> Option<wasmtime::component::Component> {
        let path = self.path(digest);
        let bytes = fs::read(&path).ok()?;
        let split = bytes.len().checked_sub(MAC_BYTES)?;
        let (code, tag) = bytes.split_at(split);
        let mut mac = self.mac(digest);
        mac.update(code);
        if mac.verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "compiled code failed its integrity check; recompiling");
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: the MAC proves this process's data directory wrote these bytes from
        // `Component::serialize` on an engine with the same configuration (part of the name).
        let component = unsafe { Component::deserialize(engine, code) };
        component
            .inspect_err(|error| tracing::warn!(%error, "cached code did not load; recompiling"))
            .ok()
    }

    fn store(&self, digest: &str, component: &Component) -> anyhow::Result<()> {
        let mut bytes = component.serialize()?;
        let mut mac = self.mac(digest);
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        write_atomically(&self.dir, &self.path(digest), &bytes)
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Temporary file, fsync, rename, fsync of the directory: a crash leaves the old file or
/// the new one, never half of one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_swap_table_without_areas_counts_as_swap_off() {
        let dir = tempfile::tempdir().unwrap();
        let table = |text: &str| {
            let path = dir.path().join("swaps");
            fs::write(&path, text).unwrap();
            swap_active(path.to_str().unwrap())
        };
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!table(header));
        assert!(table(&format!(
            "{header}/dev/zram0                              partition\t4194300\t\t0\t\t100\n"
        )));
        assert!(swap_active(dir.path().join("missing").to_str().unwrap()));
    }

    #[test]
    fn swap_turned_on_after_start_refuses_instances_until_it_is_off_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swaps");
        let path = path.to_str().unwrap();
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        let mut engine = AppEngine::new(
            &Limits {
                pool_instances: 1,
                ..Limits::default()
            },
            None,
        )
        .unwrap();
        // As the engine is when it chose the scan reset (swap off at start).
        let appeared = Arc::new(AtomicBool::new(false));
        engine.swap_appeared = Some(appeared.clone());

        fs::write(path, header).unwrap();
        look_for_swap(path, &appeared);
        assert_eq!(engine.refuses_instances(), None);

        fs::write(path, format!("{header}/swapfile file 1048572 0 -2\n")).unwrap();
        look_for_swap(path, &appeared);
        assert!(
            engine
                .refuses_instances()
                .unwrap()
                .contains("swap was turned on")
        );

        fs::write(path, header).unwrap();
        look_for_swap(path, &appeared);
        assert_eq!(engine.refuses_instances(), None);
    }
}
