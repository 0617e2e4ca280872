//! The publisher's side of the store, run as the real `healthcloud` binary: keys, signing a
//! built app and verifying what was signed, and the errors of remote commands that a user
//! meets before any store answers.

mod common;

use std::path::{Path, PathBuf};

use common::{fail_in, free_port, succeed_in};

#[test]
fn keygen_writes_a_private_key_and_its_public_half_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeed_in(dir.path(), &["keygen", "--out", "keys/acme.key"]);
    let key = dir.path().join("keys/acme.key");
    let public = dir.path().join("keys/acme.key.pub");
    assert!(
        out.contains("keys/acme.key") && out.contains("keys/acme.key.pub"),
        "{out}"
    );
    let id = key_id(&out);
    let pem = std::fs::read_to_string(&public).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let public_key = healthcloud_package::keys::PublicKey::from_pem(&pem).unwrap();
    assert_eq!(
        public_key.id().as_str(),
        id,
        "the printed id names FILE.pub"
    );
    let secret = healthcloud_package::keys::SecretKey::read(&key).unwrap();
    assert_eq!(secret.public(), public_key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads a private key");
    }

    let before = std::fs::read(&key).unwrap();
    let refused = fail_in(dir.path(), &["keygen", "--out", "keys/acme.key"]);
    assert!(
        refused.contains("already exists") && refused.contains("choose another --out"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the old key is intact"
    );
    // A stray FILE.pub is not overwritten either: it may be another key's public half.
    std::fs::write(dir.path().join("other.key.pub"), "someone's").unwrap();
    let refused = fail_in(dir.path(), &["keygen", "--out", "other.key"]);
    assert!(
        refused.contains("other.key.pub already exists"),
        "{refused}"
    );
    assert!(!dir.path().join("other.key").exists());
}

/// The id `keygen` or `app sign` printed on a `key id:` line.
fn key_id(out: &str) -> String {
    let line = out
        .lines()
        .find_map(|line| line.trim().strip_prefix("key id:"))
        .unwrap_or_else(|| panic!("no key id printed:\n{out}"));
    let id = line.trim().to_owned();
    assert_eq!(id.len(), 64, "{out}");
    id
}

/// A vendor signs a new app and anyone can check it offline; changing one byte of the
/// component, or a word of the signed description, is caught and named.
#[test]
fn a_signed_app_verifies_and_any_change_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    succeed_in(dir, &["app", "new", "my-app", "--publisher", "acme"]);
    let keygen = succeed_in(dir, &["keygen", "--out", "acme.key"]);

    let signed = succeed_in(dir, &["app", "sign", "my-app", "--key", "acme.key"]);
    assert!(signed.contains("signed acme/my-app 0.1.0"), "{signed}");
    assert_eq!(key_id(&signed), key_id(&keygen), "{signed}");
    let envelope = PathBuf::from(
        signed
            .lines()
            .find_map(|line| line.trim().strip_prefix("signature:"))
            .unwrap_or_else(|| panic!("no signature path printed:\n{signed}"))
            .trim(),
    );
    let envelope = dir.join(envelope);
    assert!(envelope.to_str().unwrap().ends_with(".wasm.sig.json"));
    let wasm = PathBuf::from(
        envelope
            .to_str()
            .unwrap()
            .strip_suffix(".sig.json")
            .unwrap(),
    );
    let sha256 = line_value(&signed, "sha256:");

    for path in [&wasm, &envelope] {
        let verified = succeed_in(dir, &["app", "verify", path.to_str().unwrap()]);
        assert!(verified.contains("app:       acme/my-app"), "{verified}");
        assert!(verified.contains("version:   0.1.0"), "{verified}");
        assert_eq!(line_value(&verified, "sha256:"), sha256);
        assert_eq!(key_id(&verified), key_id(&keygen));
        assert!(verified.contains("signature: valid"), "{verified}");
    }

    let component = std::fs::read(&wasm).unwrap();
    let mut flipped = component.clone();
    flipped[component.len() / 2] ^= 0x01;
    std::fs::write(&wasm, &flipped).unwrap();
    let refused = fail_in(dir, &["app", "verify", wasm.to_str().unwrap()]);
    assert!(
        refused.contains("the component is not the one that was signed")
            && refused.contains(&format!("signed {sha256}")),
        "{refused}"
    );
    std::fs::write(&wasm, &component).unwrap();

    let original = std::fs::read_to_string(&envelope).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
    json["package"]["app"]["description"] = "Now also reads your mail.".into();
    std::fs::write(&envelope, json.to_string()).unwrap();
    let refused = fail_in(dir, &["app", "verify", wasm.to_str().unwrap()]);
    assert!(
        refused.contains("does not hold") && refused.contains("signature does not verify"),
        "{refused}"
    );
    std::fs::write(&envelope, &original).unwrap();
    succeed_in(dir, &["app", "verify", wasm.to_str().unwrap()]);

    std::fs::remove_file(&envelope).unwrap();
    let unsigned = fail_in(dir, &["app", "verify", wasm.to_str().unwrap()]);
    assert!(unsigned.contains("healthcloud app sign"), "{unsigned}");
}

/// The value after `label` on the line that starts with it.
fn line_value(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{out}"))
        .trim()
        .to_owned()
}

