//! A configuration compiled for sampling, and the codes it makes.
//!
//! - [`Generator`] (here): the compiled configuration and its sampler.
//! - [`Code`] (`code.rs`): an owned code, zeroed on drop, redacted in `Debug`.
//! - `cache.rs`: this thread's state, the one thread-local slot: its [`CodeRng`] and its cache
//!   of codes made ahead for [`Generator::generate`] and [`Generator::fill`].
//! - `clock.rs`: the coarse clock expiries are read from.
//! - [`FillError`] (`error.rs`): why [`Generator::fill`] wrote no code.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use zeroize::Zeroize;

use crate::config::{CodeLength, GeneratorConfig};
use crate::rng::{CodeRng, EntropyError};

mod cache;
mod clock;
mod code;
mod error;
#[cfg(test)]
mod tests;
mod wide;

#[doc(hidden)]
pub use cache::seed_this_thread;
pub use cache::with_thread_rng;
pub use code::Code;
pub use error::FillError;

use clock::coarse_now;
use code::INLINE;

/// A compiled, immutable generator: the configuration's arithmetic done once, so that drawing
/// a code validates nothing, allocates no table and takes no lock.
///
/// # Exactly uniform
/// Every code of [`Generator::length`] characters over the alphabet of `N` characters is
/// equally likely, each character independent of the others. A random byte `b` is used only
/// when `b < 256 - 256 % N`, and then stands for character `b % N`: each character has exactly
/// `floor(256 / N)` bytes, and a byte in the rejection zone is thrown away, never folded back
/// (ZITADEL's `b % (N - 1)` shortcut never produced its last character). The table is built
/// once here, so sampling is one table look-up per byte, with no division.
///
/// With `requireEachClass`, a whole code lacking a class is thrown away and drawn again, so
/// the result is uniform over exactly the codes that hold every class.
///
/// # Randomness
/// Bytes come from [`crate::rng`]: ChaCha12 keyed from the operating system, per thread.
///
/// # Entropy
/// [`Generator::entropy_bits`] is log2 of the number of codes it can produce, counted exactly.
#[derive(Clone)]
pub struct Generator {
    /// Random byte to character, 0 for a byte in the rejection zone.
    table: [u8; 256],
    /// Character to its class bit (`CharClass::bit`), 0 for other bytes.
    class_bits: [u8; 256],
    /// Class bits every code must show: all included classes, or 0 without `requireEachClass`.
    required: u8,
    length: usize,
    expiry: Duration,
    alphabet_len: usize,
    entropy_bits: f64,
    /// Unique per [`Generator::new`] (a clone keeps it: it is the same generator), never 0 and
    /// never reused: which generator a thread's cached codes belong to.
    id: u64,
}

/// The last [`Generator`] id handed out.
static LAST_ID: AtomicU64 = AtomicU64::new(0);

/// Random bytes mapped at a time, without a branch, by the sampling loop (a power of two).
const BLOCK: usize = 8;

/// The same for runs of at least this many characters, such as the bulk path's.
const WIDE_BLOCK: usize = 16;

