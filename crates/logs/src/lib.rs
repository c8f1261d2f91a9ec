//! Logs: lines with labels (a stream per label set), stored in segment files and
//! searched by stream matchers, line filters (`|=`, `!=`, `|~`, `!~`) and time range;
//! new lines are also broadcast for live tails.
//!
//! `DATA/logs/streams` lists every stream once (`[len][crc][id, labels]` records,
//! synced when a stream is created); segments `NNNNNNNN` hold line records
//! `[len][crc][stream, nanoseconds, line]`. A closed segment gets a `.meta` sidecar
//! (time bounds and streams) so opening does not read it; the open one is scanned.
//! A line is in the file (handed to the operating system) before `push` returns, so
//! killing the process never loses an acknowledged line; segments are synced every
//! second. Segments past the retention time or size are deleted oldest first.
//! `logql` reads and evaluates LogQL over them.
#![forbid(unsafe_code)]

pub mod logql;

pub use crate::logql::{parse_log_query, LogQuery, QueryError};
use mobius_series::labels::{Labels, Matcher};
use mobius_tsdb::wal::{get_bytes, get_varint, put_varint, unzigzag, zigzag};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::broadcast;

const SEGMENT_BYTES: u64 = 16 << 20;

/// A Loki push body that cannot be stored, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the push body does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("streams[{stream}].stream: invalid label name `{name}`")]
    LabelName { stream: usize, name: String },
    #[error("streams[{0}].stream: a stream needs at least one label")]
    NoLabels(usize),
    #[error("streams[{stream}].values[{value}]: the first item must be a string of nanoseconds")]
    Timestamp { stream: usize, value: usize },
    #[error("streams[{stream}].values[{value}]: the second item must be the line")]
    Line { stream: usize, value: usize },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    streams: Vec<PushStream>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PushStream {
    stream: std::collections::BTreeMap<String, String>,
    values: Vec<Vec<serde_json::Value>>,
}

/// Decodes Loki's JSON push body (`POST /loki/api/v1/push`) into lines.
pub fn decode_push(body: &[u8]) -> Result<Vec<LogLine>, PushError> {
    let body: PushBody = serde_json::from_slice(body)?;
    let mut lines = Vec::new();
    for (i, stream) in body.streams.into_iter().enumerate() {
        if let Some(name) = stream.stream.keys().find(|k| !mobius_series::valid_label_name(k)) {
            return Err(PushError::LabelName { stream: i, name: name.clone() });
        }
        if stream.stream.is_empty() {
            return Err(PushError::NoLabels(i));
        }
        let labels = Labels::new(stream.stream.into_iter().collect());
        for (j, value) in stream.values.into_iter().enumerate() {
            let ts = value
                .first()
                .and_then(serde_json::Value::as_str)
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or(PushError::Timestamp { stream: i, value: j })?;
            let line =
                value.get(1).and_then(serde_json::Value::as_str).ok_or(PushError::Line { stream: i, value: j })?;
            lines.push(LogLine { labels: labels.clone(), ts, line: line.to_string() });
        }
    }
    Ok(lines)
}

/// One line with its stream's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub labels: Labels,
    /// Nanoseconds since the epoch.
    pub ts: i64,
    pub line: String,
}

