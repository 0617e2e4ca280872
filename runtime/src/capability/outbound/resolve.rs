//! Name resolution for outgoing requests, behind a trait so a deployment can bring its own
//! resolver and tests can play a DNS server that changes its answer (rebinding).

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

/// What a resolution answers: every address the name has, with the port.
pub type Resolution<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Resolves a host name. The runtime asks once per outgoing request, checks every address in
/// the answer, and connects to one of those addresses: nothing resolves the name again.
pub trait Resolve: Debug + Send + Sync + 'static {
    /// The addresses of `host` (a name, never an IP literal) for `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolution<'a>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolution<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}
