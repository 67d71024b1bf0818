//! One client connection: HTTP/2 served by hyper, closed when it sends no preface within the
//! handshake timeout or carries no authenticated call for the idle timeout, drained (GOAWAY,
//! in-flight calls finish) when the proxy drains, and cut when the accept loop sheds it to make room
//! for another. Calls that need no token (health, reflection) have a small budget of their own and
//! never keep a connection from being idle. The accept loop cuts whatever is still open when the
//! drain bound passes.

use super::cork::Corked;
use super::counters::TransportCounters;
use crate::auth::layer::{Requirement, requirement};
use crate::budget::{Budget, Held};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::Service;
use tower::limit::ConcurrencyLimit;

/// Bytes of the HTTP/2 client preface (24) and the header of the SETTINGS frame that must follow (9).
const PREFACE_BYTES: usize = 24 + 9;

/// How long an idle connection told to close (GOAWAY) may take to do so before it is cut: a live
/// client answers the GOAWAY's PING within a round trip.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a connection task needs beyond its socket.
#[derive(Debug)]
pub struct ConnectionSettings {
    /// The HTTP/2 server settings.
    pub http2: http2::Builder<TokioExecutor>,
    /// Close a connection that has not sent the preface by then.
    pub handshake_timeout: Duration,
    /// Close a connection without a call for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Most calls served at once on one connection.
    pub max_in_flight: usize,
    /// Most long-lived stream calls (Subscribe, Consume) open at once on one connection; they
    /// have this budget of their own, beside the unary calls'.
    pub max_stream_calls: usize,
    /// Most calls that need no token open at once on one connection.
    pub max_unauthenticated: usize,
    /// Calls that need no token open across the process.
    pub unauthenticated: Arc<Budget>,
    /// Where limits that bite are counted.
    pub counters: Arc<TransportCounters>,
}

