//! The CRI container log format the kubelet keeps under /var/log/pods: one line per output
//! line, `<RFC 3339 timestamp with nanoseconds> <stdout|stderr> <F|P> <text>`, where P marks
//! a partial line (split because it was too long, or cut by the stream's end mid-line). The
//! file is rotated by size ([`LogRotation`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::log_rotation::LogRotation;

/// Lines longer than this are split into partial (`P`) records, as containerd does.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The timestamp of a record: UTC with nine fractional digits.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let base = t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default();
    let secs = base.trim_end_matches('Z');
    format!("{secs}.{:09}Z", t.nanosecond())
}

/// One record.
pub fn record(t: OffsetDateTime, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} {} ", timestamp(t), stream.as_str(), if partial { "P" } else { "F" }).into_bytes();
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// The log file of one container, shared by its stdout and stderr copiers.
#[derive(Clone)]
pub struct LogFile(Arc<Mutex<OpenLog>>);

struct OpenLog {
    file: std::fs::File,
    path: PathBuf,
    size: u64,
    rotation: LogRotation,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (appending; creating it and its directory) the log at `path`, rotated by `rotation`.
    pub fn open(path: &Path, rotation: LogRotation) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self(Arc::new(Mutex::new(OpenLog { file, path: path.to_path_buf(), size, rotation }))))
    }

    fn write_record(&self, stream: Stream, partial: bool, text: &[u8]) {
        let now = OffsetDateTime::now_utc();
        let rec = record(now, stream, partial, text);
        let mut log = self.0.lock();
        if log.rotation.due(log.size, rec.len()) {
            let rotated = log.rotation.rotate(&log.path, now).and_then(|_| open_append(&log.path));
            match rotated {
                Ok(file) => (log.file, log.size) = (file, 0),
                Err(e) => tracing::warn!(file = %log.path.display(), error = %e, "cannot rotate a container log"),
            }
        }
        match log.file.write_all(&rec) {
            Ok(()) => log.size += rec.len() as u64,
            Err(e) => tracing::warn!(error = %e, "cannot write a container log record"),
        }
    }
}

/// Splits one stream's bytes into records as they arrive.
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        Self { stream, pending: Vec::new() }
    }

    /// Takes a chunk of output; every complete line (and every MAX_LINE piece of a long one)
    /// becomes a record.
    pub fn push(&mut self, chunk: &[u8], log: &LogFile) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let mut line = &self.pending[start..start + nl];
            while line.len() > MAX_LINE {
                log.write_record(self.stream, true, &line[..MAX_LINE]);
                line = &line[MAX_LINE..];
            }
            log.write_record(self.stream, false, line);
            start += nl + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() > MAX_LINE {
            log.write_record(self.stream, true, &self.pending[..MAX_LINE]);
            self.pending.drain(..MAX_LINE);
        }
    }

    /// The stream ended: a last line without a newline is written as a partial record.
    pub fn finish(&mut self, log: &LogFile) {
        if !self.pending.is_empty() {
            log.write_record(self.stream, true, &std::mem::take(&mut self.pending));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_nanoseconds() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_475_712_229_000_000_042).unwrap();
        assert_eq!(timestamp(t), "2016-10-06T00:03:49.000000042Z");
        assert_eq!(record(t, Stream::Stderr, true, b"x"), b"2016-10-06T00:03:49.000000042Z stderr P x\n");
    }

    #[test]
    fn lines_split_into_full_and_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = LogFile::open(&path, LogRotation::default()).unwrap();
        let mut out = LineSplitter::new(Stream::Stdout);
        out.push(b"hel", &log);
        out.push(b"lo\nwor", &log);
        out.push(&vec![b'a'; MAX_LINE + 1], &log);
        out.push(b"\n", &log);
        out.finish(&log);
        let mut err = LineSplitter::new(Stream::Stderr);
        err.push(b"tail", &log);
        err.finish(&log);
        let text = std::fs::read_to_string(&path).unwrap();
        let fields: Vec<(String, String, usize)> = text
            .lines()
            .map(|l| {
                let p: Vec<&str> = l.splitn(4, ' ').collect();
                (p[1].to_string(), p[2].to_string(), p[3].len())
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("stdout".into(), "F".into(), 5),
                ("stdout".into(), "P".into(), MAX_LINE),
                ("stdout".into(), "F".into(), 4),
                ("stderr".into(), "P".into(), 4)
            ]
        );
        assert!(text.starts_with(&OffsetDateTime::now_utc().year().to_string()));
    }

    #[test]
    fn a_full_log_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = LogFile::open(&path, LogRotation { max_size: 200, max_files: 2 }).unwrap();
        let mut out = LineSplitter::new(Stream::Stdout);
        for i in 0..20 {
            out.push(format!("line {i:02}\n").as_bytes(), &log);
        }
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 200 && current.trim_end().ends_with("line 19"), "{current}");
        let rotated = crate::node::runtime::log_rotation::rotated_files(&path);
        assert_eq!(rotated.len(), 1, "one rotated file besides the current one");
        let older = std::fs::read_to_string(&rotated[0]).unwrap();
        let first_current = current.lines().next().unwrap().rsplit(' ').next().unwrap().to_string();
        let last_older = older.lines().last().unwrap().rsplit(' ').next().unwrap().to_string();
        assert_eq!(last_older.parse::<u32>().unwrap() + 1, first_current.parse::<u32>().unwrap(), "no record lost at the seam");
    }
}
