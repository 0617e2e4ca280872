//! Sending one request to addresses that were already checked.
//!
//! The shape follows wasmtime-wasi-http's `default_send_request` (TCP, rustls with the
//! webpki roots, hyper HTTP/1.1, the same timeouts), with one difference that matters: it
//! connects only to the checked [`SocketAddr`]s it is given, never resolving the authority, and
//! the host name is used only for TLS (SNI and certificate verification) and the `Host`
//! header the request already carries.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

/// Where to send a request: the checked addresses, and the name the guest asked for.
#[derive(Debug)]
pub(super) struct Destination<'a> {
    /// The addresses that were checked, tried in order; nothing else is connected to.
    pub addresses: &'a [SocketAddr],
    /// The host as the guest wrote it (a name or an IP literal), for TLS.
    pub host: &'a str,
    /// `https`.
    pub tls: bool,
}

/// The three timeouts of a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

/// Why a request failed before a response arrived. The guest sees one error code for all of
/// them (see [`Failure::code`]): which one it was would tell whether a port is closed,
/// filtered or open, and so scan ports.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error("TCP connect: {0}")]
    Connect(std::io::Error),
    #[error("TCP connect: no answer within {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP/1.1 handshake: {0}")]
    Handshake(String),
    #[error("no response head within {0:?}")]
    FirstByteTimeout(Duration),
    #[error("HTTP exchange: {0}")]
    Exchange(String),
}

impl Failure {
    /// What the guest is told: "could not connect", whatever the cause.
    pub(super) fn code(&self) -> Error {
        Error::DestinationUnavailable
    }
}

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Stream for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

/// One TLS client configuration for the process: the webpki roots, ring.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The name TLS verifies the certificate against: the host the guest asked for.
pub(super) fn server_name(host: &str) -> Option<ServerName<'static>> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ServerName::from(ip)),
        Err(_) => ServerName::try_from(host.to_owned()).ok(),
    }
}

/// Sends `request` to the first of `destination.addresses` that accepts a connection and
/// waits for the response head; the returned future drives the connection until the response
/// body is done.
pub(super) async fn send(
    mut request: http::Request<WasiBody>,
    destination: Destination<'_>,
    server_name: Option<ServerName<'static>>,
    timeouts: Timeouts,
) -> Result<(http::Response<WasiBody>, ResponseFuture), Failure> {
    let connect = async {
        let mut last = std::io::Error::other("no address to connect to");
        for address in destination.addresses {
            match TcpStream::connect(address).await {
                Ok(tcp) => return Ok(tcp),
                Err(error) => last = error,
            }
        }
        Err(last)
    };
    let tcp = tokio::time::timeout(timeouts.connect, connect)
        .await
        .map_err(|_| Failure::ConnectTimeout(timeouts.connect))?
        .map_err(Failure::Connect)?;
    let stream: Box<dyn Stream> = match (destination.tls, server_name) {
        (true, Some(name)) => {
            let connector = tokio_rustls::TlsConnector::from(tls_config());
            let tls = tokio::time::timeout(timeouts.connect, connector.connect(name, tcp))
                .await
                .map_err(|_| Failure::ConnectTimeout(timeouts.connect))?
                .map_err(Failure::Tls)?;
            Box::new(tls)
        }
        (true, None) => {
            return Err(Failure::Tls(std::io::Error::other(format!(
                "'{}' is not a name TLS can verify",
                destination.host
            ))));
        }
        (false, _) => Box::new(tcp),
    };
    let (mut sender, conn) = tokio::time::timeout(
        timeouts.connect,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Failure::ConnectTimeout(timeouts.connect))?
    .map_err(|e| Failure::Handshake(e.to_string()))?;

    // Origin form on the wire: the authority travels in the Host header only.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|e| Failure::Exchange(e.to_string()))?;

    let between_bytes = timeouts.between_bytes.max(Duration::from_nanos(1));
    let first_byte = timeouts.first_byte;
    let send = async move {
        let response = tokio::time::timeout(first_byte, sender.send_request(request))
            .await
            .map_err(|_| Failure::FirstByteTimeout(first_byte))?
            .map_err(|e| Failure::Exchange(e.to_string()))?;
        let mut timeout = tokio::time::interval(between_bytes);
        timeout.reset();
        Ok::<_, Failure>(response.map(|incoming| TimedBody { incoming, timeout }))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Wait for the response while driving the connection's I/O.
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(running) = conn.as_mut() else {
                return Poll::Pending;
            };
            let finished = ready!(Pin::new(running).poll(cx));
            conn = None;
            match finished {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(Failure::Exchange(e.to_string()))),
            }
        }
    })
    .await?;
    let io = async move {
        let Some(conn) = conn.take() else {
            return Ok(());
        };
        conn.await.map_err(|e| {
            if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }
        })
    };
    Ok((
        response.map(BodyExt::boxed_unsync),
        Box::new(io) as ResponseFuture,
    ))
}

/// A response body that fails when no bytes arrive for `between_bytes`.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_verifies_the_name_the_guest_asked_for_not_the_address() {
        assert_eq!(
            server_name("api.example.org"),
            Some(ServerName::try_from("api.example.org").unwrap())
        );
        assert_eq!(
            server_name("::1"),
            Some(ServerName::from(std::net::Ipv6Addr::LOCALHOST))
        );
        assert_eq!(server_name("under_score..example"), None);
    }
}
