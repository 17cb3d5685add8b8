//! The reference sampler: what secretgen's sampler is defined to give for a seed.
//!
//! Plain sequential rejection over the seeded byte stream: each byte `b` in turn is kept when
//! `b < 256 - 256 % N` and stands for character `alphabet[b % N]`; with `requireEachClass`,
//! a code lacking an included class is thrown away whole and the next one is drawn from the
//! bytes that follow. No block loop, no table, no cache.

use rand_core::{Rng, SeedableRng};

use crate::spec::Shape;

/// The bytes a `CodeRng::from_seed(seed)` hands out, in order.
///
/// `CodeRng` has no public way to read its bytes (`available`/`consume` are crate-private),
/// so this reads the stream `CodeRng` is defined to hand out: ChaCha12 keyed with the seed,
/// 64-bit block counter from 0, stream 0, in order. It reads it through chacha20's
/// `ChaCha12Rng`, 64 bytes at a time, not the way the engine writes it (the cipher's core, 16
/// blocks at a time, `secretgen::rng`), so a `CodeRng` that handed out its stream differently
/// fails every comparison with the reference.
struct SeededBytes {
    cipher: chacha20::ChaCha12Rng,
    block: [u8; 64],
    used: usize,
    /// Bytes handed out so far.
    drawn: u64,
}

impl SeededBytes {
    fn new(seed: [u8; 32]) -> SeededBytes {
        SeededBytes {
            cipher: chacha20::ChaCha12Rng::from_seed(seed),
            block: [0; 64],
            used: 64,
            drawn: 0,
        }
    }

    fn next(&mut self) -> u8 {
        if self.used == self.block.len() {
            self.cipher.fill_bytes(&mut self.block);
            self.used = 0;
        }
        self.used += 1;
        self.drawn += 1;
        self.block[self.used - 1]
    }
}

/// Codes of one shape from one seed, one after another.
pub struct Reference {
    bytes: SeededBytes,
    length: usize,
    alphabet: Vec<u8>,
    /// With `requireEachClass`, the characters of each included class; else empty.
    required: Vec<Vec<u8>>,
}

impl Reference {
    /// The reference stream of `shape`'s codes for `CodeRng::from_seed(seed)`.
    ///
    /// # Panics
    /// When the shape has no class.
    pub fn new(shape: &Shape, seed: [u8; 32]) -> Reference {
        let alphabet = shape.alphabet();
        assert!(!alphabet.is_empty(), "no class, no alphabet");
        Reference {
            bytes: SeededBytes::new(seed),
            length: shape.length,
            alphabet,
            required: if shape.require_each_class {
                shape.class_chars()
            } else {
                Vec::new()
            },
        }
    }

    /// One character: the next byte below the rejection zone, as a character.
    pub fn character(&mut self) -> u8 {
        let n = self.alphabet.len();
        loop {
            let b = usize::from(self.bytes.next());
            if b < 256 - 256 % n {
                return self.alphabet[b % n];
            }
        }
    }

    /// Random bytes read so far: what the codes and characters drawn so far consumed (the
    /// benchmarks size their keystream buffers with it).
    pub fn bytes_drawn(&self) -> u64 {
        self.bytes.drawn
    }

    /// The next whole code.
    pub fn code(&mut self) -> Vec<u8> {
        loop {
            let code: Vec<u8> = (0..self.length).map(|_| self.character()).collect();
            if self
                .required
                .iter()
                .all(|class| code.iter().any(|c| class.contains(c)))
            {
                return code;
            }
        }
    }
}
