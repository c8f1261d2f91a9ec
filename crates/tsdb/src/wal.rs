//! The write-ahead log: every new series and every batch of samples is written here
//! before the head holds it, and read back, record by record, at start.
//!
//! Segments `wal/00000001`, `wal/00000002`… hold records framed as
//! `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`. A record cut short
//! by a crash (or failing its checksum) ends the replay, and the segment is truncated
//! there; writing goes on in a new segment. Writes reach the operating system at once
//! and the disk at each [`Wal::sync`].
//!
//! Once blocks hold everything before a time, [`Wal::truncate`] writes a checkpoint
//! (`wal/checkpoint.N`: the series still alive) and deletes segments up to `N`, whose
//! samples are all older; a replay reads the newest checkpoint, then the segments after it.

use mobius_series::labels::Labels;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// A segment is closed once it reaches this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// The largest record accepted when reading (a guard against a corrupt length).
const MAX_RECORD: u32 = 64 << 20;

const SERIES: u8 = 1;
const SAMPLES: u8 = 2;

/// What the log holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A series created with this number.
    Series { series: u32, labels: Labels },
    /// Samples `(series, milliseconds, value)`.
    Samples(Vec<(u32, i64, f64)>),
}

/// The log, open for appending.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    out: BufWriter<File>,
    segment: u32,
    size: u64,
    unsynced: bool,
    scratch: Vec<u8>,
    /// The latest sample time in each segment (`i64::MIN` for one without samples).
    max_t: std::collections::BTreeMap<u32, i64>,
}

fn checkpoint_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("checkpoint.{n:08}"))
}

/// The newest checkpoint's segment number.
fn latest_checkpoint(dir: &Path) -> io::Result<Option<u32>> {
    let mut found = None;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("checkpoint.")).and_then(|n| n.parse::<u32>().ok()) {
            found = found.max(Some(n));
        }
    }
    Ok(found)
}

/// Reads a file of records in order: (bytes of whole records, file size, records).
fn read_records(path: &Path, mut apply: impl FnMut(Record)) -> io::Result<(u64, u64, u64)> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut offset = 0u64;
    let mut records = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut frame = [0u8; 8];
        match reader.read_exact(&mut frame) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if len > MAX_RECORD {
            break;
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(record) = decode(&payload) else { break };
        apply(record);
        records += 1;
        offset += 8 + u64::from(len);
    }
    Ok((offset, total, records))
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}"))
}

fn segments(dir: &Path) -> io::Result<Vec<u32>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().filter(|n| n.len() == 8).and_then(|n| n.parse::<u32>().ok()) {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

pub fn get_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

pub fn get_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(get_varint(input)?).ok()?;
    if input.len() < len {
        return None;
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Some(bytes)
}

fn encode(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Series { series, labels } => {
            out.push(SERIES);
            put_varint(out, u64::from(*series));
            put_varint(out, labels.len() as u64);
            for (k, v) in labels.iter() {
                put_varint(out, k.len() as u64);
                out.extend_from_slice(k.as_bytes());
                put_varint(out, v.len() as u64);
                out.extend_from_slice(v.as_bytes());
            }
        }
        Record::Samples(samples) => {
            // Series numbers as deltas from the previous sample's, times as deltas from
            // the first sample's: a scrape's batch costs about 10 bytes a sample.
            out.push(SAMPLES);
            put_varint(out, samples.len() as u64);
            let (mut prev_series, base_t) = (0i64, samples.first().map_or(0, |s| s.1));
            put_varint(out, zigzag(base_t));
            for (series, t, v) in samples {
                put_varint(out, zigzag(i64::from(*series) - prev_series));
                put_varint(out, zigzag(t.wrapping_sub(base_t)));
                out.extend_from_slice(&v.to_bits().to_le_bytes());
                prev_series = i64::from(*series);
            }
        }
    }
}