/// A socket that notes when the client has sent the HTTP/2 preface.
/// It also stops reading while its connection is paused (see [`Activity::back_off`]): what the
/// client sends meanwhile waits in the kernel's socket buffer and its TCP window, not in the proxy.
struct Watched {
    stream: TcpStream,
    read: usize,
    preface: Arc<AtomicBool>,
    activity: Arc<Activity>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(until) = self.activity.paused_until() {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if pause.deadline() != until {
                pause.as_mut().reset(until);
            }
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.read < PREFACE_BYTES {
            self.read += buf.filled().len() - before;
            if self.read >= PREFACE_BYTES {
                self.preface.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// One connection's state as its calls and the accept loop see it: calls in progress and since when
/// it has had none, whether an authenticated call has used it, and the signal that sheds it.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<(usize, Option<Instant>)>,
    idle: Notify,
    stream_calls: AtomicUsize,
    opened: Instant,
    proven: AtomicBool,
    shed: Notify,
    unauthenticated: Arc<Budget>,
    /// Reads are paused until this many milliseconds after `opened` (0: not paused), and the next
    /// pause's length in milliseconds.
    paused_until_ms: AtomicU64,
    next_pause_ms: AtomicU64,
    peer: Option<SocketAddr>,
}

/// The first pause of a connection whose call was refused for want of request-buffer room; each
/// refusal while it has been refused within [`BACK_OFF_MEMORY`] doubles it, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause of a connection's reads.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// How long after its last pause a connection's next one starts again from [`FIRST_PAUSE`].
const BACK_OFF_MEMORY: Duration = Duration::from_secs(2);

/// One long-lived stream call's place in its connection's budget, until its response ends.
struct StreamCall(Arc<Activity>);

impl Drop for StreamCall {
    fn drop(&mut self) {
        self.0.stream_calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    /// A new connection's state, from `peer`, allowing `max_unauthenticated` calls that need no
    /// token at once.
    pub fn new(max_unauthenticated: usize, peer: Option<SocketAddr>) -> Self {
        Self {
            state: Mutex::new((0, Some(Instant::now()))),
            idle: Notify::new(),
            stream_calls: AtomicUsize::new(0),
            opened: Instant::now(),
            proven: AtomicBool::new(false),
            shed: Notify::new(),
            unauthenticated: Arc::new(Budget::new(max_unauthenticated)),
            paused_until_ms: AtomicU64::new(0),
            next_pause_ms: AtomicU64::new(FIRST_PAUSE.as_millis() as u64),
            peer,
        }
    }

    /// A place for one more stream call, unless `max` are open.
    fn open_stream_call(self: &Arc<Self>, max: usize) -> Option<StreamCall> {
        self.stream_calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamCall(self.clone()))
    }

    fn begin(self: &Arc<Self>) -> ActiveCall {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        state.1 = None;
        ActiveCall(self.clone())
    }

    fn idle_since(&self) -> Option<Instant> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Whether a call that may need a token is in progress on this connection.
    pub fn is_busy(&self) -> bool {
        self.idle_since().is_none()
    }

    /// Whether a call on this connection has passed authentication.
    pub fn is_proven(&self) -> bool {
        self.proven.load(Ordering::Relaxed)
    }

    /// Marks the connection as used by an authenticated call.
    pub fn prove(&self) {
        if !self.is_proven() {
            self.proven.store(true, Ordering::Relaxed);
        }
    }

    /// Pauses the connection's reads: one of its calls was refused because request bodies hold
    /// the process's buffer budget, and a client that keeps sending bodies then only pushes data the
    /// proxy would read to throw away. The pause doubles while refusals go on.
    pub fn back_off(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        let until = self.paused_until_ms.load(Ordering::Relaxed);
        let pause = if until != 0 && now < until + BACK_OFF_MEMORY.as_millis() as u64 {
            self.next_pause_ms.load(Ordering::Relaxed)
        } else {
            FIRST_PAUSE.as_millis() as u64
        };
        self.paused_until_ms
            .store((now + pause).max(1), Ordering::Relaxed);
        self.next_pause_ms.store(
            (pause * 2).min(LONGEST_PAUSE.as_millis() as u64),
            Ordering::Relaxed,
        );
    }

    /// Until when reads are paused, if they are.
    fn paused_until(&self) -> Option<Instant> {
        let until = self.paused_until_ms.load(Ordering::Relaxed);
        let at = self.opened + Duration::from_millis(until);
        (until != 0 && at > Instant::now()).then_some(at)
    }

    /// Tells the connection to close at once (the accept loop needs its slot).
    pub fn shed(&self) {
        self.shed.notify_one();
    }
}

/// One call in progress: from the request until its response body is finished or dropped. When
/// the last one ends, the connection is idle from then if an authenticated call has used it, and
/// from when it opened if none has: calls refused for want of a token never keep it open.
struct ActiveCall(Arc<Activity>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0 {
            state.1 = Some(if self.0.is_proven() {
                Instant::now()
            } else {
                self.0.opened
            });
            self.0.idle.notify_one();
        }
    }
}

/// In a call's request extensions: lets the guard mark the call's connection as used by an
/// authenticated caller, which keeps it from being shed and lets its calls count as activity.
#[derive(Clone, Debug)]
pub struct ConnectionTrust(Arc<Activity>);

impl ConnectionTrust {
    /// The call passed authentication.
    pub fn authenticated(&self) {
        self.0.prove();
    }

    /// The caller's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.0.peer
    }

    /// The call was refused for want of request-buffer room: pause the connection's reads.
    pub fn back_off(&self) {
        self.0.back_off();
    }
}

/// A response body that keeps its call counted as active (and a stream call, or a call that needs
/// no token, in its budgets) until it ends.
pub struct TrackedBody<B> {
    inner: B,
    _call: Option<ActiveCall>,
    _stream: Option<StreamCall>,
    _unauthenticated: Option<(Held, Option<Held>)>,
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts each call on the connection's [`Activity`] from the moment hyper accepts its stream
/// (hyper calls the service synchronously there), before the call waits for a concurrency slot.
#[derive(Clone)]
struct Tracked<H> {
    inner: H,
    activity: Arc<Activity>,
    settings: Arc<ConnectionSettings>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Whether a call that needs no token is a stream that may stay open (health Watch, reflection)
/// rather than one answered at once (health Check).
fn path_is_long_lived(path: &str) -> bool {
    path == "/grpc.health.v1.Health/Watch" || path.starts_with("/grpc.reflection.")
}

/// A call answered at once with `status`, its places released when the answer is sent.
fn refused<B: Default + Send + 'static, E: 'static>(
    status: tonic::Status,
    call: Option<ActiveCall>,
) -> BoxFuture<http::Response<TrackedBody<B>>, E> {
    let response = status.into_http::<B>().map(|inner| TrackedBody {
        inner,
        _call: call,
        _stream: None,
        _unauthenticated: None,
    });
    Box::pin(async move { Ok(response) })
}

impl<H, B> Tracked<H>
where
    H: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    H::Future: Send + 'static,
    H::Error: 'static,
    B: Default + Send + 'static,
{
    /// A call that needs no token (health, reflection): within the connection's and the process's
    /// budgets for such calls, and not counted as activity.
    fn call_unauthenticated(
        &self,
        mut request: http::Request<Incoming>,
    ) -> BoxFuture<http::Response<TrackedBody<B>>, H::Error> {
        request
            .extensions_mut()
            .insert(ConnectionTrust(self.activity.clone()));
        let settings = &self.settings;
        let Some(on_connection) = self.activity.unauthenticated.take(1) else {
            settings.counters.unauthenticated_refused.bump(1);
            return refused(
                tonic::Status::resource_exhausted(format!(
                    "this connection has {} calls open that need no token (health, reflection), the limit server.max_unauthenticated_calls_per_connection",
                    settings.max_unauthenticated
                )),
                None,
            );
        };
        // Health Check is answered at once and stays under the connection's budget only, so
        // streams held elsewhere can never fail a liveness probe; Watch and reflection streams
        // also draw from the process's.
        let long_lived = path_is_long_lived(request.uri().path());
        let in_process = if long_lived {
            settings.unauthenticated.take(1)
        } else {
            None
        };
        if long_lived && in_process.is_none() {
            if let Some(total) = settings.counters.unauthenticated_refused.bump(1) {
                tracing::warn!(
                    total,
                    max = settings.unauthenticated.max(),
                    "call refused: server.max_unauthenticated_calls streams without a token (health Watch, reflection) are open"
                );
            }
            return refused(
                tonic::Status::resource_exhausted(format!(
                    "the proxy has {} streams open that need no token (health Watch, reflection), the limit server.max_unauthenticated_calls; retry later",
                    settings.unauthenticated.max()
                )),
                None,
            );
        }
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _call: None,
                _stream: None,
                _unauthenticated: Some((on_connection, in_process)),
            }))
        })
    }
}

