//! Closed head chunks kept in files under `DATA/monitor/chunks_head`, so memory
//! holds 16 bytes per closed chunk instead of its samples.
//!
//! Prometheus memory-maps such files; mapping needs `unsafe`, so chunks are read
//! back with positioned reads, and the page cache keeps the hot ones. Chunks are
//! appended to numbered files of at most 64 MiB through a buffer; what is still in
//! the buffer is read from it. A file goes once every chunk in it started before
//! the head's truncation time. The files are a cache of what the write-ahead log
//! holds: they are deleted at start and written again as the log is replayed, so a
//! crash in the middle of a write cannot leave anything to repair. A file that
//! cannot be created or written keeps its chunks in memory (logged once), so a
//! full disk costs memory, never samples.

use crate::chunk::{ClosedChunk, XorChunk};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bits of a reference's location word, from the top: file, offset, length, count.
const FILE_BITS: u32 = 20;
const OFFSET_BITS: u32 = 26;
const LEN_BITS: u32 = 11;
const COUNT_BITS: u32 = 7;
/// A file takes chunks until the next would pass this size (the offset's range).
const FILE_BYTES: u64 = 1 << OFFSET_BITS;
/// The buffer is written to its file once it holds this much.
const FLUSH_BYTES: usize = 256 << 10;
/// Each chunk is stored after its last sample's time.
const HEADER: usize = 8;

const _: () = assert!(FILE_BITS + OFFSET_BITS + LEN_BITS + COUNT_BITS == 64);
const _: () = assert!(crate::chunk::SAMPLES_PER_CHUNK < 1 << COUNT_BITS);
// A chunk is cut once it reaches MAX_CHUNK_BYTES; one more sample adds at most 19.
const _: () = assert!(HEADER + crate::chunk::MAX_CHUNK_BYTES + 19 < 1 << LEN_BITS);

/// Where a closed chunk is: its first sample's time, its file, offset, length and
/// sample count. Chunks are cut at block boundaries, so the first time alone says
/// which block window a chunk belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    first_t: i64,
    loc: u64,
}

impl ChunkRef {
    fn new(first_t: i64, file: u32, offset: u64, len: usize, count: u16) -> ChunkRef {
        let loc = (u64::from(file) << (OFFSET_BITS + LEN_BITS + COUNT_BITS))
            | (offset << (LEN_BITS + COUNT_BITS))
            | ((len as u64) << COUNT_BITS)
            | u64::from(count);
        ChunkRef { first_t, loc }
    }

    pub fn first_time(&self) -> i64 {
        self.first_t
    }

    pub fn count(&self) -> u16 {
        (self.loc & ((1 << COUNT_BITS) - 1)) as u16
    }

    /// Bytes of compressed samples (the stored record without its header).
    pub fn bytes(&self) -> usize {
        self.record_len() - HEADER
    }

    fn record_len(&self) -> usize {
        ((self.loc >> COUNT_BITS) & ((1 << LEN_BITS) - 1)) as usize
    }

    fn offset(&self) -> u64 {
        (self.loc >> (LEN_BITS + COUNT_BITS)) & ((1 << OFFSET_BITS) - 1)
    }

    fn file(&self) -> u32 {
        (self.loc >> (OFFSET_BITS + LEN_BITS + COUNT_BITS)) as u32
    }
}

/// One file: what has been written to it and the buffer after that.
#[derive(Debug)]
struct Segment {
    file: Option<(File, PathBuf)>,
    flushed: u64,
    pending: Vec<u8>,
    /// Flush again once the buffer reaches this (raised after a failed write).
    flush_at: usize,
    /// The latest first time of a chunk in it: the file can go once the head is
    /// truncated past it.
    newest_first_t: i64,
}

impl Segment {
    fn len(&self) -> u64 {
        self.flushed + self.pending.len() as u64
    }

    /// Writes the buffer to the file; on failure the buffer stays (and serves reads).
    fn flush(&mut self) -> io::Result<()> {
        let Some((file, _)) = &self.file else { return Ok(()) };
        if self.pending.is_empty() {
            return Ok(());
        }
        match file.write_all_at(&self.pending, self.flushed) {
            Ok(()) => {
                self.flushed += self.pending.len() as u64;
                // The buffer is kept: allocating a quarter of a megabyte anew each time
                // would leave the heap fragmented.
                self.pending.clear();
                self.flush_at = FLUSH_BYTES;
                Ok(())
            }
            Err(e) => {
                self.flush_at = self.pending.len() + FLUSH_BYTES;
                Err(e)
            }
        }
    }
}

