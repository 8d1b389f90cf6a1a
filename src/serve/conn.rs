//! Accepting connections within bounds, so that no client can starve the
//! others.
//!
//! At most [`max_connections`] are open at once (well under the file
//! limit), and at most [`Bounds::per_client`] from one address. When either
//! is full, a connection makes room for the new one: the oldest that has not
//! yet shown a credential, else the admitted one that has moved no byte for
//! the longest (at least [`EVICTABLE_AFTER`]), so neither idle floods nor
//! idle keep-alive connections of admitted users can lock others out; a new
//! connection is refused only when every admitted one is busy. A connection
//! must send a whole request head within [`HEADER_TIMEOUT`] (this is also
//! the keep-alive idle limit), request heads are bounded in size, and a
//! connection whose writes make no progress for [`Bounds::idle`] is
//! closed (a client that stops reading). A request [`Access`] does not
//! admit is answered 401 (429 after repeated failures) and its connection
//! closed. Nothing is rebuilt before access is checked. On stop, the
//! listener closes and running responses get [`Bounds::grace`] to finish.
//! What is served (routes and access) is read from a watch per request, so
//! a reload applies to the next request and running ones finish as they
//! began.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower::ServiceExt as _;

use super::access::{too_many, unauthorized, Access, Verdict};

/// How long a client may take to send a request head, or stay idle between requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry connection may make no progress sending before it is
/// closed (and a response wait for its client to read a chunk).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head we buffer. hyper reads in growing steps and checks
/// after a read, so its own bound is set to half: a head is refused before
/// 64 KiB in all.
const MAX_HEAD: usize = 64 * 1024;
/// Connections open at once, at most (also bounded by the open-file limit).
const MAX_CONNECTIONS: usize = 256;
/// Connections one registry client address may have open at once.
pub(crate) const PER_CLIENT_CONNECTIONS: usize = 32;
/// A connection that has moved no byte for this long may be closed to make room.
const EVICTABLE_AFTER: Duration = Duration::from_secs(2);

/// The connection cap: [`MAX_CONNECTIONS`], or a quarter of the soft
/// open-file limit when that is lower (rebuilds need descriptors too).
fn max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    MAX_CONNECTIONS.min(usize::try_from(soft / 4).unwrap_or(usize::MAX).max(8))
}

/// What is served: the routes, and who may read them.
#[derive(Clone)]
pub(crate) struct Site {
    /// The routes over the served content.
    pub router: Router,
    /// Who is answered.
    pub access: Arc<Access>,
}

/// The client's address, in each admitted request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub IpAddr);

/// When a connection last moved a byte, in milliseconds since its gate's start.
pub(crate) struct Activity {
    epoch: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let a = Activity {
            epoch,
            last: AtomicU64::new(0),
        };
        a.touch();
        a
    }

    /// A byte moved now.
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long no byte moved, as of `now` (ms since the epoch).
    fn idle_for(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// One open connection.
struct Open {
    client: IpAddr,
    /// It has sent a request with the credential.
    trusted: bool,
    activity: Arc<Activity>,
    /// Closes it when sent (or dropped).
    evict: Option<oneshot::Sender<()>>,
}

/// The connections open now, oldest first (ids only grow).
pub(crate) struct Gate {
    open: Mutex<BTreeMap<u64, Open>>,
    max: usize,
    per_client: usize,
    epoch: Instant,
}

impl Gate {
    pub fn new(max: usize, per_client: usize) -> Self {
        Gate {
            open: Mutex::new(BTreeMap::new()),
            max,
            per_client,
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
        crate::lock(&self.open)
    }

    /// A new connection's activity record.
    fn activity(&self) -> Arc<Activity> {
        Arc::new(Activity::new(self.epoch))
    }

    /// Let connection `id` from `client` in, making room as the module
    /// says; `None` (refused) when no connection can make room.
    pub fn admit(
        &self,
        id: u64,
        client: IpAddr,
        activity: Arc<Activity>,
    ) -> Option<oneshot::Receiver<()>> {
        let mut open = self.lock();
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mine = open.values().filter(|c| c.client == client).count();
        if mine >= self.per_client {
            evict(&mut open, now, |c| c.client == client)?;
        } else if open.len() >= self.max {
            evict(&mut open, now, |_| true)?;
        }
        let (evict, evicted) = oneshot::channel();
        open.insert(
            id,
            Open {
                client,
                trusted: false,
                activity,
                evict: Some(evict),
            },
        );
        Some(evicted)
    }

    /// Connection `id` showed the credential: it goes after the others
    /// when room is made.
    pub fn trust(&self, id: u64) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.trusted = true;
        }
    }

    /// Connection `id` is closed.
    pub fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Close a connection among those `eligible` to make room: the oldest that
/// has not shown a credential (a flood of them must not outlast our
/// clients' new connections), else the admitted one that has moved no byte
/// for longest, at least [`EVICTABLE_AFTER`]; `None` when none may go.
fn evict(open: &mut BTreeMap<u64, Open>, now: u64, eligible: impl Fn(&Open) -> bool) -> Option<()> {
    let untrusted = open
        .iter()
        .find(|(_, c)| !c.trusted && eligible(c))
        .map(|(id, _)| *id);
    let victim = untrusted.or_else(|| {
        open.iter()
            .filter(|(_, c)| eligible(c))
            .map(|(id, c)| (c.activity.idle_for(now), *id))
            .filter(|(idle, _)| *idle >= EVICTABLE_AFTER)
            .max_by_key(|(idle, _)| *idle)
            .map(|(_, id)| id)
    })?;
    if let Some(mut c) = open.remove(&victim) {
        if let Some(evict) = c.evict.take() {
            let _ = evict.send(());
        }
    }
    Some(())
}

/// A connection's socket, noting each byte that moves and failing a write
/// that makes no progress for `idle`.
struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
    idle: Duration,
    /// Since when a write has been waiting for the client.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Watched<S> {
    fn new(io: S, activity: Arc<Activity>, idle: Duration) -> Self {
        Watched {
            io,
            activity,
            idle,
            stalled: None,
        }
    }

    /// After a write or flush poll: progress resets the stall clock, a
    /// wait starts it, a wait past `idle` is an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Pending => {
                let idle = self.idle;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client read nothing",
                    ))),
                }
            }
            ready => {
                self.stalled = None;
                self.activity.touch();
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// How a server ends, what it logs, and its per-client bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// How long running responses may go on after the stop.
    pub grace: Duration,
    /// Log every request (method, path, status) through tracing.
    pub access_log: bool,
    /// How long a connection's writes may make no progress.
    pub idle: Duration,
    /// Connections one client address may have open.
    pub per_client: usize,
}

