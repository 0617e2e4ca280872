//! Where notifications go: the endpoints subscribers name, judged as hostile input. An
//! endpoint is an `https` URL on the public internet, checked as named and again as resolved
//! at every connection (a name that resolves inside a network is refused, so rebinding it
//! reaches nothing), never followed through a redirect. A deployment whose receivers live
//! inside its network (and `up`, on one machine) allows internal endpoints, `http` included.
//!
//! Every notification is signed: `X-Healthcloud-Signature: t=<unix seconds>,v1=<hex>`, the
//! HMAC-SHA256 of `<t>.<body>` under the subscription's secret (shown to the subscriber once,
//! when it is made), so a receiver can tell healthcloud's notifications from forgeries and
//! refuse replays of old ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use healthcloud_platform::address::{internal_address, internal_host};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

/// The header carrying a notification's signature.
pub const SIGNATURE_HEADER: &str = "x-healthcloud-signature";

/// How long an endpoint has to answer one notification.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The headers a subscriber may not set (`channel.header`): the request's own framing and
/// the signature.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "trailer",
    "connection",
    "keep-alive",
    "expect",
    "te",
    "upgrade",
    SIGNATURE_HEADER,
];

/// Which endpoints a deployment notifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Whether endpoints inside a network (loopback, private addresses, local names) are
    /// allowed, and with them plain `http`.
    pub allow_internal: bool,
}

/// Checks an endpoint a subscriber named: the URL, or why it is refused.
pub fn check_endpoint(text: &str, policy: EndpointPolicy) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("'{text}' is not a URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_internal => {}
        _ => return Err(format!("'{text}' must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "an endpoint carries no user name or password: send credentials in channel.header"
                .into(),
        );
    }
    if url.fragment().is_some() {
        return Err("an endpoint has no fragment".into());
    }
    // The URL parser reads an IPv4 address in any form (`2130706433`, `0x7f000001`) as the
    // address it means: the host judged is that address.
    let Some(host) = url.host_str() else {
        return Err(format!("'{text}' has no host"));
    };
    if !policy.allow_internal
        && let Some(why) = internal_host(host)
    {
        return Err(format!(
            "'{host}' is inside a network ({why}): this deployment notifies public endpoints only"
        ));
    }
    Ok(url)
}

/// Checks `channel.header` lines (`Name: value`): the pairs, or why one is refused.
pub fn check_headers(lines: &[String]) -> Result<Vec<(String, String)>, String> {
    if lines.len() > 10 {
        return Err("at most 10 headers".into());
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("'{line}' is not 'Name: value'"));
        };
        let (name, value) = (name.trim(), value.trim());
        let valid = HeaderName::from_bytes(name.as_bytes()).is_ok()
            && HeaderValue::from_str(value).is_ok()
            && !value.contains(['\r', '\n']);
        if !valid {
            return Err(format!("'{name}' is not a valid header"));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(format!("the header '{name}' is set by healthcloud"));
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(headers)
}

/// The signature header's value for `body` at `t` (unix seconds) under `secret`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", mac(secret, t, body))
}

/// The HMAC-SHA256 of `<t>.<body>` under `key`, in hex: what signatures and websocket
/// binding tokens carry.
pub fn mac(key: &str, t: i64, body: &[u8]) -> String {
    hex::encode(keyed(key, t, body).finalize().into_bytes())
}

/// Whether `given` (hex) is the HMAC-SHA256 of `<t>.<body>` under `key`, compared in time
/// independent of where they differ.
pub fn mac_matches(key: &str, t: i64, body: &[u8], given: &str) -> bool {
    hex::decode(given).is_ok_and(|bytes| keyed(key, t, body).verify_slice(&bytes).is_ok())
}

fn keyed(key: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac
}

/// Resolves names for notifications, refusing a name with an address inside a network
/// unless the policy allows those.
#[derive(Debug)]
struct GuardedResolver {
    policy: EndpointPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.allow_internal
                && let Some(inside) = addresses.iter().find_map(|a| internal_address(a.ip()))
            {
                return Err(format!("'{host}' resolves inside a network ({inside})").into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// Sends notifications.
#[derive(Debug, Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    policy: EndpointPolicy,
}

impl Webhooks {
    /// A sender under `policy`.
    pub fn new(policy: EndpointPolicy) -> Webhooks {
        // No proxy: one would resolve the name itself, past the guard.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .build()
            .expect("a TLS backend");
        Webhooks { client, policy }
    }

    /// The policy it sends under.
    pub fn policy(&self) -> EndpointPolicy {
        self.policy
    }

    /// POSTs `body` (a notification Bundle) to `endpoint` with `headers`, signed under
    /// `secret`: `Ok` when the endpoint answered 2xx, else what happened (said without the
    /// endpoint's answer, which is not ours to pass on).
    pub async fn post(
        &self,
        endpoint: &str,
        headers: &[(String, String)],
        body: String,
        secret: &str,
    ) -> Result<(), String> {
        // Checked again: the policy may have changed since the subscription was made.
        let url = check_endpoint(endpoint, self.policy)?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                map.append(name, value);
            }
        }
        let t = chrono::Utc::now().timestamp();
        let signed = signature(secret, t, body.as_bytes());
        let response = self
            .client
            .post(url)
            .headers(map)
            .header(reqwest::header::CONTENT_TYPE, "application/fhir+json")
            .header(SIGNATURE_HEADER, signed)
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("the endpoint answered {status}")),
        }
    }
}

/// A failed request in words, without the endpoint's own text.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("the endpoint did not answer within {} s", TIMEOUT.as_secs());
    }
    // A name the guard refused reads as any other failure to connect: saying that it
    // resolves inside a network would map the network's names for whoever asks.
    if error.is_connect() {
        return "could not connect to the endpoint".into();
    }
    "the request to the endpoint failed".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_public_https_unless_internal_ones_are_allowed() {
        let strict = EndpointPolicy::default();
        let open = EndpointPolicy {
            allow_internal: true,
        };
        assert!(check_endpoint("https://hooks.example.org/fhir", strict).is_ok());
        for refused in [
            "http://hooks.example.org/",
            "https://127.0.0.1/",
            "https://localhost:8443/",
            "https://10.0.0.5/",
            "https://[::1]/",
            "https://169.254.169.254/latest",
            "https://2130706433/",
            "https://user:pw@hooks.example.org/",
            "ftp://hooks.example.org/",
            "not a url",
        ] {
            assert!(check_endpoint(refused, strict).is_err(), "{refused}");
        }
        assert!(check_endpoint("http://127.0.0.1:9000/hook", open).is_ok());
        assert!(check_endpoint("https://0x7f000001/", strict).is_err());
    }

    #[test]
    fn headers_are_names_and_values_and_not_ours() {
        let ok = check_headers(&["Authorization: Bearer abc".into()]).unwrap();
        assert_eq!(ok, [("Authorization".into(), "Bearer abc".into())]);
        for refused in [
            "Content-Type: text/plain",
            "Proxy-Authorization: x",
            "Expect: 100-continue",
            "X-Healthcloud-Signature: x",
            "no colon",
            "Bad Name: x",
        ] {
            assert!(check_headers(&[refused.into()]).is_err(), "{refused}");
        }
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_time_and_body() {
        let signed = signature("secret", 1700000000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(signed, format!("t=1700000000,v1={expected}"));
    }
}
