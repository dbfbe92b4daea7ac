//! Container logs as `kubectl logs` wants them, read from the CRI log files: the current or
//! previous run's file, with sinceSeconds/sinceTime, tailLines, timestamps and limitBytes
//! applied, and follow (new records as they are written, until the container stops); older
//! runs' logs are pruned, as the kubelet keeps only the current and the last terminated one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A query parameter of `/containerLogs` that does not parse (a 400 answer).
#[derive(Debug, thiserror::Error)]
pub enum LogQueryError {
    #[error("{name}={value:?} is not a number")]
    NotANumber { name: &'static str, value: String },
    #[error("sinceTime={0:?} is not an RFC 3339 time")]
    NotATime(String),
}

/// The query parameters of `/containerLogs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since: Option<OffsetDateTime>,
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

impl LogOptions {
    pub fn from_query(q: &HashMap<String, String>, now: OffsetDateTime) -> Result<Self, LogQueryError> {
        let number = |name: &'static str| -> Result<Option<i64>, LogQueryError> {
            q.get(name).map(|v| v.parse::<i64>().map_err(|_| LogQueryError::NotANumber { name, value: v.clone() })).transpose()
        };
        let mut since = number("sinceSeconds")?.map(|s| crate::k8s::time::shift(now, -s.max(0)));
        if let Some(t) = q.get("sinceTime") {
            since = Some(OffsetDateTime::parse(t, &Rfc3339).map_err(|_| LogQueryError::NotATime(t.clone()))?);
        }
        Ok(Self {
            follow: flag(q, "follow"),
            previous: flag(q, "previous"),
            timestamps: flag(q, "timestamps"),
            tail_lines: number("tailLines")?.map(|n| n.max(0) as usize),
            limit_bytes: number("limitBytes")?.map(|n| n.max(0) as usize),
            since,
        })
    }
}

/// One output line put back together from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub time: OffsetDateTime,
    /// The timestamp as written in the file.
    pub stamp: String,
    pub text: Vec<u8>,
    /// Ends with a newline (the last record was `F`).
    pub complete: bool,
}

/// Splits CRI log text into lines, joining partial records; a trailing partial line is kept
/// in `pending` for the next chunk of a followed file.
pub fn parse(text: &[u8], pending: &mut Option<LogLine>) -> Vec<LogLine> {
    let mut out = Vec::new();
    for raw in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut parts = raw.splitn(4, |b| *b == b' ');
        let (Some(stamp), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let content = parts.next().unwrap_or_default();
        let stamp = String::from_utf8_lossy(stamp).into_owned();
        let Ok(time) = OffsetDateTime::parse(&stamp, &Rfc3339) else { continue };
        let line = pending.get_or_insert_with(|| LogLine { time, stamp, text: Vec::new(), complete: false });
        line.text.extend_from_slice(content);
        if tag == b"F" {
            let mut done = pending.take().expect("just inserted");
            done.complete = true;
            out.push(done);
        }
    }
    out
}

/// The bytes of `lines` as `kubectl logs` prints them.
pub fn render(lines: &[LogLine], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        if timestamps {
            out.extend_from_slice(l.stamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&l.text);
        if l.complete {
            out.push(b'\n');
        }
    }
    out
}

/// The lines to show now from a file's content (since, then tail).
pub fn select(mut lines: Vec<LogLine>, opts: &LogOptions) -> Vec<LogLine> {
    if let Some(since) = opts.since {
        lines.retain(|l| l.time >= since);
    }
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    lines
}

/// The log files of `container` in pod `namespace/name`, oldest run first (the newest pod
/// directory when the name was reused).
pub fn files(logs_dir: &Path, namespace: &str, name: &str, container: &str) -> Vec<PathBuf> {
    let prefix = format!("{namespace}_{name}_");
    let newest_pod = std::fs::read_dir(logs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    let Some(pod_dir) = newest_pod else { return Vec::new() };
    let mut runs: Vec<(u32, PathBuf)> = std::fs::read_dir(pod_dir.path().join(container))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((name.strip_suffix(".log")?.parse().ok()?, e.path()))
        })
        .collect();
    runs.sort();
    runs.into_iter().map(|(_, p)| p).collect()
}

/// Removes the log files (and their rotated parts, `<attempt>.log.<time>`) of runs before
/// `keep_from` in a container's log directory: before run N starts, only run N-1's log is kept
/// for `kubectl logs --previous`.
pub fn prune_runs(container_dir: &Path, keep_from: u32) {
    for entry in std::fs::read_dir(container_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let attempt = name.split_once(".log").and_then(|(n, _)| n.parse::<u32>().ok());
        if attempt.is_some_and(|a| a < keep_from) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an old container log");
            }
        }
    }
}

/// Applies limitBytes to a chunk about to be sent; `sent` counts what went out before.
pub fn limit(mut chunk: Vec<u8>, sent: &mut usize, limit: Option<usize>) -> Vec<u8> {
    if let Some(max) = limit {
        chunk.truncate(max.saturating_sub(*sent));
    }
    *sent += chunk.len();
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000000Z stdout F hello\n\
                       2024-01-01T00:00:02.000000000Z stderr P wor\n\
                       2024-01-01T00:00:02.500000000Z stderr F ld\n\
                       2024-01-01T00:00:03.000000000Z stdout F third\n\
                       2024-01-01T00:00:04.000000000Z stdout P unfinished";

    #[test]
    fn records_become_lines_with_the_options_applied() {
        let mut pending = None;
        let lines = parse(LOG.as_bytes(), &mut pending);
        assert_eq!(render(&lines, false), b"hello\nworld\nthird\n");
        assert_eq!(pending.as_ref().unwrap().text, b"unfinished");
        let more = parse(b"2024-01-01T00:00:05.000000000Z stdout F !\n", &mut pending);
        assert_eq!(render(&more, true), b"2024-01-01T00:00:04.000000000Z unfinished!\n");

        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let now = OffsetDateTime::parse("2024-01-01T00:00:04Z", &Rfc3339).unwrap();
        let opts = LogOptions::from_query(&q(&[("tailLines", "1"), ("timestamps", "true")]), now).unwrap();
        assert_eq!(render(&select(lines.clone(), &opts), opts.timestamps), b"2024-01-01T00:00:03.000000000Z third\n");
        let opts = LogOptions::from_query(&q(&[("sinceSeconds", "2")]), now).unwrap();
        assert_eq!(render(&select(lines.clone(), &opts), false), b"world\nthird\n");
        assert!(LogOptions::from_query(&q(&[("tailLines", "x")]), now).is_err());
        assert!(LogOptions::from_query(&q(&[("follow", "true")]), now).unwrap().follow);
        let mut sent = 0;
        assert_eq!(limit(b"hello\n".to_vec(), &mut sent, Some(4)), b"hell");
        assert_eq!(limit(b"more".to_vec(), &mut sent, Some(4)), b"");
    }

    #[test]
    fn finds_the_runs_of_a_container() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ns_p_u1/c/0.log", "ns_p_u1/c/1.log", "ns_p_u1/c/10.log", "ns_q_u2/c/0.log"] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let names: Vec<String> =
            files(dir.path(), "ns", "p", "c").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["0.log", "1.log", "10.log"]);
        assert!(files(dir.path(), "ns", "p", "other").is_empty());
    }

    #[test]
    fn only_the_last_terminated_run_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["0.log", "1.log", "1.log.20240101-000000", "2.log", "notes.txt"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        prune_runs(dir.path(), 2);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["2.log", "notes.txt"]);
        prune_runs(&dir.path().join("missing"), 5);
    }
}
