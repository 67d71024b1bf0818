//! Write coalescing for a connection: what HTTP/2 writes is gathered and sent when it flushes, and
//! the first flush of a batch waits one turn of the scheduler, so frames produced by the tasks that
//! are already runnable go out in the same system call. Without it a unary gRPC answer left in two
//! writes — HEADERS and DATA, then the trailers a moment later, once h2 had handed the stream new
//! send capacity — and the client woke twice per call.
//!
//! Only on a current-thread runtime: on the multi-threaded one the extra turn woke an idle worker
//! to steal the connection's task, which doubled the CPU per call at 1,000 calls/s (README,
//! Performance), so there writes go straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this much is gathered; a write past it first sends what is gathered.
const LIMIT: usize = 64 * 1024;

/// A gathering buffer that grew past this is given back once sent, so idle connections hold
/// little memory.
const KEEP: usize = 16 * 1024;

/// A byte stream whose writes are gathered until a flush (see the module docs).
pub struct Corked<T> {
    inner: T,
    buf: Vec<u8>,
    sent: usize,
    waited: bool,
    enabled: bool,
}

impl<T> Corked<T> {
    /// Wraps `inner`; `enabled: false` passes every write straight through.
    pub fn new(inner: T, enabled: bool) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
            waited: false,
            enabled,
        }
    }

    /// Whether writes are gathered: on a current-thread runtime (see the module docs).
    pub fn fits_this_runtime() -> bool {
        tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
    }
}

impl<T: AsyncWrite + Unpin> Corked<T> {
    /// Writes out everything gathered.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: sends what is gathered when they would not fit.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.buf.len() + len > LIMIT {
            ready!(self.poll_send(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Corked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Corked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx, data.len()))?;
        if !self.enabled || data.len() >= LIMIT {
            return Pin::new(&mut self.inner).poll_write(cx, data);
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        ready!(self.poll_room(cx, len))?;
        if !self.enabled || len >= LIMIT {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        self.enabled || self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buf.is_empty() && !self.waited {
            // One turn of the scheduler: a task woken during its own poll goes behind the tasks
            // already runnable (tokio treats it as a yield), so what they write joins this batch.
            self.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_send(cx))?;
        self.waited = false;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records the length of every write that reaches it; takes at most `chunk` bytes per write
    /// when set, and says Pending (waking at once) before every other write when `pending`.
    #[derive(Default)]
    struct Recording {
        writes: Vec<usize>,
        chunk: Option<usize>,
        pending: bool,
        flip: bool,
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.pending {
                self.flip = !self.flip;
                if self.flip {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let n = self.chunk.map_or(data.len(), |c| c.min(data.len()));
            self.writes.push(n);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_before_a_flush_leave_in_one_write() {
        let mut io = Corked::new(Recording::default(), true);
        io.write_all(b"HEADERS+DATA").await.unwrap();
        io.write_all(b"TRAILERS").await.unwrap();
        assert!(io.inner.writes.is_empty(), "nothing sent before the flush");
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, [20]);
        io.write_all(b"next").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, [20, 4], "each flush waits its own turn");
    }

    #[tokio::test]
    async fn past_the_limit_what_is_gathered_goes_first() {
        let mut io = Corked::new(Recording::default(), true);
        io.write_all(&[1; 40 * 1024]).await.unwrap();
        io.write_all(&[2; 40 * 1024]).await.unwrap();
        assert_eq!(io.inner.writes, [40 * 1024]);
        io.write_all(&[3; 100 * 1024]).await.unwrap();
        assert_eq!(
            io.inner.writes,
            [40 * 1024, 40 * 1024, 100 * 1024],
            "a write over the limit is not copied"
        );
        io.shutdown().await.unwrap();
        assert_eq!(io.inner.writes.len(), 3);
    }

    #[tokio::test]
    async fn short_and_pending_writes_resume_where_they_stopped() {
        let inner = Recording {
            chunk: Some(7),
            pending: true,
            ..Recording::default()
        };
        let mut io = Corked::new(inner, true);
        io.write_all(b"0123456789abcdefghij").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes, [7, 7, 6], "every byte once, in order");
        assert!(io.buf.is_empty() && io.sent == 0);
    }

    #[tokio::test]
    async fn a_large_batch_gives_its_buffer_back() {
        let mut io = Corked::new(Recording::default(), true);
        io.write_all(&[0; 40 * 1024]).await.unwrap();
        io.flush().await.unwrap();
        assert!(io.buf.capacity() <= KEEP);
    }

    #[tokio::test]
    async fn disabled_it_writes_straight_through() {
        let mut io = Corked::new(Recording::default(), false);
        io.write_all(b"HEADERS+DATA").await.unwrap();
        io.write_all(b"TRAILERS").await.unwrap();
        assert_eq!(io.inner.writes, [12, 8]);
    }

    #[test]
    fn the_runtime_flavour_decides() {
        let fits = |mut b: tokio::runtime::Builder| {
            let rt = b.enable_all().build().unwrap();
            rt.block_on(async { Corked::<Recording>::fits_this_runtime() })
        };
        assert!(fits(tokio::runtime::Builder::new_current_thread()));
        assert!(!fits(tokio::runtime::Builder::new_multi_thread()));
        assert!(
            !Corked::<Recording>::fits_this_runtime(),
            "outside any runtime"
        );
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_gathered() {
        let mut io = Corked::new(Recording::default(), true);
        io.write_all(b"GOAWAY").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.inner.writes, [6]);
    }
}