/// Remote commands fail before any slow work when a token is missing, and name the server
/// they could not reach; both messages say what to do.
#[test]
fn remote_commands_name_the_missing_token_and_the_unreachable_server() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    succeed_in(dir, &["app", "new", "my-app", "--publisher", "acme"]);
    succeed_in(dir, &["keygen", "--out", "acme.key"]);

    let no_token = fail_in(dir, &["app", "publish", "my-app", "--key", "acme.key"]);
    assert!(
        no_token.contains("--token")
            && no_token.contains("HEALTHCLOUD_TOKEN")
            && no_token.contains("healthcloud token --role publisher --sub acme"),
        "{no_token}"
    );
    assert!(
        !Path::new(dir).join("my-app/target").exists(),
        "nothing was built for a publish that cannot succeed"
    );

    let server = format!("http://127.0.0.1:{}", free_port());
    let unreachable = fail_in(
        dir,
        &[
            "store",
            "approve-publisher",
            "--publisher",
            "acme",
            "--name",
            "Acme Health",
            "--key",
            "acme.key.pub",
            "--server",
            &server,
            "--token",
            "t",
        ],
    );
    assert!(
        unreachable.contains(&format!("cannot reach the store at {server}"))
            && unreachable.contains("healthcloud up")
            && unreachable.contains("--server"),
        "{unreachable}"
    );

    let private_as_public = fail_in(
        dir,
        &[
            "store",
            "approve-publisher",
            "--publisher",
            "acme",
            "--name",
            "Acme Health",
            "--key",
            "acme.key",
            "--token",
            "t",
        ],
    );
    assert!(
        private_as_public.contains("is not a public key") && private_as_public.contains("FILE.pub"),
        "{private_as_public}"
    );

    let bad_app = fail_in(
        dir,
        &["store", "yank", "--app", "acme/my-app", "--token", "t"],
    );
    assert!(bad_app.contains("publisher/app@version"), "{bad_app}");
}

/// The whole publisher loop against a running `healthcloud up`, through the CLI only: a store
/// admin approves the publisher, the vendor publishes (again: a no-op), the store refuses
/// changed content under the same version with the fix in the message, `app verify --server`
/// checks the package against the store, and a revoked version fails verification.
#[test]
fn a_vendor_publishes_with_the_cli_and_the_store_holds_it_to_its_signature() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let up = common::Up::start(data.path(), free_port(), None);
    let data_dir = data.path().to_str().unwrap();
    let token = |role: &str, sub: &str| {
        succeed_in(
            dir,
            &[
                "token",
                "--data-dir",
                data_dir,
                "--role",
                role,
                "--sub",
                sub,
            ],
        )
        .trim()
        .to_owned()
    };
    let (admin, vendor) = (token("store-admin", "admin"), token("publisher", "acme"));
    let run = |token: &str, args: &[&str]| {
        common::command_in(dir, args)
            .env("HEALTHCLOUD_SERVER", &up.url)
            .env("HEALTHCLOUD_TOKEN", token)
            .output()
            .unwrap()
    };
    let text = |output: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };

    succeed_in(dir, &["keygen", "--out", "acme.key"]);
    succeed_in(dir, &["app", "new", "my-app", "--publisher", "acme"]);
    let approve = [
        "store",
        "approve-publisher",
        "--publisher",
        "acme",
        "--name",
        "Acme Health",
        "--key",
        "acme.key.pub",
    ];
    let refused = run(&vendor, &approve);
    assert!(
        !refused.status.success(),
        "a publisher cannot approve itself"
    );
    assert!(text(&refused).contains("store-admin"), "{}", text(&refused));
    let approved = run(&admin, &approve);
    assert!(approved.status.success(), "{}", text(&approved));

    let publish = ["app", "publish", "my-app", "--key", "acme.key"];
    let published = run(&vendor, &publish);
    assert!(published.status.success(), "{}", text(&published));
    assert!(
        text(&published).contains("published acme/my-app@0.1.0"),
        "{}",
        text(&published)
    );
    let again = run(&vendor, &publish);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("identical content"),
        "{}",
        text(&again)
    );

    let wasm = find_signed_wasm(&dir.join("my-app")).expect("the publish left a signed component");
    let verified = run(&vendor, &["app", "verify", wasm.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", text(&verified));

    // Other content under the same version.
    let manifest = dir.join("my-app/healthcloud.toml");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let changed = original.replacen("description = \"", "description = \"Changed. ", 1);
    assert_ne!(changed, original);
    std::fs::write(&manifest, &changed).unwrap();
    let conflict = run(&vendor, &publish);
    assert!(!conflict.status.success());
    assert!(
        text(&conflict).contains("version 0.1.0 of acme/my-app is already published with different content: bump the version"),
        "{}",
        text(&conflict)
    );
    std::fs::write(&manifest, &original).unwrap();
    run(&vendor, &["app", "sign", "my-app", "--key", "acme.key"]);

    let revoked = run(
        &admin,
        &[
            "store",
            "revoke-version",
            "--app",
            "acme/my-app@0.1.0",
            "--reason",
            "leaks data",
        ],
    );
    assert!(revoked.status.success(), "{}", text(&revoked));
    let verified = run(&vendor, &["app", "verify", wasm.to_str().unwrap()]);
    assert!(
        !verified.status.success(),
        "a revoked version does not verify"
    );
    assert!(
        text(&verified).contains("leaks data"),
        "{}",
        text(&verified)
    );
    up.kill();
}

/// The `.wasm` beside a `.wasm.sig.json` under `dir`.
fn find_signed_wasm(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(wasm) = path.to_str().and_then(|p| p.strip_suffix(".sig.json")) {
                return Some(PathBuf::from(wasm));
            }
        }
    }
    None
}
