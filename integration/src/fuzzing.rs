//! Fuzz target bodies (feature `fuzzing`): each takes arbitrary bytes, runs them through one
//! parser that hostile input reaches, and panics only when a property that must hold for
//! every input does not. The `cargo fuzz` targets in `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`) call these same functions, so a crash the fuzzer found stays a
//! failing test until it is fixed.
//!
//! A panic here is a bug in the parser (hostile input must get an error, never a crash), or a
//! broken promise named in the panic message.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::{Signer, SigningKey};
use healthcloud_platform::auth::{AuthError, TokenIssuer, TokenVerifier, dev_key_path};
use healthcloud_platform::scope::{Interaction, Scope};

use crate::import::Importer;
use crate::query::{self, PageLimits, SearchQuery};
use crate::store::EmbeddedStore;

/// The header a JWT input without one of its own gets.
const EDDSA_HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

/// A SMART scope list, and each scope in it: parsing never panics, a parsed scope reads back
/// as itself from its text, and its query restriction parses as search filters or is refused.
pub fn scope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Scope::parse_list(text);
    for item in text.split_whitespace().chain([text]) {
        let Ok(Some(scope)) = Scope::parse(item) else {
            continue;
        };
        let written = scope.to_string();
        let again = Scope::parse(&written)
            .unwrap_or_else(|e| panic!("'{item}' parsed but its text '{written}' does not: {e}"))
            .unwrap_or_else(|| panic!("'{item}' parsed but its text '{written}' grants nothing"));
        assert_eq!(again, scope, "'{item}' reads back as another scope");
        let resource_type = scope.resource_type.as_deref().unwrap_or("Observation");
        for interaction in [
            Interaction::Create,
            Interaction::Read,
            Interaction::Update,
            Interaction::Delete,
            Interaction::Search,
        ] {
            let _ = scope.allows(interaction, resource_type);
        }
        if let Ok(type_def) = query::served_type(resource_type) {
            let _ = query::parse_restriction(type_def, &scope.restriction);
        }
    }
}

/// A FHIR search as `Type?query-string`, decoded like the API decodes a request's query:
/// parsing never panics, and a search that parsed never fails inside the database (a 500).
pub fn search_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (resource_type, query) = text.split_once('?').unwrap_or((text, ""));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let Ok(search) = SearchQuery::parse(resource_type, &params, PageLimits::default()) else {
        return;
    };
    let _ = search.named_patients();
    let (runtime, store) = sqlite();
    if let Err(error) = runtime.block_on(store.search(&search)) {
        assert_ne!(
            error.status(),
            500,
            "'{text}' parsed but its search failed inside the database: {error:?}"
        );
    }
}

/// A FHIR Bundle imported into an empty SQLite store: validation never panics, a refused
/// Bundle is refused with a client error, and a Bundle that validated is written.
pub fn bundle_import(data: &[u8]) {
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let (runtime, store) = sqlite();
    runtime.block_on(async {
        let mut importer = Importer::new(store);
        match importer.add(bundle).await {
            Ok(_) => {
                if let Err(error) = importer.finish().await {
                    panic!("a Bundle that validated could not be written: {error:?}");
                }
            }
            Err(error) => assert_ne!(
                error.status(),
                500,
                "a Bundle was refused with a server error: {error:?}"
            ),
        }
    });
}

/// JWT parsing, twice: the input as a token as a client sends it, and the input as
/// `header\nclaims` JSON (or claims alone, under an EdDSA header) signed by the issuer, so
/// the claims reach parsing and scope checks. Neither panics, and a token verified once
/// reads the same from the verifier's memory.
pub fn jwt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let issuer = fuzz_issuer();
    let verifier = issuer.verifier();
    verify_twice(&verifier, text.trim());

    let (header, claims) = text.split_once('\n').unwrap_or((EDDSA_HEADER, text));
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = fuzz_signing_key().sign(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    verify_twice(&verifier, &token);
}

fn verify_twice(verifier: &TokenVerifier, token: &str) {
    let first = verifier.verify(token);
    let second = verifier.verify(token);
    match (first, second) {
        (Ok(first), Ok(second)) => assert_eq!(first, second, "remembered differently"),
        // The second look may fall past the expiry the first one just met.
        (Ok(_), Err(AuthError::Expired)) => {}
        (Ok(_), Err(error)) => panic!("verified once, then refused: {error:?}"),
        (Err(first), second) => assert_eq!(Err(first), second, "refused differently"),
    }
}

/// The development issuer with a fixed key (the JWT target signs with it), so runs repeat.
fn fuzz_issuer() -> &'static TokenIssuer {
    static ISSUER: OnceLock<TokenIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let pem = fuzz_signing_key()
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 private key encodes");
        std::fs::write(dev_key_path(dir.path()), pem.as_bytes()).expect("the key is written");
        TokenIssuer::dev(dir.path()).expect("the fixed key loads")
    })
}

fn fuzz_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// One SQLite store per process, in a temporary folder, with the runtime that drives it.
fn sqlite() -> &'static (tokio::runtime::Runtime, EmbeddedStore) {
    static SQLITE: OnceLock<(tokio::runtime::Runtime, EmbeddedStore)> = OnceLock::new();
    SQLITE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime starts");
        let dir = tempfile::Builder::new()
            .prefix("healthcloud-fuzz-")
            .tempdir()
            .expect("a temporary folder")
            .keep();
        let url = format!("sqlite://{}", dir.join("fhir.db").display());
        let db = runtime
            .block_on(crate::open_database(&url))
            .expect("an empty SQLite database opens");
        (runtime, EmbeddedStore::new(db))
    })
}
