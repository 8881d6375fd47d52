//! Reading a socket without a read buffer per connection.
//!
//! An idle connection must not hold a read buffer while it waits. A readiness API would let the
//! driver allocate only once bytes are there, but an [`AgentStream`](crate::AgentStream) is any
//! `AsyncRead`, so instead each read goes into a scratch buffer owned by the worker thread, and
//! exactly the bytes read are copied out into a buffer of their size. The scratch buffer is
//! borrowed only for the duration of one `poll_read` call, never across an `.await`.

use crate::driver::READ_SIZE;
use bytes::BytesMut;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

/// Reads once (at most [`READ_SIZE`] bytes) from `stream`. The bytes come back in a buffer
/// holding exactly them; an empty buffer means end of stream.
pub(crate) fn poll_read_chunk<S: AsyncRead + ?Sized>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<BytesMut>> {
    let mut stream = Some(stream);
    let shared = SCRATCH.try_with(|cell| {
        // Busy only if a stream's `poll_read` itself reads another agent stream on this thread.
        let mut buf = cell.try_borrow_mut().ok()?;
        Some(read_into(stream.take().expect("first use"), cx, &mut buf))
    });
    match (shared, stream) {
        (Ok(Some(poll)), _) => poll,
        // The thread's buffer is unavailable (in use, or the thread is exiting): use a fresh one.
        (_, Some(stream)) => read_into(stream, cx, &mut vec![0; READ_SIZE]),
        (_, None) => unreachable!("the stream is only taken when the read happens"),
    }
}

fn read_into<S: AsyncRead + ?Sized>(
    stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<BytesMut>> {
    let mut rb = ReadBuf::new(buf);
    ready!(stream.poll_read(cx, &mut rb))?;
    Poll::Ready(Ok(BytesMut::from(rb.filled())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn chunks_hold_exactly_the_bytes_read() {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(b"hello").await.unwrap();
        let chunk = poll_fn(|cx| poll_read_chunk(Pin::new(&mut b), cx))
            .await
            .unwrap();
        assert_eq!(&chunk[..], b"hello");
        assert_eq!(chunk.capacity(), 5);
        // A read never returns more than READ_SIZE bytes.
        a.write_all(&vec![7; READ_SIZE * 2]).await.unwrap();
        let chunk = poll_fn(|cx| poll_read_chunk(Pin::new(&mut b), cx))
            .await
            .unwrap();
        assert_eq!(chunk.len(), READ_SIZE);
        drop(a);
        let mut rest = READ_SIZE;
        while rest > 0 {
            let c = poll_fn(|cx| poll_read_chunk(Pin::new(&mut b), cx))
                .await
                .unwrap();
            rest -= c.len();
        }
        let eof = poll_fn(|cx| poll_read_chunk(Pin::new(&mut b), cx))
            .await
            .unwrap();
        assert!(eof.is_empty());
    }

    /// A stream whose `poll_read` reads another stream through `poll_read_chunk` on the same
    /// thread: the inner read cannot share the thread's buffer and must still work.
    struct Nested(tokio::io::DuplexStream);

    impl AsyncRead for Nested {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let chunk = ready!(poll_read_chunk(Pin::new(&mut self.0), cx))?;
            buf.put_slice(&chunk);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn nested_reads_do_not_share_the_buffer() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"nested").await.unwrap();
        let mut nested = Nested(b);
        let chunk = poll_fn(|cx| poll_read_chunk(Pin::new(&mut nested), cx))
            .await
            .unwrap();
        assert_eq!(&chunk[..], b"nested");
    }
}