fn new_segment(dir: Option<&Path>, id: u32) -> Segment {
    let file = dir.and_then(|dir| {
        let path = dir.join(format!("{id:08}"));
        match File::options().read(true).write(true).create(true).truncate(true).open(&path) {
            Ok(file) => Some((file, path)),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot create a head chunk file; its chunks stay in memory");
                None
            }
        }
    });
    Segment { file, flushed: 0, pending: Vec::new(), flush_at: FLUSH_BYTES, newest_first_t: i64::MIN }
}

/// The closed chunks of the head, in files (or in memory when there is no directory).
#[derive(Debug)]
pub struct ChunkFiles {
    dir: Option<PathBuf>,
    /// The files that take no more chunks, by number.
    sealed: BTreeMap<u32, Segment>,
    /// The file chunks are appended to, and its number.
    current: Segment,
    current_id: u32,
    /// Whether a failed write was already logged (logged once until one succeeds).
    failing: bool,
}

impl ChunkFiles {
    /// Keeps every closed chunk in memory (tests, and stores without a directory).
    pub fn in_memory() -> ChunkFiles {
        ChunkFiles { current: new_segment(None, 0), dir: None, sealed: BTreeMap::new(), current_id: 0, failing: false }
    }

    /// Keeps closed chunks in `dir`, removing what an earlier process left there.
    pub fn open(dir: &Path) -> io::Result<ChunkFiles> {
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(dir)?;
        Ok(ChunkFiles {
            current: new_segment(Some(dir), 0),
            dir: Some(dir.to_path_buf()),
            sealed: BTreeMap::new(),
            current_id: 0,
            failing: false,
        })
    }

    /// Seals the current file and starts the next.
    fn rotate(&mut self) {
        self.flush_current();
        let id = (self.current_id + 1) & ((1 << FILE_BITS) - 1);
        let mut full = std::mem::replace(&mut self.current, new_segment(self.dir.as_deref(), id));
        if full.pending.is_empty() {
            self.current.pending = std::mem::take(&mut full.pending);
        }
        self.sealed.insert(self.current_id, full);
        self.current_id = id;
    }

