//! Where randomness comes from: the one seam to change if the cipher ever has to change.
//!
//! Each thread owns a [`CodeRng`]: ChaCha12 keyed with 32 bytes from the operating system
//! (`getrandom`), re-keyed from the operating system after every [`RESEED_AFTER_BYTES`] bytes of
//! output. If the operating system cannot give randomness, generation fails with
//! [`EntropyError`]; there is no fallback to a weaker source.
//!
//! This module is a leaf: it imports nothing from the rest of the engine. The thread-local
//! that holds each thread's [`CodeRng`] lives with the generator (`generator::with_thread_rng`),
//! beside the thread's cache of codes made ahead.
//!
//! # Why ChaCha with 12 rounds
//! ChaCha12 is what `rand`'s `StdRng` and `ThreadRng` use. The best published attacks reach
//! 7 rounds of ChaCha; Aumasson's "Too Much Crypto" (2019) argues 8 rounds already keep a safe
//! margin. 12 rounds keep that margin with room to spare, at about two thirds of ChaCha20's
//! cost. Changing [`Cipher`] (to 20 rounds, `chacha20::R20`, say) is the one line it takes.
//!
//! # Why the core, 16 blocks at a time
//! The buffer is refilled by the cipher's core writing 16 blocks of keystream straight into it
//! (`write_keystream_blocks`), not through `chacha20::ChaCha12Rng`, whose `fill_bytes` copies
//! from a 4-block buffer of its own and only has an AVX2 backend. The core has chacha20's
//! AVX-512 backend, 16 blocks in parallel, which the workspace compiles in
//! (`--cfg chacha20_avx512`, `.cargo/config.toml`) and which runs where the CPU has AVX-512
//! (AVX2 elsewhere, picked at run time). The stream is the same byte for byte: ChaCha12, 64-bit
//! block counter from 0, stream 0 (`the_stream_for_a_seed_is_pinned`, and the oracle's
//! reference reads it through `ChaCha12Rng`).

use std::fmt;

use chacha20::cipher::{Array, StreamCipherCore};
use rand_core::SeedableRng;
use zeroize::Zeroize;

/// The stream cipher behind every code: the ChaCha12 core (64-bit counter, stream 0) of the
/// `chacha20` crate, which zeroes its key and state when it is dropped, so a replaced key
/// (re-key) or a thread's generator (thread exit) leaves nothing behind.
pub type Cipher = chacha20::ChaChaCore<chacha20::R12, chacha20::variants::Legacy>;

/// Output after which a thread's generator takes a new key from the operating system.
pub const RESEED_AFTER_BYTES: usize = 1 << 20;

/// ChaCha blocks written per refill: what the widest backend (AVX-512) makes at once.
const BUFFER_BLOCKS: usize = 16;

/// Random bytes buffered per refill.
const BUFFER_BYTES: usize = 64 * BUFFER_BLOCKS;

/// Where keys come from: the operating system, or (in tests) something that can fail.
type SeedSource = fn(&mut [u8; 32]) -> Result<(), EntropyError>;

fn os_seed(seed: &mut [u8; 32]) -> Result<(), EntropyError> {
    getrandom::fill(seed).map_err(EntropyError)
}

/// A cryptographically secure byte stream for drawing codes.
///
/// Built with [`CodeRng::from_os`] it is keyed and re-keyed from the operating system; built
/// with [`CodeRng::from_seed`] it is a fixed, reproducible stream for tests and benchmarks
/// that must never produce real secrets.
pub struct CodeRng {
    cipher: Cipher,
    buffer: [[u8; 64]; BUFFER_BLOCKS],
    /// Bytes of `buffer` already used.
    used: usize,
    /// Bytes left before the next re-key.
    until_reseed: usize,
    reseed: Option<SeedSource>,
}

impl CodeRng {
    /// A generator keyed from the operating system, re-keyed every [`RESEED_AFTER_BYTES`].
    pub fn from_os() -> Result<CodeRng, EntropyError> {
        Self::with_seed_source(os_seed)
    }

    fn with_seed_source(source: SeedSource) -> Result<CodeRng, EntropyError> {
        let mut seed = [0u8; 32];
        source(&mut seed)?;
        let mut rng = Self::keyed(seed);
        seed.zeroize();
        rng.reseed = Some(source);
        Ok(rng)
    }

    /// A reproducible generator for tests and benchmarks: the same seed gives the same codes,
    /// and it is never re-keyed. Never use it for real secrets.
    pub fn from_seed(seed: [u8; 32]) -> CodeRng {
        Self::keyed(seed)
    }

    fn keyed(seed: [u8; 32]) -> CodeRng {
        CodeRng {
            cipher: Cipher::from_seed(seed),
            buffer: [[0; 64]; BUFFER_BLOCKS],
            used: BUFFER_BYTES,
            until_reseed: RESEED_AFTER_BYTES,
            reseed: None,
        }
    }

    /// The unread random bytes: never empty. Mark what you read with [`CodeRng::consume`];
    /// a byte read is never handed out again.
    #[inline]
    pub(crate) fn available(&mut self) -> Result<&[u8], EntropyError> {
        if self.used == BUFFER_BYTES {
            self.refill()?;
        }
        Ok(&self.buffer.as_flattened()[self.used..])
    }