impl Generator {
    /// Compiles `config`. Cheap (a few microseconds), but done once per configuration change.
    pub fn new(config: &GeneratorConfig) -> Generator {
        let alphabet = config.alphabet().as_bytes();
        let n = alphabet.len();
        let accepted = 256 - 256 % n;
        let mut table = [0u8; 256];
        for (byte, slot) in table.iter_mut().enumerate().take(accepted) {
            *slot = alphabet[byte % n];
        }
        let mut class_bits = [0u8; 256];
        for &c in alphabet {
            let class = config
                .alphabet()
                .class_of(c)
                .expect("characters have a class");
            class_bits[usize::from(c)] = class.bit();
        }
        Generator {
            table,
            class_bits,
            required: if config.require_each_class() {
                config.classes().bits()
            } else {
                0
            },
            length: config.length().get(),
            expiry: config.expiry().duration(),
            alphabet_len: n,
            entropy_bits: config.entropy_bits(),
            id: LAST_ID.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// Characters (and bytes) per code.
    pub fn length(&self) -> usize {
        self.length
    }

    /// How many characters codes are drawn from.
    pub fn alphabet_len(&self) -> usize {
        self.alphabet_len
    }

    /// log2 of the number of distinct codes, each equally likely.
    pub fn entropy_bits(&self) -> f64 {
        self.entropy_bits
    }

    /// When a code made at `now` expires; `None` when codes never expire.
    pub fn expires_at(&self, now: SystemTime) -> Option<SystemTime> {
        if self.expiry.is_zero() {
            None
        } else {
            Some(now + self.expiry)
        }
    }

    /// A new code from this thread's generator, expiring [expiry] from now.
    ///
    /// "Now" is read from the operating system's coarse real-time clock where there is one
    /// (Linux: `CLOCK_REALTIME_COARSE`, a few nanoseconds instead of tens, a few milliseconds
    /// behind), so a code may expire up to one clock tick early, never late. The clock is read
    /// for every code (not when codes never expire).
    ///
    /// # Codes made ahead
    /// Codes of up to 32 characters come from a per-thread cache: when it is empty, or holds
    /// another generator's codes, it is refilled with up to 256 bytes of this generator's codes
    /// (32 codes of 8 characters) through the bulk path ([`Generator::fill_codes`]). They are
    /// exactly the codes that many calls would have drawn one by one: uniform and independent.
    /// The cache belongs to one generator at a time, known by an id unique to each
    /// [`Generator::new`] (a clone is the same generator and shares it), so codes of a replaced
    /// generator are never served for its successor, even at the same address.
    ///
    /// The cost: up to 256 bytes of codes not yet handed out live in the thread's memory. A code
    /// is zeroed there when it is handed out, the rest when the cache is refilled for another
    /// generator and when the thread exits (the codes of a generator dropped meanwhile stay,
    /// never served, until then). This is the exposure the thread's [`CodeRng`] already has:
    /// its 1 KiB buffer holds the random bytes of the codes to come. Longer codes are drawn
    /// directly, uncached.
    ///
    /// [expiry]: GeneratorConfig::expiry
    #[inline]
    pub fn generate(&self) -> Result<Code, EntropyError> {
        if self.length > INLINE {
            return self.generate_spilled();
        }
        let mut code = Code {
            inline: [0; INLINE],
            expires_at: self.expires_from_now(),
            spilled: None,
            len: self.length as u16,
        };
        self.take_cached(&mut code.inline)?;
        Ok(code)
    }

    /// [`Generator::generate`] for codes too long to live inline: drawn directly, uncached.
    #[inline(never)]
    fn generate_spilled(&self) -> Result<Code, EntropyError> {
        let mut code = Code::zeroed(self.length, self.expires_from_now());
        with_thread_rng(|rng| self.fill_with(rng, code.bytes_mut()))?;
        Ok(code)
    }

    /// When a code made now expires, by the coarse clock; no clock is read when codes never
    /// expire.
    #[inline]
    fn expires_from_now(&self) -> Option<SystemTime> {
        if self.expiry.is_zero() {
            None
        } else {
            Some(coarse_now() + self.expiry)
        }
    }

    /// A new code from `rng`, made at `now`.
    pub fn generate_with(&self, rng: &mut CodeRng, now: SystemTime) -> Result<Code, EntropyError> {
        let mut code = Code::zeroed(self.length, self.expires_at(now));
        self.fill_with(rng, code.bytes_mut())?;
        Ok(code)
    }

    /// Writes one code into `out` with this thread's generator; allocates nothing.
    /// `out` must be exactly [`Generator::length`] bytes long.
    ///
    /// Codes of up to 32 characters come from the same per-thread cache of codes made ahead
    /// as [`Generator::generate`]'s (see there).
    #[inline]
    pub fn fill(&self, out: &mut [u8]) -> Result<(), FillError> {
        if out.len() != self.length {
            return Err(FillError::Length {
                expected: self.length,
                got: out.len(),
            });
        }
        if self.length > INLINE {
            return with_thread_rng(|rng| self.fill_with(rng, out)).map_err(FillError::Entropy);
        }
        self.move_cached(out).map_err(FillError::Entropy)
    }

    /// Fills `out` with codes back to back, `out.len() / length` of them, from this thread's
    /// generator, and returns how many: the bulk path. It allocates nothing and reaches the
    /// thread's generator once for the whole buffer; read the codes with
    /// `out.chunks_exact(generator.length())`. `out.len()` must be a multiple of
    /// [`Generator::length`].
    pub fn fill_codes(&self, out: &mut [u8]) -> Result<usize, FillError> {
        if !out.len().is_multiple_of(self.length) {
            return Err(FillError::NotWhole {
                code_length: self.length,
                got: out.len(),
            });
        }
        with_thread_rng(|rng| self.fill_codes_with(rng, out)).map_err(FillError::Entropy)?;
        Ok(out.len() / self.length)
    }

    /// [`Generator::fill_codes`] from `rng`, for a buffer whose length the caller made a
    /// multiple of [`Generator::length`] (a shorter last code is filled as far as it goes:
    /// with the first characters of the next whole code).
    /// The codes are exactly those of as many calls to [`Generator::fill_with`].
    pub fn fill_codes_with(&self, rng: &mut CodeRng, out: &mut [u8]) -> Result<(), EntropyError> {
        if self.required == 0 {
            // Independent uniform codes back to back are one uniform run of characters.
            return self.fill_uniform(rng, out);
        }
        let mut codes = out.chunks_exact_mut(self.length);
        for code in &mut codes {
            self.fill_with(rng, code)?;
        }
        let rest = codes.into_remainder();
        if !rest.is_empty() {
            // Drawn whole: a part shorter than the number of classes could never hold
            // every class, and the search for one would not end.
            let mut whole = [0u8; CodeLength::MAX as usize];
            let result = self.fill_with(rng, &mut whole[..self.length]);
            rest.copy_from_slice(&whole[..rest.len()]);
            whole.zeroize();
            result?;
        }
        Ok(())
    }

    /// Writes one code into `out` from `rng`; allocates nothing. The code is `out.len()`
    /// characters long, which the caller makes [`Generator::length`].
    #[inline]
    pub fn fill_with(&self, rng: &mut CodeRng, out: &mut [u8]) -> Result<(), EntropyError> {
        loop {
            self.fill_uniform(rng, out)?;
            if self.required == 0 || self.has_every_class(out) {
                return Ok(());
            }
        }
    }

    /// Fills `out` with uniform characters: exactly what sequential rejection sampling gives,
    /// each random byte in turn, kept when outside the rejection zone.
    #[inline]
    fn fill_uniform(&self, rng: &mut CodeRng, out: &mut [u8]) -> Result<(), EntropyError> {
        let mut filled = 0;
        while filled < out.len() {
            let (read, written) = self.map_bytes(rng.available()?, &mut out[filled..]);
            rng.consume(read);
            filled += written;
        }
        Ok(())
    }

    /// Maps random `bytes` to characters in `out` until `out` is full or `bytes` run out;
    /// returns how many bytes it read and characters it wrote.
    ///
    /// While at least 64 characters are missing it maps 64 bytes at a time with AVX-512 where
    /// the CPU has it, then 32 at a time with AVX2 (`wide.rs`); then, while at least [`WIDE_BLOCK`], then [`BLOCK`],
    /// characters are missing, that many bytes at a time without a branch (see
    /// [`Generator::map_blocks`]); then byte by byte. Every step gives what the byte-by-byte
    /// loop gives.
    #[inline]
    fn map_bytes(&self, bytes: &[u8], out: &mut [u8]) -> (usize, usize) {
        let (mut read, mut written) = (0, 0);
        wide::map(
            &self.table,
            self.alphabet_len,
            bytes,
            out,
            &mut read,
            &mut written,
        );
        self.map_blocks::<WIDE_BLOCK>(bytes, out, &mut read, &mut written);
        self.map_blocks::<BLOCK>(bytes, out, &mut read, &mut written);
        while written < out.len() && read < bytes.len() {
            let c = self.table[usize::from(bytes[read])];
            read += 1;
            if c != 0 {
                out[written] = c;
                written += 1;
            }
        }
        (read, written)
    }

    /// While at least `N` characters are missing, maps `N` bytes at a time without a branch:
    /// each character is written at the next free place, which advances only when the byte
    /// was accepted, so a rejected byte's 0 is overwritten by the next accepted one (or by a
    /// later block). Every accepted byte of a block is used, so no byte is read that the
    /// byte-by-byte loop would not have read. `N` is a power of two.
    #[inline(always)]
    fn map_blocks<const N: usize>(
        &self,
        bytes: &[u8],
        out: &mut [u8],
        read: &mut usize,
        written: &mut usize,
    ) {
        while out.len() - *written >= N {
            let Some(block) = bytes[*read..].first_chunk::<N>() else {
                break;
            };
            let dst: &mut [u8; N] = (&mut out[*written..*written + N])
                .try_into()
                .expect("a block fits");
            let mut k = 0;
            for &b in block {
                let c = self.table[usize::from(b)];
                dst[k & (N - 1)] = c;
                k += usize::from(c != 0);
            }
            *read += N;
            *written += k;
        }
    }

    fn has_every_class(&self, code: &[u8]) -> bool {
        let seen = code
            .iter()
            .fold(0u8, |seen, &c| seen | self.class_bits[usize::from(c)]);
        seen & self.required == self.required
    }
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("length", &self.length)
            .field("alphabet_len", &self.alphabet_len)
            .field("require_each_class", &(self.required != 0))
            .field("expiry", &self.expiry)
            .field("entropy_bits", &self.entropy_bits)
            .finish()
    }
}