fn decode(payload: &[u8]) -> Option<Record> {
    let (&kind, mut input) = payload.split_first()?;
    match kind {
        SERIES => {
            let series = u32::try_from(get_varint(&mut input)?).ok()?;
            let count = get_varint(&mut input)?;
            let mut pairs = Vec::new();
            for _ in 0..count {
                let k = std::str::from_utf8(get_bytes(&mut input)?).ok()?.to_string();
                let v = std::str::from_utf8(get_bytes(&mut input)?).ok()?.to_string();
                pairs.push((k, v));
            }
            Some(Record::Series { series, labels: Labels::new(pairs) })
        }
        SAMPLES => {
            let count = get_varint(&mut input)?;
            let mut samples = Vec::with_capacity(usize::try_from(count).ok()?.min(1 << 20));
            let base_t = unzigzag(get_varint(&mut input)?);
            let mut prev_series = 0i64;
            for _ in 0..count {
                prev_series += unzigzag(get_varint(&mut input)?);
                let series = u32::try_from(prev_series).ok()?;
                let t = base_t.wrapping_add(unzigzag(get_varint(&mut input)?));
                if input.len() < 8 {
                    return None;
                }
                let (bits, rest) = input.split_at(8);
                input = rest;
                let v = f64::from_bits(u64::from_le_bytes(bits.try_into().ok()?));
                samples.push((series, t, v));
            }
            Some(Record::Samples(samples))
        }
        _ => None,
    }
}

/// What a replay found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub records: u64,
    pub segments: u32,
    /// Bytes cut off the end of the last segment (a torn or corrupt tail).
    pub truncated_bytes: u64,
}