/// Reads a Go-style quoted string (`"..."` with escapes, or a `` `raw` `` one) at the
/// start of `text`; returns it and the rest.
pub(crate) fn quoted(text: &str) -> Option<(String, &str)> {
    if let Some(rest) = text.strip_prefix('`') {
        let end = rest.find('`')?;
        return Some((rest[..end].to_string(), &rest[end + 1..]));
    }
    let rest = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c => out.push(c),
            },
            '"' => return Some((out, &rest[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct SegmentMeta {
    min_ts: i64,
    max_ts: i64,
    bytes: u64,
    streams: BTreeSet<u32>,
}

#[derive(Debug)]
struct Inner {
    streams: Vec<Labels>,
    by_labels: HashMap<Labels, u32>,
    streams_out: File,
    /// Every segment by number, the open one last.
    segments: Vec<(u32, SegmentMeta)>,
    out: BufWriter<File>,
    unsynced: bool,
}

/// How long and how much the log store keeps.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub retention: Option<std::time::Duration>,
    pub retention_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
    tail: broadcast::Sender<Arc<LogLine>>,
    options: LogOptions,
}

fn frame(payload: &[u8], out: &mut impl Write) -> io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// The whole records of a file (a torn tail is ignored; the caller cuts it).
fn records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload);
        pos += 8 + len;
    }
    (out, pos)
}

