//! One connection's outgoing bytes between its writer and the worker's
//! flusher (sans-IO): what the writer handed over, what is being sent, what
//! a short send left over, and the error a send met.
use bytes::{Bytes, BytesMut};
use std::io;

/// What [`OutBuffer::accept`] did with a write.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Taken whole; `wake_flusher` when the connection must join the
    /// flusher's queue (it was neither queued nor sending).
    Taken { bytes: usize, wake_flusher: bool },
    /// `limit` bytes already wait: the writer waits for a send to end.
    Full,
    /// An earlier send failed (an OS error number).
    Failed(i32),
}

#[derive(Debug, Default)]
pub struct OutBuffer {
    /// Bytes handed over and not yet given to a send.
    pending: BytesMut,
    /// Bytes a submitted send is sending (kept alive until it completes).
    in_flight: Option<Bytes>,
    /// In the flusher's queue.
    queued: bool,
    /// The error of the last failed send: every later write gets it.
    error: Option<i32>,
}

impl OutBuffer {
    /// Takes `bufs` (a vectored write) unless `limit` bytes already wait.
    pub fn accept(&mut self, bufs: &[&[u8]], limit: usize) -> Accepted {
        if let Some(errno) = self.error {
            return Accepted::Failed(errno);
        }
        if self.waiting() >= limit {
            return Accepted::Full;
        }
        let mut bytes = 0;
        for buf in bufs {
            self.pending.extend_from_slice(buf);
            bytes += buf.len();
        }
        let wake_flusher = bytes > 0 && !self.queued && self.in_flight.is_none();
        if wake_flusher {
            self.queued = true;
        }
        Accepted::Taken {
            bytes,
            wake_flusher,
        }
    }

    /// Bytes handed over and not sent yet.
    pub fn waiting(&self) -> usize {
        self.pending.len() + self.in_flight.as_ref().map_or(0, Bytes::len)
    }

    /// Nothing waits and no send is under way: a direct write keeps the
    /// order, and a shutdown may go ahead.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_none()
    }

    /// Forgets the bytes not yet sent (the socket is going away).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
    }

    pub fn error(&self) -> Option<i32> {
        self.error
    }

    /// The flusher takes the connection out of its queue: the bytes to
    /// send now (they stay here until [`OutBuffer::finish_send`]), if any.
    pub fn start_send(&mut self) -> Option<&Bytes> {
        self.queued = false;
        if self.pending.is_empty() || self.in_flight.is_some() || self.error.is_some() {
            return None;
        }
        self.in_flight = Some(self.pending.split().freeze());
        self.in_flight.as_ref()
    }

    /// A send completed with `result` (bytes sent, or a negative OS error
    /// number, as io_uring reports). A short send puts the rest back in
    /// front of the newer bytes. Returns whether the connection goes back
    /// into the flusher's queue (bytes still wait).
    pub fn finish_send(&mut self, result: i32) -> bool {
        let sent = self.in_flight.take().unwrap_or_default();
        match usize::try_from(result) {
            Err(_) => {
                self.error = Some(-result);
                self.pending.clear();
            }
            Ok(n) if n < sent.len() => {
                let mut rest = BytesMut::with_capacity(sent.len() - n + self.pending.len());
                rest.extend_from_slice(&sent[n..]);
                rest.extend_from_slice(&self.pending);
                self.pending = rest;
            }
            Ok(_) => {}
        }
        let requeue = self.error.is_none() && !self.pending.is_empty() && !self.queued;
        if requeue {
            self.queued = true;
        }
        requeue
    }
}

/// The error a failed send left, as the writer reports it.
pub fn send_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(bytes: usize, wake_flusher: bool) -> Accepted {
        Accepted::Taken {
            bytes,
            wake_flusher,
        }
    }

    #[test]
    fn the_first_write_queues_the_connection_and_later_ones_join_it() {
        let mut out = OutBuffer::default();
        assert_eq!(out.accept(&[b"GET ", b"/"], 100), taken(5, true));
        assert_eq!(out.accept(&[b" HTTP/1.1"], 100), taken(9, false));
        assert_eq!(
            out.start_send().map(|b| b.to_vec()),
            Some(b"GET / HTTP/1.1".to_vec())
        );
        // While a send is under way, a write waits for its end, unqueued.
        assert_eq!(out.accept(&[b"\r\n"], 100), taken(2, false));
        assert!(out.finish_send(14), "the newer bytes go next");
        assert_eq!(out.start_send().map(|b| b.to_vec()), Some(b"\r\n".to_vec()));
        assert!(!out.finish_send(2));
        assert!(out.is_idle());
        assert_eq!(out.accept(&[b"x"], 100), taken(1, true));
    }

    #[test]
    fn a_short_send_puts_the_rest_before_the_newer_bytes() {
        let mut out = OutBuffer::default();
        out.accept(&[b"abcdef"], 100);
        out.start_send();
        out.accept(&[b"gh"], 100);
        assert!(out.finish_send(2));
        assert_eq!(
            out.start_send().map(|b| b.to_vec()),
            Some(b"cdefgh".to_vec())
        );
        assert_eq!(out.waiting(), 6);
    }

    #[test]
    fn a_failed_send_fails_every_later_write() {
        let mut out = OutBuffer::default();
        out.accept(&[b"abc"], 100);
        out.start_send();
        out.accept(&[b"def"], 100);
        assert!(!out.finish_send(-libc::EPIPE), "nothing more is sent");
        assert_eq!(out.accept(&[b"x"], 100), Accepted::Failed(libc::EPIPE));
        assert_eq!(out.error(), Some(libc::EPIPE));
        assert!(out.start_send().is_none());
        assert_eq!(send_error(libc::EPIPE).kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_full_buffer_holds_the_writer_back() {
        let mut out = OutBuffer::default();
        assert_eq!(out.accept(&[&[0; 10]], 10), taken(10, true));
        assert_eq!(out.accept(&[b"x"], 10), Accepted::Full);
        out.start_send();
        assert_eq!(out.accept(&[b"x"], 10), Accepted::Full, "sending counts");
        assert!(!out.finish_send(10));
        assert_eq!(out.accept(&[b"x"], 10), taken(1, true));
    }

    #[test]
    fn discarded_bytes_are_not_sent_and_the_send_under_way_ends() {
        let mut out = OutBuffer::default();
        out.accept(&[b"abc"], 100);
        out.start_send();
        out.accept(&[b"def"], 100);
        out.discard_pending();
        assert!(!out.finish_send(3), "nothing left to send");
        assert!(out.is_idle());
    }

    #[test]
    fn an_empty_write_queues_nothing() {
        let mut out = OutBuffer::default();
        assert_eq!(out.accept(&[b""], 10), taken(0, false));
        assert!(out.start_send().is_none());
        assert!(out.is_idle());
    }
}
