//! Samples packed as Prometheus packs them (after Facebook's Gorilla): timestamps as
//! delta-of-deltas in 1 to 68 bits, values XOR'd with the previous one, writing only
//! the meaningful bits. A scrape every second of a slowly moving value costs about
//! 1.4 bytes a sample.

/// Samples per chunk before a new one is cut (as Prometheus).
pub const SAMPLES_PER_CHUNK: u16 = 120;
/// A chunk is also cut once its bytes reach this, as Prometheus does, so values that
/// compress badly do not make huge chunks.
pub const MAX_CHUNK_BYTES: usize = 1024;

#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 when it is full or there is none).
    used: u8,
    /// The last byte, kept here as well: appending only stores to the buffer and
    /// never reads it back. Every series has one open chunk, the buffers lie all over
    /// the heap, and a read of one missed the cache on nearly every sample (an eighth of
    /// ingestion's CPU); a store does not wait.
    last: u8,
}

/// An open chunk's bytes grow by this much at a time, not by doubling: every series
/// has one, so doubling would leave a quarter of them unused on average.
const GROW_BYTES: usize = 64;

impl BitWriter {
    fn new_byte(&mut self) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes.reserve_exact(GROW_BYTES);
        }
        self.bytes.push(0);
        self.last = 0;
    }

    /// Stores the last byte into the buffer.
    fn store_last(&mut self) {
        if let Some(byte) = self.bytes.last_mut() {
            *byte = self.last;
        }
    }

    fn bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.new_byte();
        }
        if bit {
            self.last |= 0x80 >> self.used;
            self.store_last();
        }
        self.used = (self.used + 1) % 8;
    }

    fn bits(&mut self, value: u64, count: u8) {
        // As many bits at a time as the last byte has room for, most significant first.
        let mut remaining = count.min(64);
        while remaining > 0 {
            if self.used == 0 {
                self.new_byte();
            }
            let free = 8 - self.used;
            let take = free.min(remaining);
            let chunk = ((value >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            self.last |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            remaining -= take;
            if self.used == 0 || remaining == 0 {
                self.store_last();
            }
        }
    }

    fn varint(&mut self, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bits(u64::from(byte), 8);
                return;
            }
            self.bits(u64::from(byte | 0x80), 8);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn bits(&mut self, count: u8) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..count {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    fn varint(&mut self) -> Option<i64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.bits(8)?;
            v |= (byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    }
}

/// An append-only chunk of samples in time order.
#[derive(Clone, Debug, Default)]
pub struct XorChunk {
    out: BitWriter,
    count: u16,
    first_t: i64,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl XorChunk {
    pub fn new() -> XorChunk {
        XorChunk { leading: 0xff, ..XorChunk::default() }
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count >= SAMPLES_PER_CHUNK || self.out.bytes.len() >= MAX_CHUNK_BYTES
    }

    pub fn first_time(&self) -> i64 {
        self.first_t
    }

    pub fn last_time(&self) -> i64 {
        self.t
    }

    pub fn last_value(&self) -> f64 {
        f64::from_bits(self.v)
    }

    /// The encoded bytes.
    /// Empties the chunk for new samples, keeping its buffer: a series' chunks are
    /// alike in size, and growing a new buffer 64 bytes at a time for every chunk of
    /// every series leaves the heap full of holes.
    pub fn clear(&mut self) {
        let mut bytes = std::mem::take(&mut self.out.bytes);
        bytes.clear();
        *self = XorChunk::new();
        self.out.bytes = bytes;
    }

    pub fn bytes(&self) -> &[u8] {
        &self.out.bytes
    }

    /// Appends a sample; `t` must not be before the last one (the caller checks).
    pub fn append(&mut self, t: i64, value: f64) {
        let v = value.to_bits();
        match self.count {
            0 => {
                self.out.varint(t);
                self.out.bits(v, 64);
                self.first_t = t;
            }
            1 => {
                self.delta = t - self.t;
                self.out.varint(self.delta);
                self.write_value(v);
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.delta;
                match dod {
                    0 => self.out.bit(false),
                    _ if fits(dod, 14) => {
                        self.out.bits(0b10, 2);
                        self.out.bits(dod as u64, 14);
                    }
                    _ if fits(dod, 17) => {
                        self.out.bits(0b110, 3);
                        self.out.bits(dod as u64, 17);
                    }
                    _ if fits(dod, 20) => {
                        self.out.bits(0b1110, 4);
                        self.out.bits(dod as u64, 20);
                    }
                    _ => {
                        self.out.bits(0b1111, 4);
                        self.out.bits(dod as u64, 64);
                    }
                }
                self.delta = delta;
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.count += 1;
    }

    fn write_value(&mut self, v: u64) {
        let xor = v ^ self.v;
        if xor == 0 {
            self.out.bit(false);
            return;
        }
        self.out.bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.out.bit(false);
            self.out.bits(xor >> self.trailing, 64 - self.leading - self.trailing);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.out.bit(true);
        self.out.bits(u64::from(leading), 5);
        let significant = 64 - leading - trailing;
        // 64 significant bits are written as 0: 6 bits hold 0..=63.
        self.out.bits(u64::from(significant % 64), 6);
        self.out.bits(xor >> trailing, significant);
    }

    pub fn iter(&self) -> XorIter<'_> {
        iter_bytes(&self.out.bytes, self.count)
    }

    /// The encoded bytes, without spare capacity, once the chunk takes no more samples.
    pub fn into_closed(self) -> ClosedChunk {
        ClosedChunk {
            first_t: self.first_t,
            last_t: self.t,
            count: self.count,
            bytes: self.out.bytes.into_boxed_slice(),
        }
    }
}

/// A full chunk: only its bytes and bounds are kept.
#[derive(Clone, Debug)]
pub struct ClosedChunk {
    pub first_t: i64,
    pub last_t: i64,
    pub count: u16,
    pub bytes: Box<[u8]>,
}

impl ClosedChunk {
    pub fn iter(&self) -> XorIter<'_> {
        iter_bytes(&self.bytes, self.count)
    }
}

/// Reads `count` samples from a chunk's bytes.
pub fn iter_bytes(bytes: &[u8], count: u16) -> XorIter<'_> {
    XorIter {
        reader: BitReader { bytes, pos: 0 },
        remaining: count,
        read: 0,
        t: 0,
        delta: 0,
        v: 0,
        leading: 0,
        trailing: 0,
    }
}

fn fits(v: i64, bits: u8) -> bool {
    let limit = 1i64 << (bits - 1);
    (-limit + 1..=limit).contains(&v)
}

fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - u32::from(bits);
    ((v << shift) as i64) >> shift
}

/// The samples of a chunk, oldest first.
pub struct XorIter<'a> {
    reader: BitReader<'a>,
    remaining: u16,
    read: u16,
    t: i64,
    delta: i64,
    v: u64,
    leading: u8,
    trailing: u8,
}

