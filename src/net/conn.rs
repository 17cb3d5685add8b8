//! Connections that no client can keep from others (SPEC section 13), for both ports.
//!
//! Every accepted TCP connection gets an [`Activity`]: what the transport above it is doing
//! (requests in flight, through [`Busy`]) and what the socket is doing (bytes written, a
//! write that waits for the peer), both kept in atomics that the connection's own task
//! updates. A watchdog task per connection closes the socket when either rule is broken:
//! - **send**: while a request is in flight or a write waits, nothing has been written for
//!   the send timeout: the peer stopped reading its answers (a full socket, or HTTP/2 flow
//!   control that the peer never opens);
//! - **idle**: with nothing in flight, nothing has happened for the idle timeout since the
//!   last request ended (or the connection was accepted): no request head, no TLS
//!   handshake, no HTTP/2 preface, or an HTTP/2 connection that only pings.
//!
//! Closing is `shutdown(2)` on a duplicate of the socket, with `SO_LINGER` 0: the kernel
//! wakes whatever task waits on the connection, every later read or write fails, and the
//! protocol's own dispatcher drops the connection, whatever state it was in. No transport
//! needs to be polled for the rule to hold.
//!
//! [`Watched`] is the socket side: it wraps the TCP stream under TLS and the protocol and
//! counts what it writes. [`Activity::ahead`] is a connection's budget for response bytes
//! that a body has handed to the protocol and that have not been written out yet: gRPC's
//! bodies wait while it is spent ([`Budgeted`]), so a connection whose peer does not read
//! holds a bounded amount of memory, however many streams it opens.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// SPEC section 13's defaults for `--send-timeout` and `--idle-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a body takes of its connection's budget before it makes its next frame: a
/// `GenerateStream` chunk (64 KiB of codes) and its framing.
const RESERVE: usize = 65 * 1024;

/// The kernel's send buffer of an accepted connection (Linux doubles it for its own use).
pub const KERNEL_SEND_BUFFER: usize = 256 * 1024;

/// How often at most a watchdog sleeps before it looks again: a rule is enforced within
/// this much of its timeout.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// The two timeouts of SPEC section 13.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long a connection with an answer to send may go without writing anything.
    pub send: Duration,
    /// How long a connection with nothing in flight may stay open.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            send: DEFAULT_TIMEOUT,
            idle: DEFAULT_TIMEOUT,
        }
    }
}

/// Milliseconds since the first call in this process: a stamp that fits an atomic.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Why a watchdog closed a connection (the `reason` label of
/// `secretgen_connections_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The send rule: an answer waited for the peer to read for the send timeout.
    Send,
    /// The idle rule: nothing in flight for the idle timeout.
    Idle,
}

impl Closed {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Closed::Send => "send_timeout",
            Closed::Idle => "idle_timeout",
        }
    }
}

/// What one connection is doing, shared by its socket, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    /// Requests whose answer is not finished (see [`Activity::request`]).
    in_flight: AtomicU32,
    /// Of those, the ones whose peer must read for them to go on (see [`Activity::answer`]).
    answering: AtomicU32,
    /// When something last moved: bytes written, a request begun or finished.
    progress: AtomicU64,
    /// The last write found the socket full.
    write_blocked: AtomicBool,
    /// Response bytes handed to the protocol and not yet written (see [`Budgeted`]).
    ahead: AtomicUsize,
    /// Bodies waiting for `ahead` to fall, and whether there are any (read without the
    /// lock on every write).
    waiting: Mutex<Vec<Waker>>,
    has_waiting: AtomicBool,
    /// A duplicate of the socket for the watchdog to shut down; taken when the connection
    /// is dropped, so that the socket closes with it.
    socket: Mutex<Option<std::net::TcpStream>>,
}

impl Activity {
    fn new(socket: Option<std::net::TcpStream>) -> Activity {
        Activity {
            in_flight: AtomicU32::new(0),
            answering: AtomicU32::new(0),
            progress: AtomicU64::new(now_ms()),
            write_blocked: AtomicBool::new(false),
            ahead: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            has_waiting: AtomicBool::new(false),
            socket: Mutex::new(socket),
        }
    }

    /// A request begins whose handler is at work (reading its body, waiting on the store):
    /// the idle rule waits for it, and the send rule only for what the socket cannot take.
    /// Its own deadlines bound it (`--body-timeout`, the store's). HTTP's requests, until
    /// their answer is handed to the protocol.
    pub fn request(self: &Arc<Self>) -> Busy {
        self.begin(false)
    }