    /// Marks the first `n` bytes of [`CodeRng::available`] as used.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(self.used + n <= BUFFER_BYTES);
        self.used += n;
    }

    #[cold]
    fn refill(&mut self) -> Result<(), EntropyError> {
        if let Some(source) = self.reseed {
            if self.until_reseed < BUFFER_BYTES {
                // The old key's output is gone before the new key is asked for, even when
                // the operating system then fails us; the old cipher zeroes itself on drop.
                self.buffer.zeroize();
                let mut seed = [0u8; 32];
                source(&mut seed)?;
                self.cipher = Cipher::from_seed(seed);
                seed.zeroize();
                self.until_reseed = RESEED_AFTER_BYTES;
            }
            self.until_reseed -= BUFFER_BYTES;
        }
        self.cipher
            .write_keystream_blocks(Array::cast_slice_from_core_mut(&mut self.buffer));
        self.used = 0;
        Ok(())
    }
}

impl Drop for CodeRng {
    fn drop(&mut self) {
        // Unread output would be the next codes' characters, read output the last ones. The
        // cipher zeroes its own key and state.
        self.buffer.zeroize();
    }
}

impl fmt::Debug for CodeRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeRng")
            .field("reseeds", &self.reseed.is_some())
            .finish_non_exhaustive()
    }
}

/// The operating system gave no randomness, so no code was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntropyError(getrandom::Error);

impl fmt::Display for EntropyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the operating system's random source failed: {}", self.0)
    }
}

impl std::error::Error for EntropyError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn drain(rng: &mut CodeRng, mut n: usize) -> Result<Vec<u8>, EntropyError> {
        let mut out = Vec::with_capacity(n);
        while n > 0 {
            let bytes = rng.available()?;
            let take = bytes.len().min(n);
            out.extend_from_slice(&bytes[..take]);
            rng.consume(take);
            n -= take;
        }
        Ok(out)
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_does_not() {
        let a = drain(&mut CodeRng::from_seed([7; 32]), 2000).unwrap();
        let b = drain(&mut CodeRng::from_seed([7; 32]), 2000).unwrap();
        let c = drain(&mut CodeRng::from_seed([8; 32]), 2000).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// The cipher's output for a fixed seed, pinned: seeded tests, benchmarks and the fuzz
    /// corpus's expectations rest on it. Written with `rand_chacha` 0.10's ChaCha12Rng and
    /// unchanged by the moves to `chacha20` 0.10's ChaCha12Rng and then to its core written
    /// 16 blocks at a time: all are ChaCha12 with a 64-bit counter and stream 0.
    #[test]
    fn the_stream_for_a_seed_is_pinned() {
        let bytes = drain(&mut CodeRng::from_seed([7; 32]), 1056).unwrap();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&bytes[..32]),
            "f692897885c0cb20a3e4cd106a0b15bc360794f17e73298909b0798873ec7441"
        );
        // Past a refill of the 1 KiB buffer.
        assert_eq!(
            hex(&bytes[1024..]),
            "6af2ad17e3ab292d96eee08eb7ef9d61a3a9948866961fc0ef990558268d90eb"
        );
    }

    #[test]
    fn os_keyed_generators_differ() {
        let a = drain(&mut CodeRng::from_os().unwrap(), 64).unwrap();
        let b = drain(&mut CodeRng::from_os().unwrap(), 64).unwrap();
        assert_ne!(a, b);
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn counting_source(seed: &mut [u8; 32]) -> Result<(), EntropyError> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        seed.fill(n as u8);
        if n == 0 {
            Ok(())
        } else {
            Err(EntropyError(getrandom::Error::UNEXPECTED))
        }
    }

    #[test]
    fn a_failed_reseed_fails_closed() {
        let mut rng = CodeRng::with_seed_source(counting_source).unwrap();
        // Everything up to the re-key comes from the first key.
        let first = drain(&mut rng, RESEED_AFTER_BYTES).unwrap();
        assert_eq!(
            first,
            drain(&mut CodeRng::from_seed([0; 32]), RESEED_AFTER_BYTES).unwrap()
        );
        // Then the source fails: no byte is handed out, now or on any later try, and the old
        // key's output is not left behind.
        for _ in 0..3 {
            assert!(rng.available().is_err());
            assert!(rng.buffer.as_flattened().iter().all(|&b| b == 0));
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn the_cipher_zeroes_itself_on_drop() {
        // Compiles only while `Cipher` zeroes its key and state on drop (chacha20's
        // "zeroize" feature).
        fn zeroed_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroed_on_drop::<Cipher>();
    }

    #[test]
    fn reseeding_changes_the_key() {
        fn stepping(seed: &mut [u8; 32]) -> Result<(), EntropyError> {
            static N: AtomicUsize = AtomicUsize::new(0);
            seed.fill(N.fetch_add(1, Ordering::SeqCst) as u8);
            Ok(())
        }
        let mut rng = CodeRng::with_seed_source(stepping).unwrap();
        drain(&mut rng, RESEED_AFTER_BYTES).unwrap();
        let after = drain(&mut rng, 64).unwrap();
        let mut second_key = CodeRng::from_seed([1; 32]);
        assert_eq!(after, drain(&mut second_key, 64).unwrap());
    }
}
