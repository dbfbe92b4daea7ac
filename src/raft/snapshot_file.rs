//! The raft snapshot on disk and on the wire: one self-describing file, `[meta length: u64
//! LE][meta][entry]*`, each entry a bincode `(key, value)` of the engine's tree. The leader
//! sends the file verbatim in chunks; the follower writes the chunks to a file and installs
//! that, so neither side holds a whole snapshot in memory to send or receive it, and loading
//! streams the entries into the engine.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use openraft::{BasicNode, SnapshotMeta};

use super::NodeId;

pub type Meta = SnapshotMeta<NodeId, BasicNode>;

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("snapshot file: {e}"))
}

/// Writes a snapshot of `entries` described by `meta` to `path`, durably.
pub fn write(path: &Path, meta: &Meta, entries: &[(Vec<u8>, Vec<u8>)]) -> std::io::Result<()> {
    crate::pki::write_durably_with(path, |w| {
        let head = bincode::serialize(meta).map_err(invalid)?;
        w.write_all(&(head.len() as u64).to_le_bytes())?;
        w.write_all(&head)?;
        for entry in entries {
            bincode::serialize_into(&mut *w, entry).map_err(invalid)?;
        }
        Ok(())
    })
}

/// Converts the snapshot `old` of earlier releases (one bincode blob: meta, then the encoded
/// entries), if there is one, to a file at `new`, then removes it.
pub fn upgrade(old: &Path, new: &Path) -> std::io::Result<()> {
    #[derive(serde::Deserialize)]
    struct OldSnapshot {
        meta: Meta,
        data: Vec<u8>,
    }
    let raw = match std::fs::read(old) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let snapshot: OldSnapshot = bincode::deserialize(&raw).map_err(invalid)?;
    let entries: Vec<(Vec<u8>, Vec<u8>)> = bincode::deserialize(&snapshot.data).map_err(invalid)?;
    write(new, &snapshot.meta, &entries)?;
    std::fs::remove_file(old)?;
    crate::pki::sync_parent(old)
}

/// A snapshot file being read: its meta, then its entries.
pub struct Reader<R: Read> {
    input: BufReader<R>,
    pub meta: Meta,
}

impl<R: Read> Reader<R> {
    /// Reads the meta of the snapshot in `input`.
    pub fn new(input: R) -> std::io::Result<Self> {
        let mut input = BufReader::new(input);
        let mut len = [0u8; 8];
        input.read_exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        let mut head = Vec::new();
        (&mut input).take(len).read_to_end(&mut head)?;
        if head.len() as u64 != len {
            return Err(invalid("truncated meta"));
        }
        let meta = bincode::deserialize(&head).map_err(invalid)?;
        Ok(Self { input, meta })
    }

    /// The next entry, `None` at the end.
    pub fn next_entry(&mut self) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.input.fill_buf()?.is_empty() {
            return Ok(None);
        }
        bincode::deserialize_from(&mut self.input).map(Some).map_err(invalid)
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = std::io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_meta_and_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let meta = Meta { last_log_id: None, last_membership: Default::default(), snapshot_id: "s1".into() };
        let entries = vec![(b"a".to_vec(), vec![1u8; 300_000]), (b"b".to_vec(), Vec::new())];
        write(&path, &meta, &entries).unwrap();
        let reader = Reader::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.meta.snapshot_id, "s1");
        assert_eq!(reader.collect::<Result<Vec<_>, _>>().unwrap(), entries);
        let raw = std::fs::read(&path).unwrap();
        let mut cut = Reader::new(&raw[..raw.len() - 10]).unwrap();
        assert!(cut.next_entry().unwrap().is_some());
        assert!(cut.next_entry().is_err(), "a truncated entry is an error, not the end");
    }

    #[test]
    fn snapshots_of_earlier_releases_are_converted() {
        #[derive(serde::Serialize)]
        struct OldSnapshot {
            meta: Meta,
            data: Vec<u8>,
        }
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("snapshot.bin"), dir.path().join("snapshot.v2"));
        upgrade(&old, &new).unwrap();
        assert!(!new.exists(), "nothing to convert");
        let meta = Meta { last_log_id: None, last_membership: Default::default(), snapshot_id: "old".into() };
        let entries = vec![(b"k".to_vec(), b"v".to_vec())];
        std::fs::write(&old, bincode::serialize(&OldSnapshot { meta, data: bincode::serialize(&entries).unwrap() }).unwrap()).unwrap();
        upgrade(&old, &new).unwrap();
        assert!(!old.exists());
        let reader = Reader::new(std::fs::File::open(&new).unwrap()).unwrap();
        assert_eq!(reader.meta.snapshot_id, "old");
        assert_eq!(reader.collect::<Result<Vec<_>, _>>().unwrap(), entries);
    }
}
