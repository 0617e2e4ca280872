//! Tokens from other issuers, from the attacker's side too: an identity provider on loopback
//! publishes its keys (discovery document and JWKS); healthcloud accepts its tokens, maps
//! their claims, follows its key rotation, and refuses forgeries (`alg: none`, HMAC signed
//! with the public key, an unknown key or issuer, a provider that cannot be reached).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use healthcloud_platform::auth::issuers::TrustedIssuers;
use healthcloud_platform::auth::{AuthError, Role, TokenIssuer, TokenVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://region.example/fhir/r4";

/// An identity provider on loopback: its issuer URL, and its published keys, which the test
/// may change (a rotation).
struct Provider {
    issuer: String,
    jwks: Arc<Mutex<Value>>,
}

impl Provider {
    async fn start() -> Provider {
        Self::pointing_to(None).await
    }

    /// A provider whose discovery document names `jwks_uri` (default: its own `/jwks`).
    async fn pointing_to(jwks_uri: Option<&str>) -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let jwks = Arc::new(Mutex::new(json!({"keys": []})));
        let jwks_uri = jwks_uri.map_or_else(|| format!("{issuer}/jwks"), str::to_owned);
        let discovery = json!({"issuer": issuer, "jwks_uri": jwks_uri});
        let published = jwks.clone();
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route(
                "/jwks",
                get(move || {
                    let keys = published.lock().unwrap().clone();
                    async move { axum::Json(keys) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Provider { issuer, jwks }
    }

    /// A provider publishing one key, `k1`.
    async fn with_one_key() -> (Provider, Key) {
        let provider = Self::start().await;
        let key = Key::new("k1", 1);
        provider.publish(&[&key]);
        (provider, key)
    }

    fn publish(&self, keys: &[&Key]) {
        *self.jwks.lock().unwrap() =
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }
}

/// An Ed25519 signing key of the provider, named `kid`.
struct Key {
    kid: String,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &str, seed: u8) -> Key {
        Key {
            kid: kid.into(),
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn jwk(&self) -> Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.signing.verifying_key().as_bytes());
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "use": "sig", "alg": "EdDSA"})
    }

    fn sign(&self, claims: &Value) -> String {
        let pem = self.signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

fn claims(issuer: &str, extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims =
        json!({"iss": issuer, "sub": "anna", "aud": AUDIENCE, "iat": now, "exp": now + 300});
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

fn verifier(provider: &Provider) -> TokenVerifier {
    let trusted = TrustedIssuers::default()
        .refetch_after(Duration::ZERO)
        .keys_max_age(Duration::ZERO)
        .with(&provider.issuer, "role")
        .unwrap();
    TokenIssuer::generate("healthcloud-dev-issuer")
        .verifier()
        .trusting(trusted)
}

/// A verifier trusting `issuer` with the default key refresh.
fn trusting(issuer: &str) -> TokenVerifier {
    TokenIssuer::generate("healthcloud-dev-issuer")
        .verifier()
        .trusting(TrustedIssuers::default().with(issuer, "role").unwrap())
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn a_trusted_providers_token_is_accepted_with_its_claims_mapped() {
    let (provider, key) = Provider::with_one_key().await;
    let verifier = verifier(&provider);
    let token = key.sign(&claims(
        &provider.issuer,
        json!({"role": "clinician", "scope": "user/Observation.rs", "fhirUser": "Practitioner/anna",
               "org": "rigshospitalet", "region": "hovedstaden"}),
    ));
    let principal = verifier.verify_request(&token).await.unwrap();
    assert_eq!(principal.claims.iss, provider.issuer);
    assert_eq!(principal.claims.role, Role::Clinician);
    assert_eq!(
        principal.claims.fhir_user.as_deref(),
        Some("Practitioner/anna")
    );
    assert_eq!(principal.claims.org.as_deref(), Some("rigshospitalet"));
    assert_eq!(principal.scopes.len(), 1);
    principal.check_audience(&[AUDIENCE]).unwrap();
    // A token for another service is the services' to refuse, as for healthcloud's own.
    assert!(matches!(
        principal.check_audience(&["https://other.example/fhir/r4"]),
        Err(AuthError::WrongAudience { .. })
    ));
}

#[tokio::test]
async fn the_role_comes_from_the_role_claim_or_the_scopes_and_a_token_with_neither_is_refused() {
    let (provider, key) = Provider::with_one_key().await;
    let verifier = verifier(&provider);
    let role = async |extra: Value| {
        verifier
            .verify_request(&key.sign(&claims(&provider.issuer, extra)))
            .await
            .map(|principal| principal.claims.role)
    };
    assert_eq!(
        role(json!({"scope": "user/Patient.rs", "fhirUser": "Practitioner/anna"}))
            .await
            .unwrap(),
        Role::Clinician
    );
    // user/ scopes alone make no clinician: patients may hold them too.
    assert!(role(json!({"scope": "user/Patient.rs"})).await.is_err());
    assert!(
        role(
            json!({"scope": "patient/*.rs user/Practitioner.rs", "patient": "pat-a",
                    "fhirUser": "Patient/pat-a", "org": "region-h"})
        )
        .await
        .is_err()
    );
    // A role claim that is not one role name is refused, not guessed around.
    let refused = role(
        json!({"role": ["patient"], "patient": "pat-a", "scope": "user/Patient.rs",
                              "fhirUser": "Practitioner/x"}),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("one role name"), "{refused}");
    // Administrators come from healthcloud's own issuer only, whatever region they name.
    for admin in [
        "platform-operator",
        "store-admin",
        "region-admin",
        "security-officer",
        "publisher",
    ] {
        let refused = role(json!({"role": admin, "region": "some-other-region"}))
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("may not grant"),
            "{admin}: {refused}"
        );
    }
    assert_eq!(
        role(json!({"scope": "patient/Observation.rs", "patient": "pat-a"}))
            .await
            .unwrap(),
        Role::Patient
    );
    // Someone else's patient context is no patient's own token.
    assert!(
        role(
            json!({"scope": "patient/Observation.rs", "patient": "pat-a",
                    "fhirUser": "Patient/pat-b"})
        )
        .await
        .is_err()
    );
    let refused = role(json!({"scope": "openid"})).await.unwrap_err();
    assert!(refused.to_string().contains("'role' claim"), "{refused}");
    let refused = role(json!({"role": "emperor"})).await.unwrap_err();
    assert!(refused.to_string().contains("'emperor'"), "{refused}");
    // patient/ scopes without a patient are nobody's own record.
    assert!(
        role(json!({"scope": "patient/Observation.rs"}))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_rotated_out_key_is_refused_once_the_new_one_is_seen() {
    let provider = Provider::start().await;
    let (old, new) = (Key::new("old", 1), Key::new("new", 2));
    provider.publish(&[&old]);
    let verifier = verifier(&provider);
    let clinician = json!({"role": "clinician"});
    let before = old.sign(&claims(&provider.issuer, clinician.clone()));
    verifier.verify_request(&before).await.unwrap();
    provider.publish(&[&new]);
    let fresh = new.sign(&claims(&provider.issuer, clinician.clone()));
    verifier.verify_request(&fresh).await.unwrap();
    // A new token under the old key: the provider publishes it no more.
    let mut late = claims(&provider.issuer, clinician);
    late["jti"] = json!("late");
    let refused = verifier.verify_request(&old.sign(&late)).await.unwrap_err();
    assert!(refused.to_string().contains("no key 'old'"), "{refused}");
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let (provider, key) = Provider::with_one_key().await;
    let verifier = verifier(&provider);
    let body = claims(&provider.issuer, json!({"role": "clinician"}));

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "k1"})),
        b64(&body)
    );
    assert!(verifier.verify_request(&none).await.is_err());

    // HS256 keyed with the provider's public key, which anyone can read.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let public = key.signing.verifying_key();
    let hmac =
        jsonwebtoken::encode(&header, &body, &EncodingKey::from_secret(public.as_bytes())).unwrap();
    let refused = verifier.verify_request(&hmac).await.unwrap_err();
    assert!(refused.to_string().contains("HS256"), "{refused}");

    // Signed by a key the provider never published, under a published key's id.
    let stranger = Key {
        kid: "k1".into(),
        signing: SigningKey::from_bytes(&[9; 32]),
    };
    assert!(
        verifier
            .verify_request(&stranger.sign(&body))
            .await
            .is_err()
    );

    // The right signature, tampered claims.
    let token = key.sign(&body);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut tampered = body.clone();
    tampered["role"] = json!("platform-operator");
    parts[1] = b64(&tampered);
    assert!(verifier.verify_request(&parts.join(".")).await.is_err());

    // An issuer nobody trusts, with keys of its own.
    let other = Provider::start().await;
    other.publish(&[&key]);
    let foreign = key.sign(&claims(&other.issuer, json!({"role": "clinician"})));
    assert!(verifier.verify_request(&foreign).await.is_err());

    // Expired.
    let mut expired = body.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    assert_eq!(
        verifier
            .verify_request(&key.sign(&expired))
            .await
            .unwrap_err(),
        AuthError::Expired
    );
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_or_names_another_issuer_lets_no_token_in() {
    // Nobody listens there.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let key = Key::new("k1", 1);
    let verifier = trusting(&gone);
    let refused = verifier
        .verify_request(&key.sign(&claims(&gone, json!({"role": "clinician"}))))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("cannot be fetched"),
        "{refused}"
    );

    // A discovery document of another issuer (a misconfiguration, or a provider lying).
    let provider = Provider::start().await;
    provider.publish(&[&key]);
    let pretender = format!("{}/", provider.issuer);
    let verifier = trusting(&pretender);
    let refused = verifier
        .verify_request(&key.sign(&claims(&pretender, json!({"role": "clinician"}))))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("another issuer"), "{refused}");
}

/// Keys decide who may read patients' data: they are fetched over https only (http only from
/// this machine), the issuer's and the key set's own URL alike.
#[tokio::test]
async fn keys_are_never_fetched_over_plain_http_from_another_machine() {
    let refused = TrustedIssuers::default()
        .with("http://idp.region.example", "role")
        .unwrap_err();
    assert!(refused.to_string().contains("https"), "{refused}");
    TrustedIssuers::default()
        .with("https://idp.region.example", "role")
        .unwrap();

    let provider = Provider::pointing_to(Some("http://keys.region.example/jwks")).await;
    let key = Key::new("k1", 1);
    let verifier = verifier(&provider);
    let refused = verifier
        .verify_request(&key.sign(&claims(&provider.issuer, json!({"role": "clinician"}))))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not https"), "{refused}");
}

/// The verified-token memory is shared by a verifier's clones: a token one clone accepted
/// from a trusted provider is still no token of healthcloud's own issuer (`verify`), nor of a
/// clone that trusts nobody.
#[tokio::test]
async fn a_token_accepted_from_a_trusted_provider_stays_that_providers_only() {
    let (provider, key) = Provider::with_one_key().await;
    let plain = TokenIssuer::generate("healthcloud-dev-issuer").verifier();
    let trusting = plain.clone().trusting(
        TrustedIssuers::default()
            .with(&provider.issuer, "role")
            .unwrap(),
    );
    let token = key.sign(&claims(
        &provider.issuer,
        json!({"role": "clinician", "org": "o"}),
    ));
    assert!(plain.verify_request(&token).await.is_err());
    trusting.verify_request(&token).await.unwrap();
    assert!(trusting.verify(&token).is_err(), "own issuer only");
    assert!(plain.verify_request(&token).await.is_err(), "trusts nobody");
}

/// A key of a kind not used for signatures here (an X25519 encryption key) sits beside the
/// signing key without making it unusable; a key withdrawn by the provider is refused once
/// the keys are fetched again, even while tokens name only keys already known.
#[tokio::test]
async fn other_kinds_of_keys_are_skipped_and_withdrawn_ones_refused() {
    let provider = Provider::start().await;
    let (k1, k2) = (Key::new("k1", 1), Key::new("k2", 2));
    *provider.jwks.lock().unwrap() = json!({"keys": [k1.jwk(), k2.jwk(), {
        "kty": "OKP", "crv": "X25519", "use": "enc", "kid": "enc1",
        "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"
    }]});
    let verifier = verifier(&provider);
    let clinician = |jti: &str| claims(&provider.issuer, json!({"role": "clinician", "jti": jti}));
    verifier
        .verify_request(&k1.sign(&clinician("a")))
        .await
        .unwrap();
    provider.publish(&[&k2]);
    let refused = verifier
        .verify_request(&k1.sign(&clinician("b")))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("no key 'k1'"), "{refused}");
    verifier
        .verify_request(&k2.sign(&clinician("c")))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_providers_own_claim_names_are_read_as_configured() {
    use healthcloud_platform::auth::issuers::ClaimNames;
    let (provider, key) = Provider::with_one_key().await;
    let names = ClaimNames::default()
        .mapped(&[
            "role=hc_role".into(),
            "org=hospital_org".into(),
            "fhirUser=profile".into(),
        ])
        .unwrap();
    let verifier = TokenIssuer::generate("healthcloud-dev-issuer")
        .verifier()
        .trusting(
            TrustedIssuers::default()
                .with_claims(&provider.issuer, names)
                .unwrap(),
        );
    let token = key.sign(&claims(
        &provider.issuer,
        json!({"hc_role": "clinician", "scope": "user/Observation.rs", "profile": "Practitioner/anna",
               "hospital_org": "rigshospitalet",
               // Claims of healthcloud's own names are not read when mapped elsewhere.
               "role": "patient", "org": "elsewhere"}),
    ));
    let principal = verifier.verify_request(&token).await.unwrap();
    assert_eq!(principal.claims.role, Role::Clinician);
    assert_eq!(principal.claims.org.as_deref(), Some("rigshospitalet"));
    assert_eq!(
        principal.claims.fhir_user.as_deref(),
        Some("Practitioner/anna")
    );
    for wrong in ["rol=x", "role", "role=", "sub=user"] {
        assert!(
            ClaimNames::default().mapped(&[wrong.into()]).is_err(),
            "{wrong}"
        );
    }
}
