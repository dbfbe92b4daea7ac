//! SPDY/3 header blocks: name/value pairs (32-bit lengths, lowercase names, several values of
//! one name joined by NUL) compressed with one zlib stream per direction and connection,
//! primed with the protocol's dictionary, each block ending with a sync flush. A block inflates
//! to at most [`MAX_INFLATED`] bytes: a few kilobytes of zeros must not become gigabytes.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The most a header block may inflate to (kubectl sends a few hundred bytes).
pub const MAX_INFLATED: usize = 256 << 10;

/// Header name/value pairs in the order sent.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("SPDY header block does not decompress: {0}")]
    Zlib(String),
    #[error("SPDY header block is malformed")]
    Malformed,
    #[error("SPDY header block inflates to more than {MAX_INFLATED} bytes")]
    TooLarge,
}

/// The value of header `name` (names compare case-insensitively).
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The compressing side of a connection.
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY).expect("a fresh zlib stream takes a dictionary");
        Self(z)
    }
}

impl Deflater {
    /// The compressed block of `headers`.
    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for s in [name.to_ascii_lowercase().as_str(), value.as_str()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            let before = self.0.total_in();
            // Errors only on misuse (a full output buffer is grown below).
            let _ = self.0.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(self.0.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    }
}

/// The decompressing side of a connection.
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Self(Decompress::new(true))
    }
}

impl Inflater {
    /// The headers of the compressed `block`.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let mut out = Vec::with_capacity(block.len().saturating_mul(4).saturating_add(64).min(MAX_INFLATED));
        let mut input = block;
        loop {
            let before = self.0.total_in();
            let result = self.0.decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.0.total_in() - before) as usize..];
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) if out.len() >= MAX_INFLATED => return Err(HeaderError::TooLarge),
                Ok(_) => out.reserve(out.capacity().clamp(64, MAX_INFLATED + 1 - out.len())),
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(DICTIONARY).map_err(|e| HeaderError::Zlib(e.to_string()))?;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            }
        }
        parse(&out)
    }
}

/// Takes `n` bytes off the front of `raw`.
fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], HeaderError> {
    if raw.len() < n {
        return Err(HeaderError::Malformed);
    }
    let (head, rest) = raw.split_at(n);
    *raw = rest;
    Ok(head)
}

/// Takes a 32-bit length off the front of `raw`.
fn length(raw: &mut &[u8]) -> Result<usize, HeaderError> {
    let b = take(raw, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

fn parse(mut raw: &[u8]) -> Result<Headers, HeaderError> {
    let count = length(&mut raw)?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = length(&mut raw)?;
        let name = String::from_utf8_lossy(take(&mut raw, n)?).to_ascii_lowercase();
        let n = length(&mut raw)?;
        let value = String::from_utf8_lossy(take(&mut raw, n)?).into_owned();
        headers.extend(value.split('\0').map(|v| (name.clone(), v.to_string())));
    }
    Ok(headers)
}

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).
const DICTIONARY: &[u8] = b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\x00\x00\x06delete\x00\
      \x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\
      \x00\x0faccept-language\x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dau\
      thorization\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10\
      content-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location\
      \x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\
      \x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\
      \x00\x08if-match\x00\x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\
      \x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forwards\
      \x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorization\x00\x00\x00\x05ran\
      ge\x00\x00\x00\x07referer\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07tr\
      ailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04vary\
      \x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\
      \x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\
      \x00\x03url\x00\x00\x00\x06public\x00\x00\x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin100\
      101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203\x20Non-Authoritativ\
      e\x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\x20Request401\x20Unauthorized403\x20\
      Forbidden404\x20Not\x20Found500\x20Internal\x20Server\x20Error501\x20Not\x20Implemented503\x20Service\x20Unava\
      ilableJan\x20Feb\x20Mar\x20Apr\x20May\x20Jun\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mon,\
      \x20Tue,\x20Wed,\x20Thu,\x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png,image/jpg,image/gif,applica\
      tion/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8c\
      harset=iso-8859-1,utf-,*,enq=0.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_across_a_connection() {
        let (mut deflate, mut inflate) = (Deflater::default(), Inflater::default());
        let first: Headers = vec![("streamType".into(), "error".into()), ("port".into(), "8080".into())];
        let second: Headers = vec![("streamtype".into(), "data".into())];
        let a = deflate.encode(&first);
        let b = deflate.encode(&second);
        assert!(b.len() < a.len(), "the second block reuses the first's context");
        assert_eq!(inflate.decode(&a).unwrap(), vec![("streamtype".to_string(), "error".to_string()), ("port".into(), "8080".into())]);
        assert_eq!(inflate.decode(&b).unwrap(), second);
        assert!(deflate.encode(&vec![]).len() > 4, "an empty block is still a compressed count");
    }

    #[test]
    fn a_block_from_another_zlib_decodes() {
        // {port: 8080, requestid: 0, streamtype: data} compressed by Python's zlib with the
        // SPDY/3 dictionary and a sync flush.
        let block = b"\x78\xf9\xe3\xc6\xa7\xc2\x02\x25\x3a\x48\xf9\x5b\x04\x4e\xea\x16\x06\x16\x06\x40\x9a\xb3\x08\x12\x5f\x99\xa0\x74\xcc\x68\x00\x4e\x89\x25\x45\xa9\x89\xb9\x48\x85\x4d\x22\x00\x00\x00\xff\xff";
        let headers = Inflater::default().decode(block).unwrap();
        assert_eq!(get(&headers, "streamType"), Some("data"));
        assert_eq!(get(&headers, "requestID"), Some("0"));
        assert_eq!(get(&headers, "port"), Some("8080"));
        assert_eq!(DICTIONARY.len(), 1423);
    }

    #[test]
    fn values_split_on_nul_and_garbage_is_an_error() {
        let mut deflate = Deflater::default();
        let block = deflate.encode(&vec![("x-stream-protocol-version".into(), "v4.channel.k8s.io\0v3.channel.k8s.io".into())]);
        let headers = Inflater::default().decode(&block).unwrap();
        assert_eq!(headers.len(), 2);
        assert!(Inflater::default().decode(b"not zlib").is_err());
    }

    #[test]
    fn blocks_inflating_past_the_cap_are_refused() {
        let mut deflate = Deflater::default();
        let bomb = deflate.encode(&vec![("x".into(), "\0".repeat(16 << 20))]);
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        assert!(matches!(Inflater::default().decode(&bomb), Err(HeaderError::TooLarge)));
        let fits = Deflater::default().encode(&vec![("x".into(), "y".repeat(MAX_INFLATED - 64))]);
        assert_eq!(Inflater::default().decode(&fits).unwrap().len(), 1);
    }
}
