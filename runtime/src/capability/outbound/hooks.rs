use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::capability::Grant;
use healthcloud_integration::policy::AppIdentity;

/// The outgoing-HTTP policy of one instance.
#[derive(Debug, Clone)]
pub struct OutboundHooks {
    /// The install's live grant.
    pub grant: Grant,
    /// Who is calling out, for the log.
    pub app: Arc<AppIdentity>,
    /// Time to connect and to the first byte.
    pub timeout: Duration,
    /// Outgoing requests this instance may have open at once.
    pub open_requests: Arc<Semaphore>,
}

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: ResponseFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseFuture), Error>> + Send>
    {
        drop(fut);
        let granted = self.grant.outbound_hosts();
        let app = self.app.clone();
        let timeout = self.timeout;
        let open_requests = self.open_requests.clone();
        Box::new(async move {
            // Held until the response body is done: each open request is a socket.
            let Ok(permit) = open_requests.try_acquire_owned() else {
                return Err(Error::ConnectionLimitReached);
            };
            let uri = request.uri().clone();
            let host = uri
                .host()
                .ok_or(Error::HttpRequestUriInvalid)?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            if granted_host(&granted, &host, port).is_none() {
                tracing::warn!(app = app.id, region = app.region, %host, port,
                    "outgoing request refused: host not granted");
                return Err(Error::HttpRequestDenied);
            }
            let literal: Option<IpAddr> = host.parse().ok();
            let addresses: Vec<SocketAddr> = match literal {
                Some(ip) => vec![SocketAddr::new(ip, port)],
                None => {
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
                        .await
                        .map_err(|_| Error::DnsTimeout)?
                        .map_err(|e| Error::DnsError {
                            rcode: Some(e.to_string()),
                            info_code: None,
                        })?
                        .collect()
                }
            };
            // A granted name must not be a way into the internal network: every address it
            // resolves to is checked, and the request goes to a checked address, not to a
            // second lookup that could answer differently.
            // A literal address that passed the grant check is named by the grant itself.
            let explicitly_granted = literal.is_some();
            let Some(address) = addresses.first().copied() else {
                return Err(Error::DestinationNotFound);
            };
            if !explicitly_granted && addresses.iter().any(|a| is_internal(a.ip())) {
                tracing::warn!(app = app.id, region = app.region, %host, ?addresses,
                    "outgoing request refused: the host resolves to an internal address");
                return Err(Error::DestinationIpProhibited);
            }
            if !tls {
                // The Host header is already set from the original authority.
                let mut parts = uri.into_parts();
                parts.authority = Some(
                    address
                        .to_string()
                        .parse()
                        .map_err(|_| Error::HttpRequestUriInvalid)?,
                );
                *request.uri_mut() =
                    http::Uri::from_parts(parts).map_err(|_| Error::HttpRequestUriInvalid)?;
            }
            // For https the connection re-resolves the name, but TLS then requires a
            // certificate for that name, which an internal server cannot present.
            let options = RequestOptions {
                connect_timeout: Some(
                    options
                        .and_then(|o| o.connect_timeout)
                        .unwrap_or(timeout)
                        .min(timeout),
                ),
                first_byte_timeout: Some(
                    options
                        .and_then(|o| o.first_byte_timeout)
                        .unwrap_or(timeout)
                        .min(timeout),
                ),
                between_bytes_timeout: Some(
                    options
                        .and_then(|o| o.between_bytes_timeout)
                        .unwrap_or(timeout)
                        .min(timeout),
                ),
            };
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let io = async move {
                let _permit = permit;
                io.await
            };
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as ResponseFuture,
            ))
        })
    }
}

/// The grant entry that allows `host:port`, if any: `host` (any port) or `host:port`, IPv6
/// literals in brackets (`[2001:db8::1]:8443`), compared as parsed authorities.
fn granted_host<'a>(granted: &'a [String], host: &str, port: u16) -> Option<&'a String> {
    granted.iter().find(|grant| {
        let Ok(authority) = grant.parse::<http::uri::Authority>() else {
            return false;
        };
        let granted_host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        granted_host.eq_ignore_ascii_case(host) && authority.port_u16().is_none_or(|p| p == port)
    })
}

/// Loopback, private, link-local (including cloud metadata at 169.254.169.254), shared,
/// unspecified, broadcast, multicast and documentation addresses.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

/// Only global unicast (2000::/3) is public, minus the ranges in it that tunnel to IPv4
/// (6to4, Teredo) or are reserved for documentation.
fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    let global_unicast = (first & 0xe000) == 0x2000;
    !global_unicast
        || first == 0x2002
        || (first == 0x2001 && second == 0x0000)
        || (first == 0x2001 && second == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "8.8.8.8",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn grants_match_host_or_host_and_port() {
        let granted = vec![
            "example.org".to_owned(),
            "127.0.0.1:8080".to_owned(),
            "[fd00::1]:8443".to_owned(),
        ];
        assert!(granted_host(&granted, "fd00::1", 8443).is_some());
        assert!(granted_host(&granted, "fd00::1:8443", 22).is_none());
        assert!(granted_host(&granted, "example.org", 443).is_some());
        assert!(granted_host(&granted, "127.0.0.1", 8080).is_some());
        assert!(granted_host(&granted, "127.0.0.1", 8081).is_none());
        assert!(granted_host(&granted, "evil.example.org", 443).is_none());
    }
}
