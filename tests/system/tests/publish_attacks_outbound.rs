//! A vendor pointing `outbound-http:` inside a region's network, from the attacker's side:
//! the catalog never calls such a destination "the internet", and an address written in
//! disguise is refused at publish. (That a region installs an internal destination only with
//! its admin's explicit, audited allowance is held by the runtime's `attacks_outbound`.)

mod common;

use common::{BACKENDS, StoreHost, hello_as, sign};
use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::RequestedCapability;

async fn with_acme(backend: common::Backend) -> Option<(StoreHost, SecretKey)> {
    let host = StoreHost::on(backend).await?;
    let key = SecretKey::generate();
    assert_eq!(host.register("acme", &key).await.status, 201);
    Some((host, key))
}

fn requesting(names: &[&str]) -> Vec<RequestedCapability> {
    names
        .iter()
        .map(|name| RequestedCapability {
            name: (*name).into(),
            justification: "Fetches the lab results.".into(),
        })
        .collect()
}

const INTERNAL: &[&str] = &[
    "outbound-http:169.254.169.254",
    "outbound-http:10.0.0.5:8080",
    "outbound-http:127.0.0.1",
    "outbound-http:[::1]",
    "outbound-http:[::ffff:127.0.0.1]",
    "outbound-http:localhost",
    "outbound-http:metadata.google.internal",
    "outbound-http:100.64.0.1",
];

#[tokio::test]
async fn an_internal_destination_is_published_as_an_address_inside_your_network_never_the_internet()
{
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (mut manifest, component) = hello_as("acme", "lab-bridge", "1.0.0");
        let mut names = INTERNAL.to_vec();
        names.push("outbound-http:api.example.org");
        manifest.requested = requesting(&names);
        let published = host
            .publish(&sign(&manifest, &component, &key), &component)
            .await;
        assert_eq!(published.status, 201, "{}", published.text());

        let detail = host.get("/store/v1/apps/acme/lab-bridge").await.json();
        let capabilities = detail["capabilities"].as_array().unwrap();
        assert_eq!(capabilities.len(), names.len());
        for capability in capabilities {
            let name = capability["name"].as_str().unwrap();
            let explanation = capability["explanation"].as_str().unwrap();
            if name == "outbound-http:api.example.org" {
                assert!(explanation.contains("over the internet"), "{explanation}");
            } else {
                assert!(
                    explanation.contains("an address inside your network")
                        && explanation.contains("only if the region admin allows")
                        && !explanation.contains("internet"),
                    "{name}: {explanation}"
                );
            }
        }
        let metadata = capabilities
            .iter()
            .find(|c| c["name"] == "outbound-http:169.254.169.254")
            .unwrap();
        assert!(
            metadata["explanation"]
                .as_str()
                .unwrap()
                .contains("cloud metadata service")
        );

        let page = host.get("/store/apps/acme/lab-bridge").await;
        assert_eq!(page.status, 200);
        let html = page.text();
        assert_eq!(
            html.matches("an address inside your network").count(),
            INTERNAL.len(),
            "{html}"
        );
    }
}

#[tokio::test]
async fn an_address_in_disguise_is_refused_at_publish_naming_the_address() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        for (disguised, meant) in [
            ("outbound-http:2130706433", "127.0.0.1"),
            ("outbound-http:0x7f000001:8080", "127.0.0.1"),
            ("outbound-http:0xa9fea9fe", "169.254.169.254"),
            ("outbound-http:0177.0.0.1", "127.0.0.1"),
            ("outbound-http:10.1", "10.0.0.1"),
        ] {
            let (mut manifest, component) = hello_as("acme", "lab-bridge", "1.0.0");
            manifest.requested = requesting(&[disguised]);
            let refused = host
                .publish(&sign(&manifest, &component, &key), &component)
                .await;
            assert_eq!(refused.status, 400, "{disguised}: {}", refused.text());
            let error = refused.json();
            assert_eq!(error["field"], "package.capability[0].name");
            let message = error["error"].as_str().unwrap();
            assert!(
                message.contains(&format!("the IPv4 address {meant} in disguise"))
                    && message.contains(&format!("outbound-http:{meant}")),
                "{disguised}: {message}"
            );
        }
        let (temporaries, blobs) = host.files();
        assert!(temporaries.is_empty() && blobs.is_empty());
        assert_eq!(host.get("/store/v1/apps/acme/lab-bridge").await.status, 404);
    }
}