impl XorIter<'_> {
    fn read_value(&mut self) -> Option<()> {
        if !self.reader.bit()? {
            return Some(());
        }
        if self.reader.bit()? {
            self.leading = self.reader.bits(5)? as u8;
            let mut significant = self.reader.bits(6)? as u8;
            if significant == 0 {
                significant = 64;
            }
            self.trailing = 64u8.checked_sub(self.leading)?.checked_sub(significant)?;
        }
        let significant = 64 - self.leading - self.trailing;
        let bits = self.reader.bits(significant)?;
        self.v ^= bits << self.trailing;
        Some(())
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        match self.read {
            0 => {
                self.t = self.reader.varint()?;
                self.v = self.reader.bits(64)?;
            }
            1 => {
                self.delta = self.reader.varint()?;
                self.t += self.delta;
                self.read_value()?;
            }
            _ => {
                let mut prefix = 0u8;
                while prefix < 4 && self.reader.bit()? {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    1 => sign_extend(self.reader.bits(14)?, 14),
                    2 => sign_extend(self.reader.bits(17)?, 17),
                    3 => sign_extend(self.reader.bits(20)?, 20),
                    _ => self.reader.bits(64)? as i64,
                };
                self.delta += dod;
                self.t += self.delta;
                self.read_value()?;
            }
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleared_chunk_writes_as_a_new_one_in_the_buffer_it_had() {
        let first: Vec<(i64, f64)> = (0..120).map(|i| (i * 1000, (i * 7 % 13) as f64 * 0.37)).collect();
        let second: Vec<(i64, f64)> = (0..50).map(|i| (500_000 + i * 1003, -(i as f64) / 3.0)).collect();
        let mut chunk = roundtrip(&first);
        let capacity = chunk.out.bytes.capacity();
        chunk.clear();
        assert!(chunk.is_empty() && chunk.bytes().is_empty());
        for (t, v) in &second {
            chunk.append(*t, *v);
        }
        assert_eq!(chunk.bytes(), roundtrip(&second).bytes(), "the same bytes as a fresh chunk");
        assert_eq!(chunk.out.bytes.capacity(), capacity, "the buffer is kept");
    }

    fn roundtrip(samples: &[(i64, f64)]) -> XorChunk {
        let mut chunk = XorChunk::new();
        for (t, v) in samples {
            chunk.append(*t, *v);
        }
        let back: Vec<(i64, f64)> = chunk.iter().collect();
        assert_eq!(back.len(), samples.len());
        for (a, b) in back.iter().zip(samples) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{} vs {}", a.1, b.1);
        }
        chunk
    }

    #[test]
    fn every_kind_of_step_and_value_comes_back_exactly() {
        let mut samples = Vec::new();
        let mut t = 1_700_000_000_000i64;
        let mut state = 42u64;
        for i in 0..120 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Jittered steps of every size class, and values of every shape.
            t += match i % 6 {
                0 => 1000,
                1 => 1000 + (state % 7) as i64 - 3,
                2 => 9000,
                3 => 70_000,
                4 => 600_000,
                _ => 90_000_000_000,
            };
            let v = match i % 5 {
                0 => (state >> 11) as f64,
                1 => f64::NAN,
                2 => -0.0,
                3 => f64::INFINITY,
                _ => 1.5,
            };
            samples.push((t, v));
        }
        roundtrip(&samples);
        roundtrip(&[(-5, 1.0)]);
        roundtrip(&[(0, 1.0), (0, 2.0), (0, 2.0)]);
    }

    #[test]
    fn a_counter_scraped_every_second_takes_under_two_bytes_a_sample() {
        let samples: Vec<(i64, f64)> = (0..120).map(|i| (1_700_000_000_000 + i * 1000, (i * 3) as f64)).collect();
        let chunk = roundtrip(&samples);
        let per_sample = chunk.bytes().len() as f64 / 120.0;
        assert!(per_sample < 2.0, "{per_sample} bytes a sample");
    }
}
