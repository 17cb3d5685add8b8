//! A configuration compiled for sampling, and the codes it makes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use zeroize::Zeroize;

use crate::config::{CodeLength, GeneratorConfig};
use crate::rng::{CodeRng, EntropyError, ThreadState, with_thread_rng, with_thread_state};

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
    /// its 512-byte buffer holds the random bytes of the codes to come. Longer codes are drawn
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
        with_thread_state(|state| self.take_cached(state, &mut code.inline))?;
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

    /// Moves the next code cached for this generator out of the cache, refilling the cache
    /// first when it is empty or holds another generator's codes, into the start of `out`.
    /// Its place in the cache is zeroed.
    #[inline]
    fn take_cached(
        &self,
        state: &mut ThreadState,
        out: &mut [u8; INLINE],
    ) -> Result<(), EntropyError> {
        self.ensure_cached(state)?;
        let cache = &mut state.cache;
        let len = self.length;
        // The code's bytes through a mask of `len` ones: a fixed-size window, so a few vector
        // instructions rather than a call, and nothing of the next code is copied.
        let window: &[u8; INLINE] = cache.bytes[cache.next..]
            .first_chunk()
            .expect("the cache has a window's room past its last code");
        let mask: &[u8; INLINE] = PREFIX_MASKS[INLINE - len..]
            .first_chunk()
            .expect("codes in the cache are at most INLINE long");
        for ((o, w), m) in out.iter_mut().zip(window).zip(mask) {
            *o = w & m;
        }
        zero_small(&mut cache.bytes[cache.next..cache.next + len]);
        cache.next += len;
        Ok(())
    }

    /// Makes sure the cache holds a code of this generator's: refills it when it is empty or
    /// holds another generator's codes.
    #[inline(always)]
    fn ensure_cached(&self, state: &mut ThreadState) -> Result<(), EntropyError> {
        if state.cache.owner != self.id || state.cache.next == state.cache.end {
            self.refill_cache(state)?;
        }
        Ok(())
    }

    /// Zeroes what is left in the cache and fills it with this generator's codes.
    #[cold]
    #[inline(never)]
    fn refill_cache(&self, state: &mut ThreadState) -> Result<(), EntropyError> {
        let (rng, cache) = state.rng_and_cache()?;
        cache.clear();
        let end = CACHE_BYTES / self.length * self.length;
        if let Err(e) = self.fill_codes_with(rng, &mut cache.bytes[..end]) {
            cache.bytes[..end].zeroize();
            return Err(e);
        }
        cache.owner = self.id;
        cache.end = end;
        Ok(())
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
        with_thread_state(|state| {
            self.ensure_cached(state)?;
            let cache = &mut state.cache;
            move_small(&mut cache.bytes[cache.next..cache.next + out.len()], out);
            cache.next += out.len();
            Ok(())
        })
        .map_err(FillError::Entropy)
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
    /// While at least [`WIDE_BLOCK`], then [`BLOCK`], characters are missing it maps that many
    /// bytes at a time without a branch (see [`Generator::map_blocks`]), then byte by byte.
    #[inline]
    fn map_bytes(&self, bytes: &[u8], out: &mut [u8]) -> (usize, usize) {
        let (mut read, mut written) = (0, 0);
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

/// [`Generator::fill`] could not write a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillError {
    /// The buffer is not one code long.
    Length {
        /// The generator's code length.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// The buffer does not hold a whole number of codes.
    NotWhole {
        /// The generator's code length.
        code_length: usize,
        /// The buffer's length.
        got: usize,
    },
    /// The operating system gave no randomness.
    Entropy(EntropyError),
}

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillError::Length { expected, got } => {
                write!(
                    f,
                    "buffer of {got} bytes for a code of {expected} characters"
                )
            }
            FillError::NotWhole { code_length, got } => write!(
                f,
                "buffer of {got} bytes does not hold whole codes of {code_length} characters"
            ),
            FillError::Entropy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FillError {}

/// Codes up to this many characters are held inline, without a heap allocation.
const INLINE: usize = 32;

/// `PREFIX_MASKS[INLINE - n..][..INLINE]` is `n` bytes of ones, then zeros.
static PREFIX_MASKS: [u8; 2 * INLINE] = {
    let mut masks = [0u8; 2 * INLINE];
    let mut i = 0;
    while i < INLINE {
        masks[i] = 0xff;
        i += 1;
    }
    masks
};

/// Moves `src` (as long as `dst`, at most [`INLINE`] bytes) to `dst` and zeroes `src`, with
/// two fixed-size, possibly overlapping copies (as `memcpy` does for small sizes) instead of
/// calls.
#[inline(always)]
fn move_small(src: &mut [u8], dst: &mut [u8]) {
    #[inline(always)]
    fn two<const N: usize>(src: &[u8], dst: &mut [u8]) {
        let len = src.len();
        dst[..N].copy_from_slice(&src[..N]);
        dst[len - N..].copy_from_slice(&src[len - N..]);
    }
    match src.len() {
        16.. => two::<16>(src, dst),
        8.. => two::<8>(src, dst),
        4.. => two::<4>(src, dst),
        _ => dst.copy_from_slice(src),
    }
    zero_small(src);
}

/// Zeroes `bytes` (at most [`INLINE`] of them) with two fixed-size, possibly overlapping
/// writes (as `memset` does for small sizes) instead of a call.
#[inline(always)]
fn zero_small(bytes: &mut [u8]) {
    #[inline(always)]
    fn two<const N: usize>(bytes: &mut [u8]) {
        let len = bytes.len();
        bytes[..N].zeroize();
        bytes[len - N..].zeroize();
    }
    match bytes.len() {
        16.. => two::<16>(bytes),
        8.. => two::<8>(bytes),
        4.. => two::<4>(bytes),
        _ => bytes.zeroize(),
    }
}

/// Bytes of codes each thread keeps made ahead for [`Generator::generate`].
const CACHE_BYTES: usize = 256;

/// Codes of one generator made ahead, back to back, with the bulk path: a thread's next
/// [`Generator::generate`] results for that generator. A code is zeroed in the cache as it is
/// handed out, the codes left are zeroed when the cache is refilled (for another generator or
/// because it ran out), and everything when the thread exits.
pub(crate) struct CodeCache {
    /// The codes, then room for the last code's [`INLINE`]-byte window (always zero).
    bytes: [u8; CACHE_BYTES + INLINE],
    /// [`Generator::id`] of the generator the codes belong to; 0 for none.
    owner: u64,
    /// Start of the next code to hand out.
    next: usize,
    /// End of the cached codes.
    end: usize,
}

impl CodeCache {
    /// An empty cache.
    pub(crate) const fn new() -> CodeCache {
        CodeCache {
            bytes: [0; CACHE_BYTES + INLINE],
            owner: 0,
            next: 0,
            end: 0,
        }
    }

    /// Zeroes the codes not handed out and empties the cache.
    fn clear(&mut self) {
        self.bytes[self.next..self.end].zeroize();
        self.owner = 0;
        self.next = 0;
        self.end = 0;
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// The current time from a clock that is cheap to read, at most a few milliseconds behind.
#[cfg(target_os = "linux")]
#[inline]
fn coarse_now() -> SystemTime {
    use rustix::time::{ClockId, clock_gettime};
    let ts = clock_gettime(ClockId::RealtimeCoarse);
    match (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
        (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => {
            SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
        }
        _ => SystemTime::now(),
    }
}

/// The current time.
#[cfg(not(target_os = "linux"))]
fn coarse_now() -> SystemTime {
    SystemTime::now()
}

/// A generated code and when it expires.
///
/// It is a secret: `Debug` shows its length, never its characters, it has no `Display`, and
/// its memory is zeroed when it is dropped. Read it with [`Code::expose`]. Codes of up to 32
/// characters (every default but APP_SECRET) live inline, without a heap allocation.
#[derive(Clone)]
#[repr(C)] // the characters first, aligned: moving a code is a few aligned vector moves
pub struct Code {
    inline: [u8; INLINE],
    expires_at: Option<SystemTime>,
    /// The characters of a code longer than [`INLINE`].
    spilled: Option<Box<[u8]>>,
    len: u16,
}

impl Code {
    fn zeroed(len: usize, expires_at: Option<SystemTime>) -> Code {
        Code {
            len: len as u16,
            inline: [0; INLINE],
            spilled: (len > INLINE).then(|| vec![0; len].into_boxed_slice()),
            expires_at,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.spilled {
            Some(b) => b,
            None => &self.inline[..usize::from(self.len)],
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.spilled {
            Some(b) => b,
            None => &mut self.inline[..usize::from(self.len)],
        }
    }

    /// The characters of the code. Every alphabet is printable ASCII.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(self.bytes()).expect("codes are ASCII")
    }

    /// When the code stops being valid; `None` when it never expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Characters in the code.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a code has at least one character.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        // All of the inline storage, a fixed size: a few stores, no call.
        self.inline.as_mut_slice().zeroize();
        if let Some(spilled) = &mut self.spilled {
            spilled.zeroize();
        }
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field(
                "value",
                &format_args!("<{} characters, redacted>", self.len()),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::{AMBIGUOUS, CharClass};
    use crate::config::ConfigDraft;
    use crate::generator_type::GeneratorType;
    use proptest::prelude::*;

    fn seeded(n: u8) -> CodeRng {
        CodeRng::from_seed([n; 32])
    }

    #[test]
    fn the_table_gives_each_character_the_same_number_of_bytes() {
        for t in GeneratorType::ALL {
            let config = GeneratorConfig::default_for(t);
            let g = Generator::new(&config);
            let n = config.alphabet().len();
            for &c in config.alphabet().as_bytes() {
                let hits = g.table.iter().filter(|&&x| x == c).count();
                assert_eq!(hits, 256 / n, "{t} {}", c as char);
            }
            let rejected = g.table.iter().filter(|&&x| x == 0).count();
            assert_eq!(rejected, 256 % n);
        }
    }

    /// Plain sequential rejection sampling, written from the definition: each byte in turn,
    /// kept as `alphabet[b % n]` when `b < 256 - 256 % n`.
    fn reference_code(config: &GeneratorConfig, rng: &mut CodeRng) -> Vec<u8> {
        let alphabet = config.alphabet().as_bytes();
        let n = alphabet.len();
        let mut code = Vec::new();
        while code.len() < config.length().get() {
            let b = usize::from(rng.available().unwrap()[0]);
            rng.consume(1);
            if b < 256 - 256 % n {
                code.push(alphabet[b % n]);
            }
        }
        code
    }

    #[test]
    fn the_block_loop_gives_exactly_what_sequential_rejection_gives() {
        let mut drafts = Vec::new();
        for classes in 1u8..16 {
            for exclude in [false, true] {
                for length in [1, 7, 8, 9, 16, 63, 64, 100] {
                    drafts.push(ConfigDraft {
                        length,
                        expiry: "0s".into(),
                        include_lower_letters: classes & 1 != 0,
                        include_upper_letters: classes & 2 != 0,
                        include_digits: classes & 4 != 0,
                        include_symbols: classes & 8 != 0,
                        exclude_ambiguous: exclude,
                        ..ConfigDraft::new(crate::GeneratorType::AppSecret)
                    });
                }
            }
        }
        for (i, draft) in drafts.iter().enumerate() {
            // Bypass the entropy floor: this compares sampling, not policy.
            let config = GeneratorConfig::unchecked_for_tests(draft);
            let g = Generator::new(&config);
            let mut fast = seeded(i as u8);
            let mut slow = seeded(i as u8);
            let mut out = vec![0u8; g.length()];
            for _ in 0..300 {
                g.fill_with(&mut fast, &mut out).unwrap();
                assert_eq!(out, reference_code(&config, &mut slow), "{draft:?}");
            }
        }
    }

    #[test]
    fn bulk_fill_gives_the_codes_of_single_fills() {
        let mut with_classes = GeneratorConfig::default_for(GeneratorType::InitCode).to_draft();
        with_classes.require_each_class = true;
        let configs = [
            GeneratorConfig::default_for(GeneratorType::OtpSms),
            GeneratorConfig::default_for(GeneratorType::AppSecret),
            GeneratorConfig::new(&with_classes).unwrap(),
        ];
        for config in configs {
            let g = Generator::new(&config);
            let len = g.length();
            let mut bulk = vec![0u8; len * 500];
            g.fill_codes_with(&mut seeded(3), &mut bulk).unwrap();
            let mut one_by_one = seeded(3);
            let mut code = vec![0u8; len];
            for chunk in bulk.chunks_exact(len) {
                g.fill_with(&mut one_by_one, &mut code).unwrap();
                assert_eq!(chunk, &code[..]);
            }
            assert_eq!(g.fill_codes(&mut bulk), Ok(500));
            assert_eq!(
                g.fill_codes(&mut vec![0u8; len * 3 + 1]),
                Err(FillError::NotWhole {
                    code_length: len,
                    got: len * 3 + 1
                })
            );
        }
    }

    /// Found by `fuzz/` (`generate`): with `requireEachClass`, a partial last code was drawn
    /// as a code of its own length, which never ends when it is shorter than the number of
    /// classes. It is the start of a whole code, as without `requireEachClass`.
    #[test]
    fn a_partial_last_code_is_the_start_of_a_whole_one() {
        let mut draft = GeneratorConfig::default_for(GeneratorType::OtpSms).to_draft();
        (draft.length, draft.require_each_class) = (4, true);
        (draft.include_lower_letters, draft.include_upper_letters) = (true, true);
        draft.include_symbols = true;
        let config = GeneratorConfig::new(&draft).unwrap();
        let g = Generator::new(&config);
        let mut bulk = [0u8; 4 * 3 + 2];
        g.fill_codes_with(&mut seeded(5), &mut bulk).unwrap();
        let mut one_by_one = seeded(5);
        let mut code = [0u8; 4];
        for chunk in bulk.chunks(4) {
            g.fill_with(&mut one_by_one, &mut code).unwrap();
            assert_eq!(chunk, &code[..chunk.len()]);
        }
    }

    #[test]
    fn fill_refuses_a_buffer_of_the_wrong_length() {
        let g = Generator::new(&GeneratorConfig::default_for(GeneratorType::OtpSms));
        let mut short = [0u8; 7];
        assert_eq!(
            g.fill(&mut short),
            Err(FillError::Length {
                expected: 8,
                got: 7
            })
        );
        assert_eq!(short, [0; 7], "nothing written");
        let mut exact = [0u8; 8];
        g.fill(&mut exact).unwrap();
        assert!(exact.iter().all(u8::is_ascii_digit));
    }

    #[test]
    fn debug_never_shows_the_code() {
        let g = Generator::new(&GeneratorConfig::default_for(GeneratorType::AppSecret));
        let code = g.generate().unwrap();
        let shown = format!("{code:?}");
        assert!(!shown.contains(code.expose()), "{shown}");
        assert!(shown.contains("64 characters"));
    }

    #[test]
    fn long_codes_live_on_the_heap_and_are_whole() {
        let mut d = GeneratorConfig::default_for(GeneratorType::AppSecret).to_draft();
        d.length = 1024;
        let g = Generator::new(&GeneratorConfig::new(&d).unwrap());
        let code = g.generate_with(&mut seeded(1), SystemTime::now()).unwrap();
        assert_eq!(code.len(), 1024);
        assert!(code.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn codes_from_different_threads_differ() {
        let g = Generator::new(&GeneratorConfig::default_for(GeneratorType::AppSecret));
        let here = g.generate().unwrap();
        let there = std::thread::scope(|s| s.spawn(|| g.generate().unwrap()).join().unwrap());
        assert_ne!(here.expose(), there.expose());
    }

    /// Whether `code` is one `config` can make: length, alphabet, every class when required.
    fn obeys(config: &GeneratorConfig, code: &str) -> bool {
        code.len() == config.length().get()
            && code
                .bytes()
                .all(|b| config.alphabet().as_bytes().contains(&b))
            && (!config.require_each_class()
                || config
                    .classes()
                    .iter()
                    .all(|c| code.bytes().any(|b| c.chars().as_bytes().contains(&b))))
    }

    /// The cache's codes not handed out yet, and whether every other byte is zero.
    fn cache_view() -> (u64, usize, bool) {
        with_thread_state(|state| {
            let c = &state.cache;
            let rest_zero = c.bytes[..c.next]
                .iter()
                .chain(&c.bytes[c.end..])
                .all(|&b| b == 0);
            (c.owner, (c.end - c.next), rest_zero)
        })
    }

    #[test]
    fn interleaved_generators_each_get_their_own_codes() {
        let digits = GeneratorConfig::default_for(GeneratorType::OtpSms); // 8 digits
        let mut d = GeneratorConfig::default_for(GeneratorType::InitCode).to_draft();
        d.length = 20;
        d.include_digits = false;
        d.include_symbols = true;
        d.require_each_class = true;
        let classes = GeneratorConfig::new(&d).unwrap();
        let mut d = classes.to_draft();
        d.length = 32; // the longest cached length
        let longest = GeneratorConfig::new(&d).unwrap();
        let configs = [digits, classes, longest];
        let generators: Vec<Generator> = configs.iter().map(Generator::new).collect();
        // Runs of every length, so the cache switches owner mid-way and runs out.
        let mut seen = std::collections::HashSet::new();
        for round in 0..200 {
            let which = (round * 7 + round / 3) % 3;
            for k in 0..(round % 40) {
                // Owned codes and filled buffers share the cache.
                let code = if k % 3 == 2 {
                    let mut buf = vec![0u8; configs[which].length().get()];
                    generators[which].fill(&mut buf).unwrap();
                    String::from_utf8(buf).unwrap()
                } else {
                    generators[which].generate().unwrap().expose().to_owned()
                };
                assert!(obeys(&configs[which], &code), "generator {which}");
                if which > 0 {
                    // 20 or more characters: a repeat would be a code served twice.
                    assert!(seen.insert(code), "a code served twice");
                }
                let (owner, _, rest_zero) = cache_view();
                assert_eq!(owner, generators[which].id);
                assert!(rest_zero, "served or discarded codes left in the cache");
            }
        }
    }

    #[test]
    fn a_new_generator_never_gets_a_dropped_ones_codes() {
        let digits = GeneratorConfig::default_for(GeneratorType::OtpSms);
        let mut d = digits.to_draft();
        d.include_digits = false;
        d.include_upper_letters = true;
        let letters = GeneratorConfig::new(&d).unwrap();
        let mut ids = std::collections::HashSet::new();
        for i in 0..100 {
            // Hot swap: a fresh generator, likely at the address of the one just dropped.
            let config = if i % 2 == 0 { &digits } else { &letters };
            let g = Box::new(Generator::new(config));
            assert!(ids.insert(g.id), "ids are never reused");
            for _ in 0..3 {
                assert!(obeys(config, g.generate().unwrap().expose()));
            }
            let (owner, left, _) = cache_view();
            assert_eq!(owner, g.id);
            assert!(left > 0, "the dropped generator leaves codes behind");
        }
        // A clone is the same generator, and shares its codes.
        let g = Generator::new(&digits);
        let _ = g.generate().unwrap();
        let (_, left, _) = cache_view();
        let _ = g.clone().generate().unwrap();
        assert_eq!(cache_view().1, left - 8);
    }

    #[test]
    fn the_seeded_path_is_untouched_by_the_cache() {
        let g = Generator::new(&GeneratorConfig::default_for(GeneratorType::OtpSms));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut reference = seeded(9);
        let mut rng = seeded(9);
        let mut want = vec![0u8; g.length()];
        for _ in 0..100 {
            let _ = g.generate().unwrap(); // fills and drains the thread's cache
            let code = g.generate_with(&mut rng, now).unwrap();
            g.fill_with(&mut reference, &mut want).unwrap();
            assert_eq!(code.expose().as_bytes(), &want[..]);
            assert_eq!(code.expires_at(), Some(now + Duration::from_secs(300)));
        }
    }

    #[test]
    fn long_codes_are_drawn_directly() {
        let g = Generator::new(&GeneratorConfig::default_for(GeneratorType::AppSecret)); // 64
        let before = cache_view();
        let code = g.generate().unwrap();
        assert_eq!(code.len(), 64);
        assert_eq!(cache_view(), before, "a long code does not touch the cache");
    }

    /// Any configuration that passes validation.
    fn valid_config() -> impl Strategy<Value = GeneratorConfig> {
        (
            prop::sample::select(GeneratorType::ALL.to_vec()),
            1i64..=160,
            0u64..=2_678_400,
            any::<[bool; 4]>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_filter_map("invalid configuration", |(t, length, secs, c, ex, req)| {
                GeneratorConfig::new(&ConfigDraft {
                    length,
                    expiry: format!("{secs}s"),
                    include_lower_letters: c[0],
                    include_upper_letters: c[1],
                    include_digits: c[2],
                    include_symbols: c[3],
                    exclude_ambiguous: ex,
                    require_each_class: req,
                    ..ConfigDraft::new(t)
                })
                .ok()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn every_code_obeys_its_configuration(
            config in valid_config(),
            seed in any::<[u8; 32]>(),
            now_secs in 0u64..4_000_000_000,
        ) {
            let g = Generator::new(&config);
            let mut rng = CodeRng::from_seed(seed);
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
            for _ in 0..8 {
                let code = g.generate_with(&mut rng, now).unwrap();
                let s = code.expose();
                prop_assert_eq!(s.len(), config.length().get());
                prop_assert!(s.bytes().all(|b| config.alphabet().as_bytes().contains(&b)));
                if config.exclude_ambiguous() {
                    prop_assert!(!s.chars().any(|c| AMBIGUOUS.contains(c)));
                }
                if config.require_each_class() {
                    for class in config.classes().iter() {
                        prop_assert!(
                            s.bytes().any(|b| class.chars().as_bytes().contains(&b)),
                            "{:?} missing from a code", class
                        );
                    }
                }
                let expiry = config.expiry().duration();
                let want = if expiry.is_zero() { None } else { Some(now + expiry) };
                prop_assert_eq!(code.expires_at(), want);
                let mut buf = vec![0u8; config.length().get()];
                g.fill_with(&mut rng, &mut buf).unwrap();
                prop_assert!(buf.iter().all(|b| config.alphabet().as_bytes().contains(b)));
            }
            // Classes never included never appear.
            for class in CharClass::ALL {
                if !config.includes(class) {
                    let code = g.generate_with(&mut rng, now).unwrap();
                    prop_assert!(!code.expose().bytes()
                        .any(|b| class.chars().as_bytes().contains(&b)));
                }
            }
        }
    }
}