impl<H, B> hyper::service::Service<http::Request<Incoming>> for Tracked<H>
where
    H: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    H::Future: Send + 'static,
    H::Error: 'static,
    B: Default + Send + 'static,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = H::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        let path = request.uri().path();
        // A pattern method is found once; only other paths are asked whether they need a token.
        let streaming = match crate::patterns::method_of(path) {
            Some((_, method)) => method.streaming,
            None if requirement(path) == Requirement::Open => {
                return self.call_unauthenticated(request);
            }
            None => false,
        };
        let call = self.activity.begin();
        let max_stream_calls = self.settings.max_stream_calls;
        let stream = match streaming {
            false => None,
            true => match self.activity.open_stream_call(max_stream_calls) {
                Some(slot) => Some(slot),
                None => {
                    if let Some(total) = self.settings.counters.stream_calls_refused.bump(1) {
                        tracing::warn!(
                            total,
                            max = max_stream_calls,
                            "stream call refused: its connection holds server.max_stream_calls_per_connection"
                        );
                    }
                    return refused(
                        tonic::Status::resource_exhausted(format!(
                            "this connection holds {} Subscribe/Consume streams, the limit server.max_stream_calls_per_connection; open another connection",
                            max_stream_calls
                        )),
                        Some(call),
                    );
                }
            },
        };
        request
            .extensions_mut()
            .insert(ConnectionTrust(self.activity.clone()));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _call: Some(call),
                _stream: stream,
                _unauthenticated: None,
            }))
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a connection serves: hyper's requests in, responses with a [`ResponseBody`] out.
pub trait ConnectionService<B>:
    Service<
        http::Request<Incoming>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> ConnectionService<B> for S where
    S: Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + 'static
{
}