impl Wal {
    /// Reads every record in order, handing each to `apply`, then opens a new
    /// segment for writing. Memory stays at one record at a time.
    pub fn open(dir: &Path, mut apply: impl FnMut(Record)) -> io::Result<(Wal, Replayed)> {
        fs::create_dir_all(dir)?;
        let checkpoint = latest_checkpoint(dir)?;
        if let Some(k) = checkpoint {
            // A crash between writing a checkpoint and deleting what it replaces.
            for n in segments(dir)?.into_iter().filter(|n| *n <= k) {
                fs::remove_file(segment_path(dir, n))?;
            }
            let path = checkpoint_path(dir, k);
            let (offset, total, _) = read_records(&path, &mut apply)?;
            if offset < total {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: corrupt checkpoint", path.display()),
                ));
            }
        }
        let found = segments(dir)?;
        let mut replayed = Replayed { segments: found.len() as u32, ..Replayed::default() };
        let mut max_t = std::collections::BTreeMap::new();
        for (i, &n) in found.iter().enumerate() {
            let path = segment_path(dir, n);
            let mut latest = i64::MIN;
            let (offset, total, records) = read_records(&path, |record| {
                if let Record::Samples(samples) = &record {
                    latest = samples.iter().map(|s| s.1).fold(latest, i64::max);
                }
                apply(record);
            })?;
            max_t.insert(n, latest);
            replayed.records += records;
            if offset < total {
                if i + 1 == found.len() {
                    tracing::warn!(segment = %path.display(), offset, "write-ahead log ends with a torn record; truncated");
                    OpenOptions::new().write(true).open(&path)?.set_len(offset)?;
                    replayed.truncated_bytes = total - offset;
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: corrupt record at byte {offset} before the last segment", path.display()),
                    ));
                }
            }
        }
        // Writing goes on in the last segment only if it is empty.
        let segment = match found.last() {
            Some(&n) if fs::metadata(segment_path(dir, n))?.len() == 0 => n,
            Some(&n) => n + 1,
            None => checkpoint.map_or(1, |k| k + 1),
        };
        max_t.entry(segment).or_insert(i64::MIN);
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, segment))?;
        File::open(dir)?.sync_all()?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, file),
            segment,
            size: 0,
            unsynced: false,
            scratch: Vec::new(),
            max_t,
        };
        Ok((wal, replayed))
    }

    /// Appends records and hands them to the operating system.
    pub fn log(&mut self, records: &[Record]) -> io::Result<()> {
        for record in records {
            self.scratch.clear();
            encode(record, &mut self.scratch);
            let len = u32::try_from(self.scratch.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write-ahead log record too large"))?;
            self.out.write_all(&len.to_le_bytes())?;
            self.out.write_all(&crc32fast::hash(&self.scratch).to_le_bytes())?;
            self.out.write_all(&self.scratch)?;
            self.size += 8 + u64::from(len);
            if let Record::Samples(samples) = record {
                let latest = samples.iter().map(|s| s.1).max().unwrap_or(i64::MIN);
                let slot = self.max_t.entry(self.segment).or_insert(i64::MIN);
                *slot = (*slot).max(latest);
            }
        }
        self.out.flush()?;
        self.unsynced = true;
        if self.size >= SEGMENT_BYTES {
            self.cut()?;
        }
        Ok(())
    }

    fn cut(&mut self) -> io::Result<()> {
        self.out.get_ref().sync_data()?;
        self.segment += 1;
        let file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, self.segment))?;
        File::open(&self.dir)?.sync_all()?;
        self.out = BufWriter::with_capacity(1 << 16, file);
        self.size = 0;
        self.unsynced = false;
        self.max_t.insert(self.segment, i64::MIN);
        Ok(())
    }

    /// Deletes the leading segments whose samples are all before `before` (blocks hold
    /// them now), after writing a checkpoint of `live` (the series records of every
    /// series still in memory). The segment being written is closed first, so its
    /// turn comes at a later truncation. Returns how many segments went.
    pub fn truncate(&mut self, before: i64, live: &[Record]) -> io::Result<usize> {
        if self.size > 0 {
            self.cut()?;
        }
        let last = self
            .max_t
            .iter()
            .filter(|(n, _)| **n < self.segment)
            .take_while(|(_, t)| **t < before)
            .map(|(n, _)| *n)
            .last();
        let Some(k) = last else { return Ok(0) };
        let tmp = self.dir.join(format!("checkpoint.{k:08}.tmp"));
        {
            let mut out = BufWriter::new(File::create(&tmp)?);
            let mut scratch = Vec::new();
            for record in live {
                scratch.clear();
                encode(record, &mut scratch);
                out.write_all(&(scratch.len() as u32).to_le_bytes())?;
                out.write_all(&crc32fast::hash(&scratch).to_le_bytes())?;
                out.write_all(&scratch)?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&tmp, checkpoint_path(&self.dir, k))?;
        File::open(&self.dir)?.sync_all()?;
        let gone: Vec<u32> = self.max_t.keys().copied().filter(|n| *n <= k).collect();
        for n in &gone {
            match fs::remove_file(segment_path(&self.dir, *n)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.max_t.remove(n);
        }
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let older = name
                .to_str()
                .and_then(|n| n.strip_prefix("checkpoint."))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n < k);
            if older {
                fs::remove_file(self.dir.join(name))?;
            }
        }
        Ok(gone.len())
    }

    /// Bytes of the log on disk.
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    /// Makes everything logged so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(dir: &Path) -> (Vec<Record>, Replayed) {
        let mut records = Vec::new();
        let (_, replayed) = Wal::open(dir, |r| records.push(r)).unwrap();
        (records, replayed)
    }

    #[test]
    fn records_come_back_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let written = vec![
            Record::Series { series: 0, labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")]) },
            Record::Samples(vec![(0, 1_700_000_000_000, 1.0), (0, -5, f64::NAN), (70_000, 3, 2.5), (2, 4, 0.5)]),
        ];
        {
            let (mut wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
            wal.log(&written).unwrap();
            wal.sync().unwrap();
        }
        let (records, replayed) = replay(dir.path());
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], written[0]);
        let Record::Samples(s) = &records[1] else { panic!() };
        assert_eq!((s[0], s[1].1), ((0, 1_700_000_000_000, 1.0), -5));
        assert!(s[1].2.is_nan());
        assert_eq!(&s[2..], [(70_000, 3, 2.5), (2, 4, 0.5)]);
        assert_eq!(replayed.truncated_bytes, 0);

        // A crash in the middle of a record: the replay stops before it and cuts it off.
        let last = segments(dir.path()).unwrap().into_iter().next_back().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        wal.log(&[Record::Samples(vec![(0, 2, 2.0)])]).unwrap();
        drop(wal);
        let path = segment_path(dir.path(), last);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let (records, replayed) = replay(dir.path());
        assert_eq!(records.len(), 2);
        assert_eq!(replayed.truncated_bytes, len - 3);
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }
}
