//! SPDY/3.1 frames as Kubernetes streams use them (draft-mbelshe-httpbis-spdy-00 §2): data
//! frames and the SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS and
//! WINDOW_UPDATE control frames. Header blocks stay compressed here (see `headers`).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version in control frames.
pub const VERSION: u16 = 3;
/// FLAG_FIN: the sender's last frame on the stream.
const FLAG_FIN: u8 = 0x01;
/// Frames carry at most 2^24 - 1 bytes.
pub const MAX_LENGTH: usize = (1 << 24) - 1;
/// RST_STREAM status: the stream is refused.
pub const REFUSED_STREAM: u32 = 3;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        fin: bool,
        headers: Bytes,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Bytes,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    /// Settings are read and ignored (orch neither limits streams nor sizes windows).
    Settings,
    Ping {
        id: u32,
    },
    GoAway {
        last_stream: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Bytes,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A control frame of a type this module does not know (to be ignored).
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    #[error("SPDY control frame of type {kind} is too short ({length} bytes)")]
    Short { kind: u16, length: usize },
}

fn fin(flags: u8) -> bool {
    flags & FLAG_FIN != 0
}

/// Decodes the frame at the start of `buf`: `None` until all of it is there, else the frame
/// and the bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let length = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
    if buf.len() < 8 + length {
        return Ok(None);
    }
    let flags = buf[4];
    let mut body = &buf[8..8 + length];
    let used = 8 + length;
    if buf[0] & 0x80 == 0 {
        let stream = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) & 0x7fff_ffff;
        return Ok(Some((Frame::Data { stream, fin: fin(flags), data: Bytes::copy_from_slice(body) }, used)));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let need = match kind {
        SYN_STREAM => 10,
        SYN_REPLY | HEADERS | PING => 4,
        RST_STREAM | GOAWAY | WINDOW_UPDATE => 8,
        _ => 0,
    };
    if length < need {
        return Err(FrameError::Short { kind, length });
    }
    let frame = match kind {
        SYN_STREAM => {
            let stream = body.get_u32() & 0x7fff_ffff;
            let associated = body.get_u32() & 0x7fff_ffff;
            let priority = body.get_u8() >> 5;
            body.advance(1);
            Frame::SynStream { stream, associated, priority, fin: fin(flags), headers: Bytes::copy_from_slice(body) }
        }
        SYN_REPLY => Frame::SynReply { stream: body.get_u32() & 0x7fff_ffff, fin: fin(flags), headers: Bytes::copy_from_slice(body) },
        RST_STREAM => Frame::RstStream { stream: body.get_u32() & 0x7fff_ffff, status: body.get_u32() },
        SETTINGS => Frame::Settings,
        PING => Frame::Ping { id: body.get_u32() },
        GOAWAY => Frame::GoAway { last_stream: body.get_u32() & 0x7fff_ffff, status: body.get_u32() },
        HEADERS => Frame::Headers { stream: body.get_u32() & 0x7fff_ffff, fin: fin(flags), headers: Bytes::copy_from_slice(body) },
        WINDOW_UPDATE => Frame::WindowUpdate { stream: body.get_u32() & 0x7fff_ffff, delta: body.get_u32() & 0x7fff_ffff },
        kind => Frame::Unknown { kind },
    };
    Ok(Some((frame, used)))
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | body.len() as u32);
    out.put_slice(body);
}

fn flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

/// Appends `frame` to `out`. Data longer than [`MAX_LENGTH`] must be split by the caller.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    match frame {
        Frame::Data { stream, fin, data } => {
            out.put_u32(stream & 0x7fff_ffff);
            out.put_u32((u32::from(flag(*fin)) << 24) | data.len() as u32);
            out.put_slice(data);
        }
        Frame::SynStream { stream, associated, priority, fin, headers } => {
            body.put_u32(*stream);
            body.put_u32(*associated);
            body.put_u8(priority << 5);
            body.put_u8(0);
            body.put_slice(headers);
            control(out, SYN_STREAM, flag(*fin), &body);
        }
        Frame::SynReply { stream, fin, headers } => {
            body.put_u32(*stream);
            body.put_slice(headers);
            control(out, SYN_REPLY, flag(*fin), &body);
        }
        Frame::RstStream { stream, status } => {
            body.put_u32(*stream);
            body.put_u32(*status);
            control(out, RST_STREAM, 0, &body);
        }
        Frame::Settings => control(out, SETTINGS, 0, &0u32.to_be_bytes()),
        Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
        Frame::GoAway { last_stream, status } => {
            body.put_u32(*last_stream);
            body.put_u32(*status);
            control(out, GOAWAY, 0, &body);
        }
        Frame::Headers { stream, fin, headers } => {
            body.put_u32(*stream);
            body.put_slice(headers);
            control(out, HEADERS, flag(*fin), &body);
        }
        Frame::WindowUpdate { stream, delta } => {
            body.put_u32(*stream);
            body.put_u32(*delta);
            control(out, WINDOW_UPDATE, 0, &body);
        }
        Frame::Unknown { kind } => control(out, *kind, 0, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Data { stream: 3, fin: true, data: Bytes::from_static(b"hello") },
            Frame::SynStream { stream: 1, associated: 0, priority: 2, fin: false, headers: Bytes::from_static(b"\x78\x01") },
            Frame::SynReply { stream: 1, fin: false, headers: Bytes::new() },
            Frame::RstStream { stream: 5, status: REFUSED_STREAM },
            Frame::Settings,
            Frame::Ping { id: 7 },
            Frame::GoAway { last_stream: 9, status: 0 },
            Frame::Headers { stream: 1, fin: true, headers: Bytes::from_static(b"x") },
            Frame::WindowUpdate { stream: 0, delta: 65536 },
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            encode(f, &mut buf);
        }
        let mut at = 0;
        for f in &frames {
            let (got, used) = decode(&buf[at..]).unwrap().expect("a whole frame");
            assert_eq!(&got, f);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(decode(&buf[..at - 1]).unwrap(), Some((frames[0].clone(), 13)), "a prefix decodes the first frames");
    }

    #[test]
    fn wire_layout_matches_the_spec() {
        let mut buf = BytesMut::new();
        encode(&Frame::Ping { id: 1 }, &mut buf);
        assert_eq!(&buf[..], b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01");
        buf.clear();
        encode(&Frame::Data { stream: 1, fin: true, data: Bytes::from_static(b"ab") }, &mut buf);
        assert_eq!(&buf[..], b"\x00\x00\x00\x01\x01\x00\x00\x02ab");
        assert_eq!(decode(&buf[..9]).unwrap(), None, "incomplete");
        assert_eq!(decode(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"), Err(FrameError::Version(2)));
        assert_eq!(decode(b"\x80\x03\x00\x03\x00\x00\x00\x00"), Err(FrameError::Short { kind: 3, length: 0 }));
    }
}
