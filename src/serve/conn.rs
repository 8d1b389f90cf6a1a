//! Accepting connections within bounds, so that no local user can starve
//! the client we serve.
//!
//! At most [`max_connections`] are open at once (well under the file limit);
//! when full, the oldest connection that has not yet shown the credential
//! makes room for the new one, so idle floods cannot lock our client out. A
//! connection must send a whole request head within [`HEADER_TIMEOUT`] (this
//! is also the keep-alive idle limit), request heads are bounded in size, and
//! a request [`Access`] does not admit is answered 401 and its connection
//! closed. Nothing is rebuilt before access is checked. On stop, the
//! listener closes and running responses get [`Bounds::grace`] to finish.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt as _;

use super::access::{unauthorized, Access};

/// How long a client may take to send a request head, or stay idle between requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head we buffer.
const MAX_HEAD: usize = 64 * 1024;
/// Connections open at once, at most (also bounded by the open-file limit).
const MAX_CONNECTIONS: usize = 256;

/// The connection cap: [`MAX_CONNECTIONS`], or a quarter of the soft
/// open-file limit when that is lower (rebuilds need descriptors too).
fn max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    MAX_CONNECTIONS.min(usize::try_from(soft / 4).unwrap_or(usize::MAX).max(8))
}

/// One open connection.
struct Open {
    /// It has sent a request with the credential.
    trusted: bool,
    /// Closes it when sent (or dropped).
    evict: Option<oneshot::Sender<()>>,
}

/// The connections open now, oldest first (ids only grow).
pub(crate) struct Gate {
    open: Mutex<BTreeMap<u64, Open>>,
    max: usize,
}

impl Gate {
    pub fn new(max: usize) -> Self {
        Gate {
            open: Mutex::new(BTreeMap::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Open>> {
        crate::lock(&self.open)
    }

    /// Let connection `id` in, evicting the oldest untrusted one when full;
    /// `None` (refused) when every open connection is trusted.
    pub fn admit(&self, id: u64) -> Option<oneshot::Receiver<()>> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let oldest = open.iter().find(|(_, c)| !c.trusted).map(|(id, _)| *id)?;
            if let Some(mut c) = open.remove(&oldest) {
                if let Some(evict) = c.evict.take() {
                    let _ = evict.send(());
                }
            }
        }
        let (evict, evicted) = oneshot::channel();
        open.insert(
            id,
            Open {
                trusted: false,
                evict: Some(evict),
            },
        );
        Some(evicted)
    }

    /// Connection `id` showed the credential: it is never evicted.
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

/// How a server ends and what it logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// How long running responses may go on after the stop.
    pub grace: Duration,
    /// Log every request (method, path, status) through tracing.
    pub access_log: bool,
}

impl Bounds {
    /// The hand-off: its client is gone when it stops.
    pub fn hand_off() -> Self {
        Bounds {
            grace: Duration::ZERO,
            access_log: false,
        }
    }
}

/// Serve `router` on `listener` to those `access` admits until `stop`
/// fires; every connection is closed when this returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    access: Arc<Access>,
    bounds: Bounds,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: oneshot::Receiver<()>,
) {
    let (draining, drain) = tokio::sync::watch::channel(false);
    let gate = Arc::new(Gate::new(max_connections()));
    let mut connections = tokio::task::JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            // Reap finished connection tasks as we go.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close.
                    tracing::warn!("image server: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let id = next_id;
        let Some(evicted) = gate.admit(id) else {
            continue;
        };
        let (gate, router, access) = (gate.clone(), router.clone(), access.clone());
        let (mut drain, tls) = (drain.clone(), tls.clone());
        connections.spawn(async move {
            let service = {
                let gate = gate.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (gate, router, access) = (gate.clone(), router.clone(), access.clone());
                    async move {
                        let (method, path) = (req.method().clone(), req.uri().path().to_string());
                        let response = if access.admits(req.headers()) {
                            gate.trust(id);
                            router.oneshot(req.map(Body::new)).await?
                        } else {
                            unauthorized()
                        };
                        if bounds.access_log {
                            tracing::info!(target: "access", "{method} {path} {}", response.status().as_u16());
                        }
                        Ok::<_, Infallible>(response)
                    }
                })
            };
            let mut evicted = evicted;
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
        });
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

/// HTTP/1.1 on one connection until it ends, is evicted, or (draining) has
/// finished the response in flight.
async fn drive<S, Svc>(
    io: S,
    service: Svc,
    evicted: &mut oneshot::Receiver<()>,
    drain: &mut tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<
        Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
    >,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD);
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
mod tests {
    use super::*;

    #[test]
    fn full_gate_evicts_the_oldest_untrusted() {
        let gate = Gate::new(3);
        let mut first = gate.admit(1).unwrap();
        let mut second = gate.admit(2).unwrap();
        let mut third = gate.admit(3).unwrap();
        gate.trust(1);
        // Full: 2 is the oldest untrusted.
        let _fourth = gate.admit(4).unwrap();
        assert!(second.try_recv().is_ok(), "evicted");
        assert!(first.try_recv().is_err() && third.try_recv().is_err());
        assert_eq!(gate.len(), 3);
        gate.trust(3);
        gate.trust(4);
        assert!(gate.admit(5).is_none(), "all trusted: refused");
        gate.leave(4);
        assert!(gate.admit(5).is_some());
    }

    #[test]
    fn cap_is_bounded_by_the_file_limit() {
        let cap = max_connections();
        assert!((8..=MAX_CONNECTIONS).contains(&cap));
    }
}
