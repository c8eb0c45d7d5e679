//! Deterministic inputs: incompressible noise, compressible text, and a small PRNG.

/// xorshift64: fast, seeded, and the same on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A 4 KiB-aligned offset inside `len` bytes.
    pub fn page_in(&mut self, len: u64) -> u64 {
        (self.next() % (len / 4096)) * 4096
    }
}

/// Incompressible bytes (no two 8-byte words repeat within a fixture).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut v = vec![0u8; len];
    for c in v.chunks_mut(8) {
        let x = rng.next();
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    v
}

/// Bytes that compress like text and binaries of a root file system (zstd -1 about 3-4x).
pub fn compressible(len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"layer ",
        b"store ",
        b"block ",
        b"chunk ",
        b"copy-on-write ",
        b"\n",
        b"0x7f45 ",
        b"container ",
    ];
    let mut v = Vec::with_capacity(len + 32);
    let mut rng = Rng(88172645463325252);
    while v.len() < len {
        let x = rng.next();
        if x.is_multiple_of(5) {
            v.extend_from_slice(&x.to_le_bytes()[..3]);
        } else {
            v.extend_from_slice(WORDS[(x >> 8) as usize % WORDS.len()]);
        }
    }
    v.truncate(len);
    v
}

/// The large fixtures' size: `LSTORE_BENCH_GIB` GiB (default 1).
pub fn gib() -> usize {
    std::env::var("LSTORE_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(1 << 30, |g| (g * (1u64 << 30) as f64) as usize)
}