/// A response body hyper can send (and the guard can answer with, empty, plus a status).
pub trait ResponseBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Default + Unpin + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>>
        + Default
        + Unpin
        + Send
        + 'static
{
}

/// Serves one connection until it closes, times out, drains, or is shed.
pub async fn serve<S: ConnectionService<B>, B: ResponseBody>(
    stream: TcpStream,
    service: S,
    settings: Arc<ConnectionSettings>,
    activity: Arc<Activity>,
    mut drain: watch::Receiver<bool>,
) {
    let preface = Arc::new(AtomicBool::new(false));
    let cork = Corked::<Watched>::fits_this_runtime();
    let io = Watched {
        stream,
        read: 0,
        preface: preface.clone(),
        activity: activity.clone(),
        pause: None,
    };
    let service = Tracked {
        inner: TowerToHyperService::new(ConcurrencyLimit::new(
            service,
            settings.max_in_flight.max(1),
        )),
        activity: activity.clone(),
        settings: settings.clone(),
    };
    let mut conn = pin!(
        settings
            .http2
            .serve_connection(TokioIo::new(Corked::new(io, cork)), service)
    );
    let opened = Instant::now();
    let mut draining = *drain.borrow();
    let mut closing: Option<Instant> = None;
    if draining {
        return;
    }
    let far = || Instant::now() + Duration::from_secs(86_400);
    loop {
        let has_preface = preface.load(Ordering::Relaxed);
        let wake = match closing {
            Some(since) => since + CLOSE_GRACE,
            // Until the preface: the handshake deadline, or the idle one if that comes first
            // (and has not passed yet).
            None if !has_preface => {
                let handshake = opened + settings.handshake_timeout;
                match settings.idle_timeout.map(|idle| opened + idle) {
                    Some(idle) if idle < handshake && idle > Instant::now() => idle,
                    _ => handshake,
                }
            }
            None => match (settings.idle_timeout, activity.idle_since()) {
                (Some(idle), Some(since)) if !draining => since + idle,
                _ => far(),
            },
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = drain.changed(), if !draining => {
                draining = true;
                if !preface.load(Ordering::Relaxed) {
                    return; // Not yet HTTP/2: nothing to finish, nothing to say.
                }
                conn.as_mut().graceful_shutdown();
                if activity.idle_since().is_some() {
                    closing = Some(Instant::now());
                }
            }
            () = activity.shed.notified() => return,
            () = activity.idle.notified() => {
                // The last call of a draining connection ended: it gets the same grace to close.
                if draining && closing.is_none() && activity.idle_since().is_some() {
                    closing = Some(Instant::now());
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    if activity.idle_since().is_some() {
                        tracing::debug!("connection cut: it did not close after GOAWAY");
                        return;
                    }
                    // A call arrived before the client saw the GOAWAY: let it finish.
                    closing = None;
                    continue;
                }
                if !preface.load(Ordering::Relaxed) {
                    if opened.elapsed() < settings.handshake_timeout {
                        continue;
                    }
                    if let Some(total) = settings.counters.handshake_timeouts.bump(1) {
                        tracing::info!(total, timeout_ms = settings.handshake_timeout.as_millis() as u64,
                            "closed a connection that sent no HTTP/2 preface in time");
                    }
                    return;
                }
                let idle_for = activity.idle_since().map(|since| since.elapsed());
                if let (Some(idle), Some(idle_for)) = (settings.idle_timeout, idle_for) {
                    if idle_for >= idle && !draining {
                        if let Some(total) = settings.counters.idle_closed.bump(1) {
                            tracing::debug!(total, "closing an idle connection");
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                }
            }
        }
    }
}
