//! A snapshot file: the line `orch-snapshot/1`, one line of JSON header (name, node, time,
//! store revision, body size and SHA-256, sealed credentials), then the body — a consistent
//! copy of the store (raft's snapshot format, see `raft::backup`). Written owner-only and
//! durably; read back only after its checksum matches.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pki::hex;
use crate::raft::backup;
use crate::store::mvcc::MvccEngine;
use crate::store::Revision;

const MAGIC: &str = "orch-snapshot/1";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub name: String,
    pub node: String,
    /// RFC 3339.
    pub created_at: String,
    pub revision: Revision,
    /// Bytes of the body.
    pub size: u64,
    /// Hex SHA-256 of the body.
    pub sha256: String,
    /// The server's credentials, sealed (see `bundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// Reads through to a hash, counting.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Size, hex SHA-256 and store revision of the copy in `copy` (read to its end).
fn measure(copy: &mut std::fs::File) -> std::io::Result<(u64, String, Revision)> {
    let mut hashing = Hashing { inner: &mut *copy, hash: Sha256::new(), size: 0 };
    let mut revision = 0;
    for entry in backup::CopyReader::new(&mut hashing)? {
        let (k, v) = entry?;
        revision = MvccEngine::revision_entry(&k, &v).unwrap_or(revision);
    }
    let mut rest = Vec::new();
    hashing.read_to_end(&mut rest)?;
    Ok((hashing.size, hex(&hashing.hash.finalize()), revision))
}

/// Writes `header` (its size, checksum and revision filled in from `copy`) and the copy to
/// `path`; returns the header written.
pub fn write(path: &Path, mut header: Header, copy: &mut std::fs::File) -> std::io::Result<Header> {
    (header.size, header.sha256, header.revision) = measure(copy)?;
    copy.seek(SeekFrom::Start(0))?;
    let line = serde_json::to_string(&header).map_err(invalid)?;
    crate::pki::write_durably_with(path, |w| {
        writeln!(w, "{MAGIC}")?;
        writeln!(w, "{line}")?;
        let copied = std::io::copy(copy, w)?;
        if copied != header.size {
            return Err(invalid(format!("the store copy changed while it was written ({copied} of {} bytes)", header.size)));
        }
        Ok(())
    })?;
    Ok(header)
}

/// The header of the snapshot at `path`, and the reader positioned at its body.
pub fn read_header(path: &Path) -> std::io::Result<(Header, BufReader<std::fs::File>)> {
    let mut input = BufReader::new(std::fs::File::open(path)?);
    let mut magic = String::new();
    input.by_ref().take(64).read_line(&mut magic)?;
    if magic.trim_end() != MAGIC {
        return Err(invalid(format!("{} is not an orch snapshot", path.display())));
    }
    let mut line = String::new();
    input.by_ref().take(1 << 20).read_line(&mut line)?;
    let header = serde_json::from_str(line.trim_end()).map_err(|e| invalid(format!("{}: header: {e}", path.display())))?;
    Ok((header, input))
}

/// The header of the snapshot at `path` and its store entries, after its checksum matched.
pub fn open_verified(path: &Path) -> std::io::Result<(Header, impl Iterator<Item = std::io::Result<(Vec<u8>, Vec<u8>)>>)> {
    let (header, mut body) = read_header(path)?;
    let mut hashing = Hashing { inner: &mut body, hash: Sha256::new(), size: 0 };
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    let (size, sum) = (hashing.size, hex(&hashing.hash.finalize()));
    if size != header.size || sum != header.sha256 {
        return Err(invalid(format!(
            "{} is damaged: {size} bytes with SHA-256 {sum}, its header says {} bytes with {}",
            path.display(),
            header.size,
            header.sha256
        )));
    }
    let (_, body) = read_header(path)?;
    Ok((header, backup::CopyReader::new(body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "hello\n").unwrap();
        assert!(read_header(&path).unwrap_err().to_string().contains("not an orch snapshot"));
        let header = Header { name: "n".into(), size: 3, sha256: hex(&Sha256::digest(b"abc")), ..Default::default() };
        std::fs::write(&path, format!("{MAGIC}\n{}\nabd", serde_json::to_string(&header).unwrap())).unwrap();
        assert_eq!(read_header(&path).unwrap().0, header);
        assert!(open_verified(&path).err().unwrap().to_string().contains("is damaged"));
    }
}