    fn flush_current(&mut self) {
        match self.current.flush() {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    let file = self.current.file.as_ref().map(|(_, p)| p.display().to_string()).unwrap_or_default();
                    tracing::error!(file, error = %e, "cannot write head chunks; they stay in memory until a write succeeds");
                }
                self.failing = true;
            }
        }
    }

    /// Stores a chunk that takes no more samples.
    pub fn write(&mut self, chunk: &XorChunk) -> ChunkRef {
        let record = HEADER + chunk.bytes().len();
        if self.current.len() + record as u64 > FILE_BYTES {
            self.rotate();
        }
        let segment = &mut self.current;
        if segment.pending.capacity() == 0 && segment.file.is_some() {
            segment.pending.reserve_exact(FLUSH_BYTES + (1 << LEN_BITS));
        }
        let offset = segment.len();
        segment.pending.extend_from_slice(&chunk.last_time().to_le_bytes());
        segment.pending.extend_from_slice(chunk.bytes());
        segment.newest_first_t = segment.newest_first_t.max(chunk.first_time());
        if segment.file.is_some() && segment.pending.len() >= segment.flush_at {
            self.flush_current();
        }
        ChunkRef::new(chunk.first_time(), self.current_id, offset, record, chunk.len() as u16)
    }

    /// A chunk's last sample's time and its bytes: from the unwritten buffer as they
    /// are, or read from its file into `buf`.
    pub fn read<'a>(&'a self, r: ChunkRef, buf: &'a mut Vec<u8>) -> io::Result<(i64, &'a [u8])> {
        let missing = || io::Error::new(io::ErrorKind::NotFound, format!("head chunk {r:?} is gone"));
        let segment = if r.file() == self.current_id { Some(&self.current) } else { self.sealed.get(&r.file()) }
            .ok_or_else(missing)?;
        let (offset, len) = (r.offset(), r.record_len());
        let record: &[u8] = if offset >= segment.flushed {
            let start = usize::try_from(offset - segment.flushed).map_err(|_| missing())?;
            segment.pending.get(start..start + len).ok_or_else(missing)?
        } else {
            let (file, _) = segment.file.as_ref().ok_or_else(missing)?;
            buf.resize(len, 0);
            file.read_exact_at(buf, offset)?;
            buf
        };
        let (last, bytes) = record.split_at(HEADER);
        let mut last_t = [0u8; HEADER];
        last_t.copy_from_slice(last);
        Ok((i64::from_le_bytes(last_t), bytes))
    }

    /// A chunk with its bounds, as blocks are written.
    pub fn closed(&self, r: ChunkRef) -> io::Result<ClosedChunk> {
        let mut buf = Vec::new();
        let (last_t, bytes) = self.read(r, &mut buf)?;
        Ok(ClosedChunk { first_t: r.first_t, last_t, count: r.count(), bytes: bytes.into() })
    }

    /// Removes the files whose chunks all start before `t` (the head dropped them).
    pub fn truncate(&mut self, t: i64) {
        if self.current.len() > 0 && self.current.newest_first_t < t {
            self.rotate();
        }
        let gone: Vec<u32> = self.sealed.iter().filter(|(_, s)| s.newest_first_t < t).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(Segment { file: Some((file, path)), .. }) = self.sealed.remove(&id) {
                drop(file);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a head chunk file");
                }
            }
        }
    }

    /// Bytes in files and bytes still in memory.
    pub fn sizes(&self) -> (u64, u64) {
        self.sealed.values().chain([&self.current]).fold((0, 0), |(disk, memory), s| {
            if s.file.is_some() {
                (disk + s.flushed, memory + s.pending.len() as u64)
            } else {
                (disk, memory + s.len())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chunk(start: i64, n: i64, value: impl Fn(i64) -> f64) -> XorChunk {
        let mut c = XorChunk::new();
        for i in 0..n {
            c.append(start + i * 1000, value(i));
        }
        c
    }

    #[test]
    fn chunks_round_trip_through_buffer_and_file_and_files_go_once_truncated_past() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ChunkFiles::open(dir.path()).unwrap();
        let mut refs = Vec::new();
        // Enough chunks to flush the buffer several times and leave some in it.
        for i in 0..2_000 {
            let c = chunk(i * 120_000, 120, |j| (i * 1000 + j) as f64 * 1.5);
            refs.push((files.write(&c), c.iter().collect::<Vec<_>>(), c.last_time()));
        }
        let (disk, memory) = files.sizes();
        assert!(disk > 0 && memory > 0 && memory < FLUSH_BYTES as u64, "{disk} on disk, {memory} in memory");
        let mut buf = Vec::new();
        for (r, samples, last) in &refs {
            let (last_t, bytes) = files.read(*r, &mut buf).unwrap();
            assert_eq!(last_t, *last);
            assert_eq!(crate::chunk::iter_bytes(bytes, r.count()).collect::<Vec<_>>(), *samples);
            let closed = files.closed(*r).unwrap();
            assert_eq!((closed.first_t, closed.last_t, closed.count), (r.first_time(), *last, 120));
        }
        files.truncate(i64::MAX);
        assert_eq!(files.sizes(), (0, 0));
        assert!(files.read(refs[0].0, &mut buf).is_err());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "only the new, empty current file: {left:?}");
    }

    #[test]
    fn the_largest_chunk_fits_a_reference_and_files_rotate() {
        let mut files = ChunkFiles::in_memory();
        // Values with no bits in common and irregular times: the worst case per sample.
        let mut c = XorChunk::new();
        let mut t = 0i64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        while !c.is_full() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += 1 + (x % 1_000_000) as i64;
            c.append(t, f64::from_bits(x >> 2));
        }
        let r = files.write(&c);
        assert!(c.bytes().len() >= crate::chunk::MAX_CHUNK_BYTES, "{}", c.bytes().len());
        assert_eq!(r.bytes(), c.bytes().len());
        let mut buf = Vec::new();
        assert_eq!(files.read(r, &mut buf).unwrap(), (c.last_time(), c.bytes()));
        let per_file = (FILE_BYTES / r.record_len() as u64) as usize;
        let more: Vec<ChunkRef> = (0..per_file + 1).map(|_| files.write(&c)).collect();
        assert_eq!(more.last().unwrap().file(), 1, "the next file starts when one is full");
        assert_eq!(files.read(*more.last().unwrap(), &mut buf).unwrap(), (c.last_time(), c.bytes()));
    }
}
