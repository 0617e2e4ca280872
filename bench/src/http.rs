//! The load generator of the `compare` benchmark: HTTP/1.1 over loopback with keep-alive,
//! a fixed number of connections each sending its next request as soon as the previous answer
//! is read, for a fixed time, every request's latency recorded and every status checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Every `BODY_CHECK_EVERY`-th response of a connection (and its first) has its body checked;
/// every response has its status checked.
const BODY_CHECK_EVERY: usize = 50;

/// What one request is and what a correct answer looks like.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// Sent as `Authorization: Bearer …` when present.
    pub bearer: Option<String>,
    /// What a correct body holds.
    pub check: BodyCheck,
}

/// What a correct response body holds.
#[derive(Debug, Clone)]
pub enum BodyCheck {
    /// Exactly this text.
    Equals(String),
    /// This text somewhere.
    Contains(String),
}

impl BodyCheck {
    /// Fails, quoting the start of the body, when `body` is not a correct answer.
    pub fn verify(&self, body: &[u8]) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(body);
        let ok = match self {
            BodyCheck::Equals(expected) => text == expected.as_str(),
            BodyCheck::Contains(expected) => text.contains(expected.as_str()),
        };
        anyhow::ensure!(
            ok,
            "wrong body: expected {self:?}, got {} bytes starting {:?}",
            body.len(),
            text.chars().take(300).collect::<String>()
        );
        Ok(())
    }
}

/// What one timed round of load produced.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Requests answered (all with status 200).
    pub requests: usize,
    /// From the moment every connection was open until the last answer was read.
    pub elapsed: Duration,
    /// Each request's latency: request written to body fully read.
    pub latencies: Vec<Duration>,
}

/// Opens `connections` keep-alive connections to `target`, then sends requests on all of
/// them for `duration` (requests under way when it ends are completed and counted). Any
/// status other than 200, a wrong body, or a broken connection fails the round.
pub async fn load(
    target: &Target,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Round> {
    let connections = connections.max(1);
    // The connections open first; the clock starts when all of them are ready.
    let start = Arc::new(Barrier::new(connections + 1));
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut client = Client::connect(target).await?;
        let start = start.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let deadline = Instant::now() + duration;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let check = latencies.len() % BODY_CHECK_EVERY == 0;
                let started = Instant::now();
                let body = client.get_ok().await?;
                latencies.push(started.elapsed());
                if check {
                    target
                        .check
                        .verify(&body)
                        .with_context(|| format!("http://{}{}", target.addr, target.path))?;
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    start.wait().await;
    let started = Instant::now();
    let mut round = Round::default();
    for task in tasks {
        round.latencies.extend(task.await??);
    }
    round.elapsed = started.elapsed();
    round.requests = round.latencies.len();
    Ok(round)
}

/// One GET on a fresh connection: the status and body (for checking answers before a run).
pub async fn get(target: &Target) -> anyhow::Result<(StatusCode, Bytes)> {
    Client::connect(target).await?.get().await
}

/// One keep-alive connection sending `target`'s request.
struct Client {
    connection: Connection,
    target: Target,
}

impl Client {
    async fn connect(target: &Target) -> anyhow::Result<Client> {
        Ok(Client {
            connection: Connection::open(target.addr, target.bearer.as_deref()).await?,
            target: target.clone(),
        })
    }

    async fn get(&mut self) -> anyhow::Result<(StatusCode, Bytes)> {
        self.connection.get(&self.target.path).await
    }

    async fn get_ok(&mut self) -> anyhow::Result<Bytes> {
        self.connection.get_ok(&self.target.path).await
    }
}

/// One keep-alive HTTP/1.1 connection to a server, sending GETs with the same bearer token.
pub struct Connection {
    sender: http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Connection {
    /// Connects to `addr`; every request will carry `Authorization: Bearer <bearer>` when
    /// given.
    pub async fn open(addr: SocketAddr, bearer: Option<&str>) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Ends when the sender is dropped (or the server closes the connection).
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            authorization: bearer
                .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
                .transpose()?,
        })
    }

    /// GETs `path` (with its query): the status and the whole body.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::get(path)
            .header(HOST, self.host.clone())
            .body(Empty::new())?;
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        self.sender.ready().await.with_context(|| {
            format!("{} closed the connection (keep-alive expected)", self.addr)
        })?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// The body of a 200 answer to a GET of `path`; any other status is an error quoting the
    /// body.
    pub async fn get_ok(&mut self, path: &str) -> anyhow::Result<Bytes> {
        let (status, body) = self.get(path).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "http://{}{path}: {status} {}",
            self.addr,
            String::from_utf8_lossy(&body)
                .chars()
                .take(500)
                .collect::<String>()
        );
        Ok(body)
    }
}
