//! Request bodies as the proxy admits them: what a body still arriving holds (its message's whole
//! declared length, once the header is in) counts against one process-wide [`Budget`], a body must be complete within a time bound, and a call whose method takes
//! one request message may carry exactly one gRPC message. Each refusal is a gRPC status that tonic
//! passes to the caller (it recovers a [`Status`] from the body's error).

use super::ConnectionTrust;
use super::counters::TransportCounters;
use crate::budget::Budget;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tonic::Status;

/// Boxed error type of request bodies (what tonic's routes accept).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts gRPC length-prefixed messages in a byte stream (1 flag byte, 4 length bytes, payload).
#[derive(Debug, Default)]
struct MessageCounter {
    header: [u8; 5],
    header_len: usize,
    payload_left: u64,
    messages: u32,
    first_length: Option<u64>,
}

impl MessageCounter {
    /// Feeds the next bytes; returns the number of messages begun so far.
    fn feed(&mut self, mut data: &[u8]) -> u32 {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.payload_left -= n as u64;
                data = &data[n..];
                continue;
            }
            if self.header_len == 0 {
                self.messages += 1;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                let len = [
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ];
                self.payload_left = u64::from(u32::from_be_bytes(len));
                if self.messages == 1 {
                    self.first_length = Some(5 + self.payload_left);
                }
                self.header_len = 0;
            }
        }
        self.messages
    }

    /// The first message's whole length (header and payload), once its header has arrived.
    fn first_length(&self) -> Option<u64> {
        self.first_length
    }
}

/// What a single-message request is held to.
#[derive(Debug)]
struct SingleMessage {
    connection: Option<ConnectionTrust>,
    messages: MessageCounter,
    budget: Arc<Budget>,
    held: usize,
    received: usize,
    max_message: usize,
    timeout: Duration,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Drop for SingleMessage {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

/// A request body under the proxy's admission rules.
#[derive(Debug)]
pub struct AdmittedBody<B> {
    inner: B,
    single: Option<SingleMessage>,
    counters: Arc<TransportCounters>,
}

impl<B> AdmittedBody<B> {
    /// A body of a method that takes one request message: counted against `budget`, complete within
    /// `timeout`, and refused if it carries a second message. Once the message's header has
    /// arrived, it holds its whole declared length (up to `max_message`, beyond which the decoder
    /// refuses it): that is what the decoder sets aside for it. A refusal for want of budget pauses
    /// the reads of `connection`.
    pub fn single_message(
        inner: B,
        connection: Option<ConnectionTrust>,
        budget: Arc<Budget>,
        timeout: Duration,
        max_message: usize,
        counters: Arc<TransportCounters>,
    ) -> Self {
        Self {
            inner,
            single: Some(SingleMessage {
                connection,
                messages: MessageCounter::default(),
                budget,
                held: 0,
                received: 0,
                max_message,
                timeout,
                deadline: Instant::now() + timeout,
                timer: None,
            }),
            counters,
        }
    }

    /// A body of a client-streaming method (server reflection): passed through; each message is
    /// bounded by the decoder's message size limit.
    pub fn streaming(inner: B, counters: Arc<TransportCounters>) -> Self {
        Self {
            inner,
            single: None,
            counters,
        }
    }
}

fn refuse(status: Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Err(Box::new(status))))
}

impl<B> Body for AdmittedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let Some(single) = this.single.as_mut() else {
            return polled.map(|f| f.map(|r| r.map_err(Into::into)));
        };
        let frame = match polled {
            Poll::Pending => {
                let deadline = single.deadline;
                let timer = single
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                ready!(timer.as_mut().poll(cx));
                if let Some(total) = this.counters.body_timeouts.bump(1) {
                    tracing::warn!(
                        total,
                        "a request body did not arrive within request_body_timeout_ms"
                    );
                }
                return refuse(Status::deadline_exceeded(format!(
                    "the request body did not arrive within {} ms (server.request_body_timeout_ms)",
                    single.timeout.as_millis()
                )));
            }
            Poll::Ready(frame) => frame,
        };
        let Some(Ok(frame)) = frame else {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        };
        if let Some(data) = frame.data_ref() {
            if single.messages.feed(data) > 1 {
                return refuse(Status::invalid_argument(
                    "this method takes exactly one request message; the call sent a second",
                ));
            }
            single.received += data.len();
            // tonic reserves a message's declared length as soon as its header is in, so that is
            // what the call holds from then on, however little of it has arrived.
            let declared = single
                .messages
                .first_length()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n <= single.max_message)
                .unwrap_or(0);
            let holds = single.received.max(declared);
            let more = holds.saturating_sub(single.held);
            if more > 0 && !single.budget.try_take(more) {
                if let Some(connection) = &single.connection {
                    connection.back_off();
                    this.counters.reads_paused.bump(1);
                }
                if let Some(total) = this.counters.buffer_refusals.bump(1) {
                    tracing::warn!(
                        total,
                        held = single.budget.used(),
                        "request refused: in-flight request bodies hold max_buffered_request_bytes"
                    );
                }
                return refuse(Status::resource_exhausted(format!(
                    "the proxy is holding its limit of in-flight request data ({} bytes, server.max_buffered_request_bytes); retry later",
                    single.budget.max()
                )));
            }
            single.held += more;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn one_message_split_anywhere_is_one() {
        let bytes = frame(3, b"abc");
        for cut in 0..bytes.len() {
            let mut c = MessageCounter::default();
            c.feed(&bytes[..cut]);
            assert_eq!(c.feed(&bytes[cut..]), 1, "cut at {cut}");
        }
    }

    #[test]
    fn the_first_messages_length_is_known_once_its_header_is_in() {
        let bytes = frame(3, b"abc");
        let mut c = MessageCounter::default();
        c.feed(&bytes[..4]);
        assert_eq!(c.first_length(), None);
        c.feed(&bytes[4..5]);
        assert_eq!(c.first_length(), Some(8));
        c.feed(&frame(100, b""));
        assert_eq!(c.first_length(), Some(8), "only the first message's");
    }

    #[test]
    fn a_second_message_is_seen_even_when_empty() {
        let mut c = MessageCounter::default();
        let mut bytes = frame(0, b"");
        bytes.extend(frame(0, b""));
        assert_eq!(c.feed(&bytes), 2);
        let mut c = MessageCounter::default();
        assert_eq!(c.feed(&frame(2, b"hi")), 1);
        assert_eq!(c.feed(&[0]), 2, "one byte of a second header counts");
    }
}
