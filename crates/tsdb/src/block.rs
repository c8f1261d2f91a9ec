//! Persisted blocks: the samples of a time range `[min_time, max_time)`, immutable
//! once written. A block is a directory `blocks/<min>-<max>-<level>/` with
//! `chunks` (XOR chunks back to back, as the head packed them), `index` (a symbol
//! table of every distinct label string, then every series' labels as symbol numbers
//! and its chunks' bounds, sample counts and places, CRC-32 at the end) and
//! `meta.json`. It is written under a temporary name, synced, then renamed,
//! so a crash leaves either no block or a whole one. The index stays in memory
//! (labels and chunk places); chunk bytes are read from the file when queried.

use crate::chunk::{iter_bytes, ClosedChunk};
use crate::wal::{get_bytes, get_varint, put_varint, unzigzag, zigzag};
use mobius_series::labels::{Labels, Matcher};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"MBX2";

/// A series with its chunks, as blocks are written and compacted.
pub type SeriesChunks = (Labels, Vec<ClosedChunk>);

/// Where one chunk of a series is in the block's `chunks` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub first_t: i64,
    pub last_t: i64,
    pub count: u16,
    pub offset: u64,
    pub len: u32,
}

/// `meta.json`, in the spirit of Prometheus' block meta.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    /// 1 for a block cut from the head, one more for each compaction.
    pub level: u32,
}

/// A block opened for reading.
#[derive(Debug)]
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub series: Vec<(Labels, Vec<ChunkMeta>)>,
    chunks: File,
    /// Bytes on disk (index and chunks).
    pub bytes: u64,
}

/// The directory name of a block.
pub fn block_name(meta: &BlockMeta) -> String {
    format!("{:013}-{:013}-{}", meta.min_time, meta.max_time, meta.level)
}

fn invalid(dir: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("block {}: {what}", dir.display()))
}

