//! The server side of a SPDY/3.1 connection as Kubernetes clients use it: the client opens
//! every stream (accepted at once with a SYN_REPLY and handed out with its headers), PINGs
//! are answered, and flow control is not enforced (spdystream, the Go peer, neither sends
//! nor honours WINDOW_UPDATE). One task reads frames, one writes them.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{self, Frame, MAX_LENGTH};
use super::headers::{Deflater, Headers, Inflater};

/// Chunks a stream may queue before the reader waits for its consumer.
const STREAM_BACKLOG: usize = 64;

/// What the writer task is asked to send.
enum Out {
    Frame(Frame),
    Reply(u32),
    /// GOAWAY, then end the connection's write side.
    Close,
}

/// A stream the client opened.
pub struct Stream {
    pub headers: Headers,
    /// What the client sends on it, until its FIN (or a reset).
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

/// Writes on one stream; clones share it.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    tx: mpsc::Sender<Out>,
}

impl StreamWriter {
    /// Sends `data`; false when the connection is gone.
    pub async fn write(&self, data: Bytes) -> bool {
        for chunk in data.chunks(MAX_LENGTH) {
            let frame = Frame::Data { stream: self.id, fin: false, data: data.slice_ref(chunk) };
            if self.tx.send(Out::Frame(frame)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Ends this side of the stream (FIN).
    pub async fn finish(&self) {
        let _ = self.tx.send(Out::Frame(Frame::Data { stream: self.id, fin: true, data: Bytes::new() })).await;
    }

    /// Resets the stream (an error, or a refused one).
    pub async fn reset(&self, status: u32) {
        let _ = self.tx.send(Out::Frame(Frame::RstStream { stream: self.id, status })).await;
    }
}

/// A served connection: the streams the client opens arrive on `streams`.
pub struct Connection {
    pub streams: mpsc::Receiver<Stream>,
    tx: mpsc::Sender<Out>,
}

impl Connection {
    /// Serves SPDY on `io` (spawning its reader and writer tasks).
    pub fn serve<T: AsyncRead + AsyncWrite + Send + 'static>(io: T) -> Self {
        let (read, write) = tokio::io::split(io);
        let (tx, out) = mpsc::channel(64);
        let (streams_tx, streams) = mpsc::channel(16);
        tokio::spawn(write_frames(write, out));
        tokio::spawn(read_frames(read, tx.clone(), streams_tx));
        Self { streams, tx }
    }

    /// Says GOAWAY and closes the connection once what was written before has gone out.
    pub async fn close(self) {
        let _ = self.tx.send(Out::Close).await;
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(mut io: W, mut out: mpsc::Receiver<Out>) {
    let mut deflate = Deflater::default();
    let mut buf = BytesMut::new();
    let mut last_stream = 0;
    while let Some(next) = out.recv().await {
        let frame = match next {
            Out::Frame(f) => f,
            Out::Reply(stream) => {
                last_stream = stream;
                Frame::SynReply { stream, fin: false, headers: deflate.encode(&Headers::new()).into() }
            }
            Out::Close => {
                frame::encode(&Frame::GoAway { last_stream, status: 0 }, &mut buf);
                let _ = io.write_all(&buf).await;
                let _ = io.shutdown().await;
                return;
            }
        };
        frame::encode(&frame, &mut buf);
        if io.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = io.shutdown().await;
}

async fn read_frames<R: AsyncRead + Unpin>(mut io: R, tx: mpsc::Sender<Out>, streams: mpsc::Sender<Stream>) {
    let mut inflate = Inflater::default();
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let (frame, used) = match frame::decode(&buf) {
            Ok(Some(f)) => f,
            Ok(None) => match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(e) => return tracing::debug!(error = %e, "SPDY connection broken"),
        };
        let _ = buf.split_to(used);
        match frame {
            Frame::SynStream { stream, fin, headers, .. } => {
                let headers = match inflate.decode(&headers) {
                    Ok(h) => h,
                    Err(e) => return tracing::debug!(error = %e, "SPDY connection broken"),
                };
                if tx.send(Out::Reply(stream)).await.is_err() {
                    return;
                }
                let (data_tx, data) = mpsc::channel(STREAM_BACKLOG);
                if !fin {
                    open.insert(stream, data_tx);
                }
                let writer = StreamWriter { id: stream, tx: tx.clone() };
                if streams.send(Stream { headers, data, writer: writer.clone() }).await.is_err() {
                    writer.reset(frame::REFUSED_STREAM).await;
                }
            }
            Frame::Data { stream, fin, data } => {
                if let Some(sink) = open.get(&stream) {
                    if !data.is_empty() && sink.send(data).await.is_err() {
                        open.remove(&stream);
                    }
                }
                if fin {
                    open.remove(&stream);
                }
            }
            Frame::Headers { stream, fin, headers } => {
                // Decoded only to keep the decompressor in step with the peer's.
                if inflate.decode(&headers).is_err() {
                    return;
                }
                if fin {
                    open.remove(&stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                open.remove(&stream);
            }
            Frame::Ping { id } => {
                if tx.send(Out::Frame(Frame::Ping { id })).await.is_err() {
                    return;
                }
            }
            Frame::GoAway { .. } => return,
            Frame::SynReply { .. } | Frame::Settings | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::kubelet::streaming::spdy::headers;

    /// A client end: writes frames, reads frames.
    struct Client {
        io: tokio::io::DuplexStream,
        deflate: Deflater,
        inflate: Inflater,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            let mut out = BytesMut::new();
            frame::encode(&f, &mut out);
            self.io.write_all(&out).await.unwrap();
        }

        async fn open(&mut self, stream: u32, kind: &str) {
            let headers = self.deflate.encode(&vec![("streamtype".into(), kind.into())]).into();
            self.send(Frame::SynStream { stream, associated: 0, priority: 0, fin: false, headers }).await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some((f, used)) = frame::decode(&self.buf).unwrap() {
                    let _ = self.buf.split_to(used);
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    #[tokio::test]
    async fn streams_are_accepted_and_carry_data_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut conn = Connection::serve(a);
        let mut client = Client { io: b, deflate: Deflater::default(), inflate: Inflater::default(), buf: BytesMut::new() };
        client.open(1, "error").await;
        client.open(3, "stdin").await;
        let error = conn.streams.recv().await.unwrap();
        let mut stdin = conn.streams.recv().await.unwrap();
        assert_eq!(headers::get(&error.headers, "streamType"), Some("error"));
        for stream in [1, 3] {
            let Some(Frame::SynReply { stream: s, headers, .. }) = client.next().await else { panic!("a reply") };
            assert_eq!(s, stream);
            assert!(client.inflate.decode(&headers).unwrap().is_empty());
        }
        client.send(Frame::Data { stream: 3, fin: true, data: Bytes::from_static(b"input") }).await;
        assert_eq!(stdin.data.recv().await.unwrap(), "input");
        assert!(stdin.data.recv().await.is_none(), "FIN ends the stream's data");
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
        error.writer.write(Bytes::from_static(b"status")).await;
        error.writer.finish().await;
        assert_eq!(client.next().await, Some(Frame::Data { stream: 1, fin: false, data: Bytes::from_static(b"status") }));
        assert_eq!(client.next().await, Some(Frame::Data { stream: 1, fin: true, data: Bytes::new() }));
        conn.close().await;
        assert_eq!(client.next().await, Some(Frame::GoAway { last_stream: 3, status: 0 }));
        assert_eq!(client.next().await, None);
    }
}