impl Bounds {
    /// The hand-off: its client is gone when it stops; skopeo may pause a
    /// blob while it commits another.
    pub fn hand_off() -> Self {
        Bounds {
            grace: Duration::ZERO,
            access_log: false,
            idle: Duration::from_secs(120),
            per_client: MAX_CONNECTIONS,
        }
    }
}

/// Serve the site `sites` holds on `listener` to those its access admits
/// until `stop` fires; every connection is closed when this returns.
pub(crate) async fn serve(
    listener: TcpListener,
    sites: watch::Receiver<Site>,
    bounds: Bounds,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: oneshot::Receiver<()>,
) {
    let (draining, drain) = watch::channel(false);
    let gate = Arc::new(Gate::new(max_connections(), bounds.per_client));
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            // Reap finished connection tasks as we go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close.
                    tracing::warn!("image server: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let (id, client) = (next_id, peer.ip());
        let activity = gate.activity();
        let Some(evicted) = gate.admit(id, client, activity.clone()) else {
            continue;
        };
        let stream = Watched::new(stream, activity, bounds.idle);
        let admitted = Admitted {
            id,
            client,
            gate: gate.clone(),
            evicted,
        };
        connections.spawn(connection(
            stream,
            admitted,
            sites.clone(),
            bounds,
            tls.clone(),
            drain.clone(),
        ));
    }
    drop(listener);
    if !bounds.grace.is_zero() {
        let _ = draining.send(true);
        let finished = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(bounds.grace, finished).await;
    }
    // Dropping the set aborts the connections still open.
    drop(connections);
}

/// A connection the gate let in.
struct Admitted {
    id: u64,
    client: IpAddr,
    gate: Arc<Gate>,
    /// Fires when the gate closes it to make room.
    evicted: oneshot::Receiver<()>,
}

/// Serve one connection (after the TLS handshake, if any) until it ends,
/// is evicted or, draining, has finished its response; then leave the gate.
async fn connection(
    stream: Watched<tokio::net::TcpStream>,
    admitted: Admitted,
    sites: watch::Receiver<Site>,
    bounds: Bounds,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut drain: watch::Receiver<bool>,
) {
    let Admitted {
        id,
        client,
        gate,
        mut evicted,
    } = admitted;
    let service = {
        let gate = gate.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (gate, site) = (gate.clone(), sites.borrow().clone());
            answer(req, site, client, bounds.access_log, move || gate.trust(id))
        })
    };
    match &tls {
        None => drive(stream, service, &mut evicted, &mut drain).await,
        // The handshake is bounded like a request head.
        Some(tls) => tokio::select! {
            shaken = tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)) => {
                if let Ok(Ok(stream)) = shaken {
                    drive(stream, service, &mut evicted, &mut drain).await;
                }
            }
            _ = &mut evicted => {}
        },
    }
    gate.leave(id);
}

/// One request: checked against the site's access, then routed.
async fn answer(
    req: Request<Incoming>,
    site: Site,
    client: IpAddr,
    access_log: bool,
    trusted: impl FnOnce(),
) -> Result<axum::response::Response, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = match site.access.check(req.headers(), client).await {
        Verdict::Admit => {
            trusted();
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ClientAddr(client));
            site.router.oneshot(req).await?
        }
        Verdict::Refuse => unauthorized(),
        Verdict::BackOff(wait) => too_many(wait),
    };
    if access_log {
        tracing::info!(target: "access", "{client} {method} {path} {}", response.status().as_u16());
    }
    Ok(response)
}

/// HTTP/1.1 on one connection until it ends, is evicted, or (draining) has
/// finished the response in flight.
async fn drive<S, Svc>(
    io: S,
    service: Svc,
    evicted: &mut oneshot::Receiver<()>,
    drain: &mut watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<
        Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
    >,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD / 2);
    let conn = http.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let draining = tokio::select! {
        _ = conn.as_mut() => false,
        _ = evicted => false,
        d = drain.wait_for(|d| *d) => d.is_ok(),
    };
    if draining {
        // Finish the response in flight, then close.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

#[cfg(test)]
mod tests;
