//! Builds the example apps from source (`example-apps/`, for `wasm32-wasip2`) and embeds
//! them, with their manifests, in `healthcloud`: `healthcloud up` installs them on a fresh
//! clone with nothing committed in binary form.

use std::path::PathBuf;

fn main() {
    // Read when the script runs (not compiled in), so a build script binary shared between
    // checkouts still builds this checkout's apps.
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.parent().expect("cli/ has a parent").to_owned();
    for watched in ["example-apps", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    let built = healthcloud_guestbuild::build(
        &root.join("example-apps/Cargo.toml"),
        &target_dir,
        healthcloud_guestbuild::Lockfile::Locked,
    )
    .unwrap_or_else(|error| panic!("building the example apps failed: {error:#}"));
    let mut code = String::from(
        "/// The example apps: (manifest, component).\npub const EXAMPLE_APPS: &[(&str, &[u8])] = &[\n",
    );
    for app in &built {
        let manifest = app.package_dir.join("healthcloud.toml");
        code.push_str(&format!(
            "    (include_str!({:?}), include_bytes!({:?})),\n",
            manifest.display().to_string(),
            app.wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("example_apps.rs"), code).expect("cannot write example_apps.rs");
}
