//! Random access into an image tarball: one pass records where each member's data lies
//! (following hard and symbolic links between members), then members are read in place
//! without unpacking the archive to disk.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::node::runtime::{Result, RuntimeError};

/// Members larger than this are not read into memory as JSON documents.
const MAX_DOCUMENT: u64 = 16 << 20;

/// Where the members of a tar file are.
#[derive(Debug)]
pub struct TarIndex {
    pub path: PathBuf,
    /// member name (without `./`) → (data offset, size)
    entries: HashMap<String, (u64, u64)>,
}

fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl TarIndex {
    /// Scans the tar file at `path` (blocking; run it on a blocking thread).
    pub fn scan(path: &Path) -> Result<Self> {
        let err = |e: std::io::Error| RuntimeError::Io { path: path.display().to_string(), source: e };
        let file = std::fs::File::open(path).map_err(err)?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let mut links = Vec::new();
        for entry in archive.entries().map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            if kind.is_file() {
                entries.insert(name, (entry.raw_file_position(), entry.size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = String::from_utf8_lossy(&entry.link_name_bytes().unwrap_or_default()).into_owned();
                let target = if kind.is_symlink() && !target.starts_with('/') {
                    clean(&format!("{}/{target}", name.rsplit_once('/').map(|(d, _)| d).unwrap_or("")))
                } else {
                    clean(&target)
                };
                links.push((name, target));
            }
        }
        for (name, target) in links {
            if let Some(found) = entries.get(&target).copied() {
                entries.insert(name, found);
            }
        }
        if entries.is_empty() {
            return Err(RuntimeError::Invalid(format!("{}: not a tar archive, or an empty one", path.display())));
        }
        Ok(Self { path: path.to_path_buf(), entries })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(&clean(name))
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        self.entries.get(&clean(name)).map(|e| e.1)
    }

    /// The whole member `name` (a JSON document; refuses big ones).
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (offset, size) = self.locate(name)?;
        if size > MAX_DOCUMENT {
            return Err(RuntimeError::Invalid(format!("{}: member {name} is too big for a JSON document", self.path.display())));
        }
        let err = |e: std::io::Error| RuntimeError::Io { path: self.path.display().to_string(), source: e };
        let mut file = std::fs::File::open(&self.path).map_err(err)?;
        file.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut out = Vec::with_capacity(size as usize);
        file.take(size).read_to_end(&mut out).map_err(err)?;
        Ok(out)
    }

    /// A reader of the member `name`.
    pub async fn open(&self, name: &str) -> Result<impl AsyncRead + Unpin + Send + 'static> {
        let (offset, size) = self.locate(name)?;
        let err = |e: std::io::Error| RuntimeError::Io { path: self.path.display().to_string(), source: e };
        let mut file = tokio::fs::File::open(&self.path).await.map_err(err)?;
        file.seek(SeekFrom::Start(offset)).await.map_err(err)?;
        Ok(tokio::io::BufReader::with_capacity(256 << 10, file.take(size)))
    }

    /// The first bytes of member `name` (to sniff compression).
    pub fn head(&self, name: &str, n: usize) -> Result<Vec<u8>> {
        let (offset, size) = self.locate(name)?;
        let err = |e: std::io::Error| RuntimeError::Io { path: self.path.display().to_string(), source: e };
        let mut file = std::fs::File::open(&self.path).map_err(err)?;
        file.seek(SeekFrom::Start(offset)).map_err(err)?;
        let mut out = Vec::new();
        file.take(size.min(n as u64)).read_to_end(&mut out).map_err(err)?;
        Ok(out)
    }

    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        self.entries.get(&clean(name)).copied().ok_or_else(|| RuntimeError::Invalid(format!("{}: no member {name}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_links_are_found_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        b.append_data(&mut h, "./dir/file.json", &b"hello"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "other/link", "../dir/file.json").unwrap();
        b.finish().unwrap();
        drop(b);
        let index = TarIndex::scan(&path).unwrap();
        assert_eq!(index.read("dir/file.json").unwrap(), b"hello");
        assert_eq!(index.read("other/link").unwrap(), b"hello");
        assert_eq!(index.head("dir/file.json", 2).unwrap(), b"he");
        assert!(!index.contains("nothing"));
        assert_eq!(clean("./a/../b//c"), "b/c");
    }
}