fn decode_line(mut payload: &[u8]) -> Option<(u32, i64, &str)> {
    let stream = u32::try_from(get_varint(&mut payload)?).ok()?;
    let ts = unzigzag(get_varint(&mut payload)?);
    let line = std::str::from_utf8(get_bytes(&mut payload)?).ok()?;
    Some((stream, ts, line))
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// Reads a file, cutting a torn tail off (a crash in the middle of a write).
fn read_cut(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let (_, whole) = records(&bytes);
    if whole < bytes.len() {
        tracing::warn!(file = %path.display(), "log file ends with a torn record; truncated");
        OpenOptions::new().write(true).open(path)?.set_len(whole as u64)?;
        bytes.truncate(whole);
    }
    Ok(bytes)
}

impl LogStore {
    pub fn open(dir: &Path, options: LogOptions) -> io::Result<Arc<LogStore>> {
        fs::create_dir_all(dir)?;
        let streams_path = dir.join("streams");
        let mut streams = Vec::new();
        let mut by_labels = HashMap::new();
        if streams_path.exists() {
            let bytes = read_cut(&streams_path)?;
            for mut payload in records(&bytes).0 {
                let Some(id) = get_varint(&mut payload).and_then(|v| u32::try_from(v).ok()) else { continue };
                let count = get_varint(&mut payload).unwrap_or(0);
                let mut pairs = Vec::new();
                for _ in 0..count {
                    let k = get_bytes(&mut payload).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("");
                    let v = get_bytes(&mut payload).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("");
                    pairs.push((k.to_string(), v.to_string()));
                }
                let labels = Labels::new(pairs);
                if id as usize == streams.len() {
                    by_labels.insert(labels.clone(), id);
                    streams.push(labels);
                }
            }
        }
        let streams_out = OpenOptions::new().create(true).append(true).open(&streams_path)?;
        let mut numbers: Vec<u32> =
            fs::read_dir(dir)?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect();
        numbers.sort_unstable();
        let mut segments = Vec::new();
        for (i, n) in numbers.iter().enumerate() {
            let path = segment_path(dir, *n);
            let sidecar = path.with_extension("meta");
            let last = i + 1 == numbers.len();
            let meta = match fs::read(&sidecar).ok().and_then(|b| serde_json::from_slice::<SegmentMeta>(&b).ok()) {
                Some(meta) if !last => meta,
                _ => {
                    let bytes = read_cut(&path)?;
                    let mut meta = SegmentMeta {
                        min_ts: i64::MAX,
                        max_ts: i64::MIN,
                        bytes: bytes.len() as u64,
                        ..Default::default()
                    };
                    for payload in records(&bytes).0 {
                        if let Some((stream, ts, _)) = decode_line(payload) {
                            meta.min_ts = meta.min_ts.min(ts);
                            meta.max_ts = meta.max_ts.max(ts);
                            meta.streams.insert(stream);
                        }
                    }
                    meta
                }
            };
            segments.push((*n, meta));
        }
        let current = segments.last().map_or(1, |(n, _)| *n);
        if segments.is_empty() {
            segments.push((1, SegmentMeta { min_ts: i64::MAX, max_ts: i64::MIN, ..Default::default() }));
        }
        let out = BufWriter::new(OpenOptions::new().create(true).append(true).open(segment_path(dir, current))?);
        let (tail, _) = broadcast::channel(4096);
        Ok(Arc::new(LogStore {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner { streams, by_labels, streams_out, segments, out, unsynced: false }),
            tail,
            options,
        }))
    }

    /// Stores lines (and announces them to live tails); returns once they are in the files.
    pub fn push(&self, lines: Vec<LogLine>) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let mut payload = Vec::new();
        for line in &lines {
            let id = match inner.by_labels.get(&line.labels) {
                Some(id) => *id,
                None => {
                    let id = u32::try_from(inner.streams.len()).map_err(io::Error::other)?;
                    payload.clear();
                    put_varint(&mut payload, u64::from(id));
                    put_varint(&mut payload, line.labels.len() as u64);
                    for (k, v) in line.labels.iter() {
                        put_varint(&mut payload, k.len() as u64);
                        payload.extend_from_slice(k.as_bytes());
                        put_varint(&mut payload, v.len() as u64);
                        payload.extend_from_slice(v.as_bytes());
                    }
                    let mut record = Vec::new();
                    frame(&payload, &mut record)?;
                    inner.streams_out.write_all(&record)?;
                    inner.streams_out.sync_data()?;
                    inner.streams.push(line.labels.clone());
                    inner.by_labels.insert(line.labels.clone(), id);
                    id
                }
            };
            payload.clear();
            put_varint(&mut payload, u64::from(id));
            put_varint(&mut payload, zigzag(line.ts));
            put_varint(&mut payload, line.line.len() as u64);
            payload.extend_from_slice(line.line.as_bytes());
            let mut record = Vec::with_capacity(payload.len() + 8);
            frame(&payload, &mut record)?;
            inner.out.write_all(&record)?;
            if let Some((_, meta)) = inner.segments.last_mut() {
                meta.min_ts = meta.min_ts.min(line.ts);
                meta.max_ts = meta.max_ts.max(line.ts);
                meta.bytes += record.len() as u64;
                meta.streams.insert(id);
            }
        }
        inner.out.flush()?;
        inner.unsynced = true;
        if inner.segments.last().is_some_and(|(_, m)| m.bytes >= SEGMENT_BYTES) {
            self.cut(&mut inner)?;
        }
        drop(inner);
        for line in lines {
            let _ = self.tail.send(Arc::new(line));
        }
        Ok(())
    }

    fn cut(&self, inner: &mut Inner) -> io::Result<()> {
        inner.out.flush()?;
        inner.out.get_ref().sync_data()?;
        let Some((n, meta)) = inner.segments.last().cloned() else { return Ok(()) };
        let sidecar = segment_path(&self.dir, n).with_extension("meta");
        fs::write(&sidecar, serde_json::to_vec(&meta).map_err(io::Error::other)?)?;
        let next = n + 1;
        inner.out = BufWriter::new(OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, next))?);
        inner.segments.push((next, SegmentMeta { min_ts: i64::MAX, max_ts: i64::MIN, ..Default::default() }));
        inner.unsynced = false;
        Ok(())
    }

    /// Makes every line so far durable, and deletes segments past retention.
    pub fn sync(&self) -> io::Result<()> {
        let mut inner = self.inner.lock();
        if inner.unsynced {
            inner.out.get_ref().sync_data()?;
            inner.unsynced = false;
        }
        let newest = inner.segments.iter().map(|(_, m)| m.max_ts).max().unwrap_or(i64::MIN);
        let horizon =
            self.options.retention.map(|r| newest.saturating_sub(i64::try_from(r.as_nanos()).unwrap_or(i64::MAX)));
        let mut total: u64 = inner.segments.iter().map(|(_, m)| m.bytes).sum();
        while inner.segments.len() > 1 {
            let (n, meta) = inner.segments[0].clone();
            let too_old = horizon.is_some_and(|h| meta.max_ts < h);
            let too_big = self.options.retention_bytes.is_some_and(|limit| total > limit);
            if !too_old && !too_big {
                break;
            }
            fs::remove_file(segment_path(&self.dir, n))?;
            let _ = fs::remove_file(segment_path(&self.dir, n).with_extension("meta"));
            total = total.saturating_sub(meta.bytes);
            inner.segments.remove(0);
        }
        Ok(())
    }

    /// Lines matching `query` with `start <= ts <= end` (nanoseconds), newest first when
    /// `backward`, at most `limit`, grouped by stream.
    pub fn query(
        &self,
        query: &LogQuery,
        start: i64,
        end: i64,
        limit: usize,
        backward: bool,
    ) -> io::Result<Vec<LogLine>> {
        let (segments, streams) = self.plan(&query.matchers, start, end)?;
        let mut found = Vec::new();
        let ordered: Vec<u32> = if backward { segments.into_iter().rev().collect() } else { segments };
        for n in ordered {
            self.read_segment(n, &streams, start, end, &mut |labels, ts, line| {
                if let Some((labels, line)) = query.process(labels, line) {
                    found.push(LogLine { labels, ts, line });
                }
            })?;
            // Segments overlap little in time: once enough is found, older (or newer) ones
            // can only add lines past the limit.
            if found.len() >= limit.saturating_mul(2).max(limit) {
                break;
            }
        }
        found.sort_by_key(|l| l.ts);
        if backward {
            found.reverse();
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Calls `f` with every line of the streams `matchers` select between `start` and
    /// `end` (nanoseconds, both included), oldest segment first; metric queries read
    /// their lines this way.
    pub fn scan(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        f: &mut dyn FnMut(&Labels, i64, &str),
    ) -> io::Result<()> {
        let (segments, streams) = self.plan(matchers, start, end)?;
        for n in segments {
            self.read_segment(n, &streams, start, end, f)?;
        }
        Ok(())
    }

    /// The segments that may hold lines of the streams `matchers` select between
    /// `start` and `end`, and every stream's labels.
    fn plan(&self, matchers: &[Matcher], start: i64, end: i64) -> io::Result<(Vec<u32>, Vec<Labels>)> {
        let mut inner = self.inner.lock();
        inner.out.flush()?;
        let wanted: BTreeSet<u32> = inner
            .streams
            .iter()
            .enumerate()
            .filter(|(_, l)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .map(|(i, _)| i as u32)
            .collect();
        let segments: Vec<u32> = inner
            .segments
            .iter()
            .filter(|(_, m)| m.max_ts >= start && m.min_ts <= end && m.streams.iter().any(|s| wanted.contains(s)))
            .map(|(n, _)| *n)
            .collect();
        Ok((segments, inner.streams.clone()))
    }

    /// Calls `f` with each line of segment `n` between `start` and `end` (a segment
    /// deleted by retention meanwhile has none).
    fn read_segment(
        &self,
        n: u32,
        streams: &[Labels],
        start: i64,
        end: i64,
        f: &mut dyn FnMut(&Labels, i64, &str),
    ) -> io::Result<()> {
        let bytes = match fs::read(segment_path(&self.dir, n)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for payload in records(&bytes).0 {
            let Some((stream, ts, line)) = decode_line(payload) else { continue };
            if ts < start || ts > end {
                continue;
            }
            if let Some(labels) = streams.get(stream as usize) {
                f(labels, ts, line);
            }
        }
        Ok(())
    }

    /// Streams whose labels match, for the labels endpoints.
    pub fn streams(&self) -> Vec<Labels> {
        self.inner.lock().streams.clone()
    }

    /// Every line pushed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.tail.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(service: &str, ts: i64, text: &str) -> LogLine {
        LogLine { labels: Labels::from_pairs(&[("service", service), ("env", "prod")]), ts, line: text.into() }
    }

    #[test]
    fn lines_are_found_by_stream_text_regex_and_time_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogOptions { retention: None, retention_bytes: None };
        let store = LogStore::open(dir.path(), options.clone()).unwrap();
        store
            .push(vec![
                line("web", 1, "GET / 200"),
                line("web", 2, "GET /cart 500 timeout"),
                line("api", 3, "POST /orders 201"),
                line("web", 4, "GET /cart 200"),
            ])
            .unwrap();
        let q = |text: &str| parse_log_query(text).unwrap();
        let texts = |found: Vec<LogLine>| found.into_iter().map(|l| l.line).collect::<Vec<_>>();
        assert_eq!(
            texts(store.query(&q("{service=\"web\"}"), 0, 10, 100, true).unwrap()),
            ["GET /cart 200", "GET /cart 500 timeout", "GET / 200"]
        );
        assert_eq!(
            texts(store.query(&q("{service=\"web\"} |= \"cart\" != \"timeout\""), 0, 10, 100, false).unwrap()),
            ["GET /cart 200"]
        );
        assert_eq!(
            texts(store.query(&q("{env=\"prod\"} |~ \" 5\\\\d\\\\d \""), 0, 10, 100, false).unwrap()),
            ["GET /cart 500 timeout"]
        );
        assert_eq!(
            texts(store.query(&q("{service=~\"web|api\"}"), 2, 3, 100, false).unwrap()),
            ["GET /cart 500 timeout", "POST /orders 201"]
        );
        assert_eq!(store.query(&q("{service=\"web\"}"), 0, 10, 1, true).unwrap().len(), 1);
        drop(store);
        let store = LogStore::open(dir.path(), options).unwrap();
        assert_eq!(texts(store.query(&q("{service=\"api\"}"), 0, 10, 100, true).unwrap()), ["POST /orders 201"]);
        store.push(vec![line("api", 5, "POST /orders 201 again")]).unwrap();
        assert_eq!(store.query(&q("{service=\"api\"}"), 0, 10, 100, true).unwrap().len(), 2);
    }

    #[test]
    fn bad_queries_say_why() {
        assert!(parse_log_query("service=web").unwrap_err().to_string().contains("stream selector"));
        assert!(parse_log_query("{service=\"web\"").unwrap_err().to_string().contains("closing"));
        assert!(parse_log_query("{service=\"web\"} |= cart").unwrap_err().to_string().contains("quoted"));
        assert!(parse_log_query("{service=\"web\"} |~ \"(\"").is_err());
        assert!(parse_log_query("{service=~\".*\"}").unwrap_err().to_string().contains("empty"));
        assert!(matches!(parse_log_query("count_over_time({service=\"web\"}[1m])"), Err(QueryError::NotLogQuery)));
    }

    /// Issue 17, item 7: a store that cannot be read stays a read failure through the
    /// evaluator (the server answers 500 for it, and 400 for a query's own fault).
    #[test]
    fn a_read_failure_keeps_its_kind_and_source_through_evaluation() {
        let expr = logql::parse("sum(count_over_time({service=\"web\"}[1m]))").unwrap();
        let mut failing = |_: &LogQuery, _, _, _| -> Result<logql::Samples, QueryError> {
            Err(QueryError::Read(io::Error::other("disk gone")))
        };
        match logql::evaluate(&expr, &[60_000_000_000], &mut failing) {
            Err(e @ QueryError::Read(_)) => {
                assert!(std::error::Error::source(&e).is_some_and(|s| s.to_string() == "disk gone"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let log_query = logql::parse("{service=\"web\"}").unwrap();
        let mut empty = |_: &LogQuery, _, _, _| -> Result<logql::Samples, QueryError> { Ok(logql::Samples::new()) };
        assert!(matches!(logql::evaluate(&log_query, &[0], &mut empty), Err(QueryError::NotMetric)));
    }
}