/// Writes a block of `series` (each with chunks in time order, inside the range)
/// into `parent`, atomically; returns its directory.
pub fn write_block(
    parent: &Path,
    min_time: i64,
    max_time: i64,
    level: u32,
    series: &[SeriesChunks],
) -> io::Result<PathBuf> {
    fs::create_dir_all(parent)?;
    let mut meta = BlockMeta { min_time, max_time, num_series: 0, num_samples: 0, num_chunks: 0, level };
    let name = block_name(&meta);
    let tmp = parent.join(format!(".tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let mut chunks = io::BufWriter::new(File::create(tmp.join("chunks"))?);
    let mut index = Vec::new();
    index.extend_from_slice(MAGIC);
    let kept: Vec<&SeriesChunks> = series.iter().filter(|(_, c)| !c.is_empty()).collect();
    // Each distinct name and value once; series refer to them by number.
    let mut symbols: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (labels, _) in &kept {
        for (k, v) in labels.iter() {
            symbols.insert(k, 0);
            symbols.insert(v, 0);
        }
    }
    put_varint(&mut index, symbols.len() as u64);
    for (i, (text, number)) in symbols.iter_mut().enumerate() {
        *number = i as u64;
        put_varint(&mut index, text.len() as u64);
        index.extend_from_slice(text.as_bytes());
    }
    put_varint(&mut index, kept.len() as u64);
    let mut offset = 0u64;
    for (labels, list) in kept {
        put_varint(&mut index, labels.len() as u64);
        for (k, v) in labels.iter() {
            put_varint(&mut index, symbols.get(k).copied().unwrap_or(0));
            put_varint(&mut index, symbols.get(v).copied().unwrap_or(0));
        }
        put_varint(&mut index, list.len() as u64);
        for c in list {
            chunks.write_all(&c.bytes)?;
            put_varint(&mut index, zigzag(c.first_t));
            put_varint(&mut index, zigzag(c.last_t));
            put_varint(&mut index, u64::from(c.count));
            put_varint(&mut index, offset);
            put_varint(&mut index, c.bytes.len() as u64);
            offset += c.bytes.len() as u64;
            meta.num_samples += u64::from(c.count);
            meta.num_chunks += 1;
        }
        meta.num_series += 1;
    }
    let crc = crc32fast::hash(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    let chunks = chunks.into_inner().map_err(|e| e.into_error())?;
    chunks.sync_all()?;
    let mut f = File::create(tmp.join("index"))?;
    f.write_all(&index)?;
    f.sync_all()?;
    let mut f = File::create(tmp.join("meta.json"))?;
    f.write_all(&serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?)?;
    f.sync_all()?;
    File::open(&tmp)?.sync_all()?;
    let dir = parent.join(&name);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::rename(&tmp, &dir)?;
    File::open(parent)?.sync_all()?;
    Ok(dir)
}

impl Block {
    pub fn open(dir: &Path) -> io::Result<Block> {
        let meta: BlockMeta = serde_json::from_slice(&fs::read(dir.join("meta.json"))?)
            .map_err(|e| invalid(dir, format!("meta.json: {e}")))?;
        let raw = fs::read(dir.join("index"))?;
        if raw.len() < 8 || &raw[..4] != MAGIC {
            return Err(invalid(dir, "index: not a Mobius block index"));
        }
        let (body, crc) = raw.split_at(raw.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(invalid(dir, "index: checksum mismatch"));
        }
        let mut input = &body[4..];
        let bad = || invalid(dir, "index: truncated or malformed");
        let symbol_count = get_varint(&mut input).ok_or_else(bad)?;
        let mut symbols: Vec<&str> = Vec::with_capacity(usize::try_from(symbol_count).unwrap_or(0).min(1 << 24));
        for _ in 0..symbol_count {
            symbols.push(std::str::from_utf8(get_bytes(&mut input).ok_or_else(bad)?).map_err(|_| bad())?);
        }
        let symbol = |input: &mut &[u8]| -> io::Result<String> {
            let n = usize::try_from(get_varint(input).ok_or_else(bad)?).map_err(|_| bad())?;
            symbols.get(n).map(|s| s.to_string()).ok_or_else(bad)
        };
        let count = get_varint(&mut input).ok_or_else(bad)?;
        let mut series = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 24));
        for _ in 0..count {
            let n = get_varint(&mut input).ok_or_else(bad)?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let k = symbol(&mut input)?;
                let v = symbol(&mut input)?;
                pairs.push((k, v));
            }
            let chunk_count = get_varint(&mut input).ok_or_else(bad)?;
            let mut chunks = Vec::new();
            for _ in 0..chunk_count {
                let mut next = || get_varint(&mut input).ok_or_else(bad);
                let first_t = unzigzag(next()?);
                let last_t = unzigzag(next()?);
                let count = u16::try_from(next()?).map_err(|_| bad())?;
                let offset = next()?;
                let len = u32::try_from(next()?).map_err(|_| bad())?;
                chunks.push(ChunkMeta { first_t, last_t, count, offset, len });
            }
            series.push((Labels::new(pairs), chunks));
        }
        let chunks = File::open(dir.join("chunks"))?;
        let bytes = raw.len() as u64 + chunks.metadata()?.len();
        Ok(Block { dir: dir.to_path_buf(), meta, series, chunks, bytes })
    }

    /// Reads one chunk's bytes.
    pub fn chunk_bytes(&self, c: &ChunkMeta) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; c.len as usize];
        self.chunks.read_exact_at(&mut buf, c.offset)?;
        Ok(buf)
    }

    /// The series every matcher accepts, with their samples in `[mint, maxt]`.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> io::Result<Vec<mobius_series::Series>> {
        let mut out = Vec::new();
        if self.meta.max_time <= mint || self.meta.min_time > maxt {
            return Ok(out);
        }
        for (labels, chunks) in &self.series {
            if !matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or(""))) {
                continue;
            }
            let mut samples = Vec::new();
            for c in chunks.iter().filter(|c| c.last_t >= mint && c.first_t <= maxt) {
                let bytes = self.chunk_bytes(c)?;
                samples.extend(iter_bytes(&bytes, c.count).filter(|(t, _)| (mint..=maxt).contains(t)));
            }
            if !samples.is_empty() {
                out.push((labels.clone(), samples));
            }
        }
        Ok(out)
    }

    /// Every series with its chunks read back, for compaction.
    pub fn read_all(&self) -> io::Result<Vec<SeriesChunks>> {
        let mut out = Vec::with_capacity(self.series.len());
        for (labels, chunks) in &self.series {
            let mut list = Vec::with_capacity(chunks.len());
            for c in chunks {
                list.push(ClosedChunk {
                    first_t: c.first_t,
                    last_t: c.last_t,
                    count: c.count,
                    bytes: self.chunk_bytes(c)?.into_boxed_slice(),
                });
            }
            out.push((labels.clone(), list));
        }
        Ok(out)
    }
}

/// Merges the series of several blocks (oldest first) into one list, chunks in time order.
pub fn merge_series(parts: Vec<Vec<SeriesChunks>>) -> Vec<SeriesChunks> {
    let mut merged: std::collections::BTreeMap<Labels, Vec<ClosedChunk>> = std::collections::BTreeMap::new();
    for part in parts {
        for (labels, chunks) in part {
            merged.entry(labels).or_default().extend(chunks);
        }
    }
    merged
        .into_iter()
        .map(|(l, mut c)| {
            c.sort_by_key(|c| c.first_t);
            (l, c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::XorChunk;

    #[test]
    fn a_block_reads_back_what_was_written_and_refuses_a_damaged_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut chunk = XorChunk::new();
        for i in 0..50 {
            chunk.append(1000 + i * 10, i as f64 * 1.5);
        }
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "api")]);
        let path = write_block(dir.path(), 1000, 2000, 1, &[(labels.clone(), vec![chunk.into_closed()])]).unwrap();
        let block = Block::open(&path).unwrap();
        assert_eq!((block.meta.num_series, block.meta.num_samples), (1, 50));
        let found = block.select(&[Matcher::equal("job", "api")], 1100, 1120).unwrap();
        assert_eq!(found, [(labels, vec![(1100, 15.0), (1110, 16.5), (1120, 18.0)])]);
        assert!(block.select(&[Matcher::equal("job", "web")], 0, 5000).unwrap().is_empty());
        let mut raw = fs::read(path.join("index")).unwrap();
        raw[6] ^= 0xff;
        fs::write(path.join("index"), raw).unwrap();
        assert!(Block::open(&path).unwrap_err().to_string().contains("checksum"));
    }
}