    /// A request begins whose answer can only go on if the peer reads: the send rule holds
    /// from now on. gRPC's calls, whose streams HTTP/2 flow control holds when the peer does
    /// not read, without a write that waits.
    pub fn answer(self: &Arc<Self>) -> Busy {
        self.begin(true)
    }

    fn begin(self: &Arc<Self>, answering: bool) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if answering {
            self.answering.fetch_add(1, Ordering::Relaxed);
        }
        self.progress.store(now_ms(), Ordering::Relaxed);
        Busy {
            activity: Arc::clone(self),
            answering,
        }
    }

    fn wrote(&self, n: usize) {
        self.progress.store(now_ms(), Ordering::Relaxed);
        self.write_blocked.store(false, Ordering::Relaxed);
        let _ = self
            .ahead
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                Some(a.saturating_sub(n))
            });
        if self.has_waiting.load(Ordering::Acquire) {
            self.wake_waiting();
        }
    }

    fn wake_waiting(&self) {
        let wakers = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            self.has_waiting.store(false, Ordering::Release);
            std::mem::take(&mut *waiting)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Takes [`RESERVE`] bytes of the budget of `limit` bytes ahead of the socket, at
    /// once with every other body of the connection (their streams run on several threads:
    /// looking first and counting after would let each through at the same moment); when it
    /// is spent, `cx` is woken once bytes are written (or the connection closes).
    fn poll_reserve(&self, limit: usize, cx: &mut Context<'_>) -> Poll<()> {
        let take = |ahead: usize| (ahead < limit).then_some(ahead + RESERVE);
        if self
            .ahead
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
            .is_ok()
        {
            return Poll::Ready(());
        }
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            self.has_waiting.store(true, Ordering::Release);
        }
        // A write between the first try and the registration would have found no waker.
        if self
            .ahead
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
            .is_ok()
        {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Settles a reservation: `used` bytes of it went to the protocol (possibly more than
    /// [`RESERVE`]), the rest comes back.
    fn settle(&self, used: usize) {
        if used >= RESERVE {
            self.ahead.fetch_add(used - RESERVE, Ordering::AcqRel);
        } else {
            let _ = self
                .ahead
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                    Some(a.saturating_sub(RESERVE - used))
                });
            if self.has_waiting.load(Ordering::Acquire) {
                self.wake_waiting();
            }
        }
    }

    /// Which rule, if any, the connection breaks now; if none, how long until one could.
    fn broken(&self, timeouts: Timeouts, now: u64) -> Result<u64, Closed> {
        let answering = self.answering.load(Ordering::Relaxed) > 0
            || self.write_blocked.load(Ordering::Relaxed);
        let (limit, reason) = if answering {
            (timeouts.send, Closed::Send)
        } else if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Ok(LOOK_EVERY.as_millis() as u64);
        } else {
            (timeouts.idle, Closed::Idle)
        };
        let deadline = self.progress.load(Ordering::Relaxed) + limit.as_millis() as u64;
        if now >= deadline {
            Err(reason)
        } else {
            Ok(deadline - now)
        }
    }

    /// Shuts the socket down (both ways, reset on close): the connection's task wakes and
    /// fails its next read or write.
    fn close(&self) {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(socket) = socket {
            let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        if self.has_waiting.load(Ordering::Acquire) {
            self.wake_waiting();
        }
    }

    /// Lets the socket close when the connection is dropped, whoever still holds this.
    fn release(&self) {
        drop(self.socket.lock().unwrap_or_else(|e| e.into_inner()).take());
        if self.has_waiting.load(Ordering::Acquire) {
            self.wake_waiting();
        }
    }
}

/// A request in flight on its connection (see [`Activity::request`], [`Activity::answer`]).
#[derive(Debug)]
pub struct Busy {
    activity: Arc<Activity>,
    answering: bool,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity.progress.store(now_ms(), Ordering::Relaxed);
        if self.answering {
            activity.answering.fetch_sub(1, Ordering::Relaxed);
        }
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts watching `stream` on the current tokio runtime: its [`Activity`], whose watchdog
/// closes it when it breaks a rule of `timeouts`, calling `on_close` with the rule first.
pub fn watch(
    stream: &TcpStream,
    timeouts: Timeouts,
    on_close: impl Fn(Closed) + Send + 'static,
) -> Arc<Activity> {
    use std::os::fd::AsFd;
    // A duplicate descriptor of the same socket; without one (out of descriptors), the
    // connection is still served, but only the protocols' own timeouts apply to it.
    let socket = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::net::TcpStream::from);
    let activity = Arc::new(Activity::new(socket));
    tokio::spawn(watchdog(Arc::downgrade(&activity), timeouts, on_close));
    activity
}

