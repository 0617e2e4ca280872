use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use healthcloud_package::address::internal_address;
use healthcloud_package::manifest::Capability;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::connect::{self, Destination, Timeouts};
use super::resolve::Resolve;
use crate::capability::{Grant, granted_host};
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
    /// Resolves granted names, once per request.
    pub resolver: Arc<dyn Resolve>,
}

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: ResponseFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, ResponseFuture), Error>> + Send>
    {
        drop(fut);
        let hooks = self.clone();
        Box::new(async move { hooks.send(request, options).await })
    }
}

impl OutboundHooks {
    /// Checks the request against the grant, resolves its host once, checks every address,
    /// and sends it to the first of those addresses that accepts a connection.
    async fn send(
        self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(http::Response<WasiBody>, ResponseFuture), Error> {
        let app = &self.app;
        // Held until the response body is done: each open request is a socket.
        let Ok(permit) = self.open_requests.clone().try_acquire_owned() else {
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
        let granted = self.grant.outbound_hosts();
        let Some(entry) = granted_host(&granted, &host, port) else {
            tracing::warn!(app = app.id, region = app.region, %host, port,
                "outgoing request refused: host not granted");
            return Err(Error::HttpRequestDenied);
        };
        // Internal addresses are reachable only through a grant entry that names an internal
        // destination itself, installed with the region admin's allowance: a public name
        // never leads inside, whatever its DNS answers.
        let internal_allowed = self.grant.allows_internal_addresses()
            && Capability::OutboundHttp(entry.clone())
                .internal_destination()
                .is_some();
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(self.timeout, self.resolver.resolve(&host, port))
                .await
                .map_err(|_| Error::DnsTimeout)?
                .map_err(|e| {
                    tracing::info!(app = app.id, region = app.region, %host, error = %e,
                        "outgoing request: the host does not resolve");
                    Error::DnsError {
                        rcode: None,
                        info_code: None,
                    }
                })?,
        };
        if addresses.is_empty() {
            return Err(Error::DestinationNotFound);
        }
        let internal: Vec<_> = addresses
            .iter()
            .filter_map(|a| internal_address(a.ip()).map(|why| (a, why)))
            .collect();
        if !internal.is_empty() && !internal_allowed {
            tracing::warn!(app = app.id, region = app.region, %host, ?addresses,
                why = %internal[0].1,
                "outgoing request refused: the host is or resolves to an address inside the network");
            return Err(Error::DestinationIpProhibited);
        }
        let timeout =
            |requested: Option<Duration>| requested.unwrap_or(self.timeout).min(self.timeout);
        let timeouts = Timeouts {
            connect: timeout(options.and_then(|o| o.connect_timeout)),
            first_byte: timeout(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: timeout(options.and_then(|o| o.between_bytes_timeout)),
        };
        let destination = Destination {
            addresses: &addresses,
            host: &host,
            tls,
        };
        let (response, io) =
            connect::send(request, destination, connect::server_name(&host), timeouts)
                .await
                .map_err(|failure| {
                    tracing::info!(app = app.id, region = app.region, %host, ?addresses,
                    cause = %failure, "outgoing request: could not connect");
                    failure.code()
                })?;
        let io = async move {
            let _permit = permit;
            Box::into_pin(io).await
        };
        Ok((response, Box::new(io) as ResponseFuture))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
