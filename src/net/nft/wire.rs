//! Encoding of nfnetlink messages for nf_tables: the netlink header, the `nfgenmsg` family
//! header and (nested) attributes, padded to 4 bytes as the kernel expects. Integers inside
//! nf_tables attributes are big-endian.

/// `NLM_F_*` flags.
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_HDRLEN: usize = 16;

/// A buffer of attributes; nested attributes are built with [`Attrs::nested`].
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes(mut self, kind: u16, value: &[u8]) -> Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len() + pad(len), 0);
        self
    }

    /// A NUL-terminated string attribute.
    pub fn str(self, kind: u16, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.bytes(kind, &v)
    }

    pub fn be32(self, kind: u16, value: u32) -> Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    pub fn nested(self, kind: u16, inner: Attrs) -> Self {
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }

    /// How many bytes the attributes take.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// A nested attribute whose content is already encoded (e.g. copied from a kernel reply).
    pub fn nested_raw(self, kind: u16, inner: &[u8]) -> Self {
        self.bytes(kind | NLA_F_NESTED, inner)
    }
}

fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// One netlink message: `nlmsghdr` + `nfgenmsg` + attributes.
pub fn message(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &Attrs) -> Vec<u8> {
    let len = NLMSG_HDRLEN + 4 + attrs.0.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.push(family);
    m.push(0); // NFNETLINK_V0
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(&attrs.0);
    m
}

/// A netlink message read back from the kernel: type, sequence number, for `NLMSG_ERROR` the
/// (negative errno or 0) code, and the attributes after the `nfgenmsg` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub kind: u16,
    pub seq: u32,
    pub error: Option<i32>,
    pub attrs: Vec<u8>,
}

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// The attributes in `buf` as (type without the nested flag, value); stops at anything malformed.
pub fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((u16::from_ne_bytes([buf[2], buf[3]]) & !NLA_F_NESTED, &buf[4..len]));
        buf = &buf[(len + pad(len)).min(buf.len())..];
    }
    out
}

/// Splits a receive buffer into messages (stops at anything malformed).
pub fn parse_replies(mut buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let error = (kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4).then(|| i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]));
        let attrs = if error.is_none() && len >= NLMSG_HDRLEN + 4 { buf[NLMSG_HDRLEN + 4..len].to_vec() } else { Vec::new() };
        out.push(Reply { kind, seq, error, attrs });
        buf = &buf[(len + pad(len)).min(buf.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let a = Attrs::new().str(1, "orch").be32(2, 7);
        assert_eq!(a.0, vec![9, 0, 1, 0, b'o', b'r', b'c', b'h', 0, 0, 0, 0, 8, 0, 2, 0, 0, 0, 0, 7]);
        let n = Attrs::new().nested(4, Attrs::new().be32(1, 1));
        assert_eq!(n.0, vec![12, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn messages_have_the_nfgen_header_and_parse_back() {
        let m = message(0x0a00, NLM_F_REQUEST | NLM_F_ACK, 42, 2, 0, &Attrs::new().str(1, "t"));
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(&m[16..20], &[2, 0, 0, 0]);
        let mut err = message(NLMSG_ERROR, 0, 42, 0, 0, &Attrs::new());
        err.truncate(16);
        err[0] = 36;
        err.extend_from_slice(&(-17i32).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        assert_eq!(parse_replies(&err), vec![Reply { kind: NLMSG_ERROR, seq: 42, error: Some(-17), attrs: vec![] }]);
        let parsed = parse_replies(&m);
        assert_eq!(attributes(&parsed[0].attrs), vec![(1, &b"t\0"[..])]);
        let nested = Attrs::new().nested_raw(2, &Attrs::new().be32(1, 7).0);
        assert_eq!(attributes(&nested.0), vec![(2, &[8, 0, 1, 0, 0, 0, 0, 7][..])]);
        assert!(parse_replies(&[1, 2, 3]).is_empty());
    }
}