async fn watchdog(activity: Weak<Activity>, timeouts: Timeouts, on_close: impl Fn(Closed)) {
    loop {
        let Some(activity) = activity.upgrade() else {
            return;
        };
        if activity
            .socket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            return;
        }
        let wait = match activity.broken(timeouts, now_ms()) {
            Ok(wait) => wait,
            Err(reason) => {
                tracing::debug!(reason = reason.label(), "closing a connection");
                activity.close();
                on_close(reason);
                return;
            }
        };
        drop(activity);
        // The state can change from idle to busy without a new stamp (a write that finds
        // the socket full): look again soon rather than at the deadline alone.
        tokio::time::sleep(Duration::from_millis(wait).min(LOOK_EVERY)).await;
    }
}

/// A TCP stream that reports what it writes to its [`Activity`].
#[derive(Debug)]
pub struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    /// `stream`, reporting to `activity` (from [`watch`] on the same stream).
    pub fn new(stream: TcpStream, activity: Arc<Activity>) -> Watched {
        Watched { stream, activity }
    }

    /// The connection's activity.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// The TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    fn count(&self, written: &Poll<io::Result<usize>>) {
        match written {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(*n),
            Poll::Pending => self.activity.write_blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.activity.release();
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.count(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.count(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// An accepted connection as the protocols read it: plain or under TLS.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(Watched),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<Watched>>),
}

impl Stream {
    /// The connection's activity.
    pub fn activity(&self) -> &Arc<Activity> {
        match self {
            Stream::Plain(w) => w.activity(),
            Stream::Tls(t) => t.get_ref().0.activity(),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Plain(w) => w.tcp().peer_addr().ok(),
            Stream::Tls(t) => t.get_ref().0.tcp().peer_addr().ok(),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// Accepts `stream`: watched under `timeouts` (the watchdog starts at once, so that a TLS
/// handshake that never comes is the idle rule's too), then the TLS handshake with the
/// current configuration of `tls`, if any.
pub async fn accept(
    stream: TcpStream,
    timeouts: Timeouts,
    tls: Option<&crate::net::tls::Reloadable>,
    on_close: impl Fn(Closed) + Send + 'static,
) -> io::Result<Stream> {
    let _ = stream.set_nodelay(true);
    // The kernel's send buffer grows to 4 MiB a connection by itself: for a peer that does
    // not read, that much of the server's answers is made, copied and held before a write
    // waits. A fixed buffer keeps it to what a fast peer needs.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(KERNEL_SEND_BUFFER);
    let activity = watch(&stream, timeouts, on_close);
    let watched = Watched::new(stream, activity);
    match tls {
        None => Ok(Stream::Plain(watched)),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            Ok(Stream::Tls(Box::new(acceptor.accept(watched).await?)))
        }
    }
}

/// A response body that waits while its connection's budget of bytes ahead of the socket
/// is spent, and keeps its request in flight until it is finished or dropped.
#[derive(Debug)]
pub struct Budgeted<B> {
    inner: B,
    activity: Arc<Activity>,
    limit: usize,
    _busy: Busy,
}

impl<B> Budgeted<B> {
    /// `inner`, counted against `activity`'s budget of `limit` bytes, in flight with `busy`.
    pub fn new(inner: B, activity: Arc<Activity>, limit: usize, busy: Busy) -> Budgeted<B> {
        Budgeted {
            inner,
            activity,
            limit,
            _busy: busy,
        }
    }
}

impl<B> http_body::Body for Budgeted<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
        let this = self.get_mut();
        if this.activity.poll_reserve(this.limit, cx).is_pending() {
            return Poll::Pending;
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        let used = match &frame {
            Poll::Ready(Some(Ok(frame))) => frame.data_ref().map_or(0, bytes::Buf::remaining),
            _ => 0,
        };
        this.activity.settle(used);
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
