//! A configuration compiled for sampling, and the codes it makes.

use std::fmt;
use std::time::{Duration, SystemTime};

use zeroize::Zeroize;

use crate::config::{CodeLength, GeneratorConfig};
use crate::rng::{CodeRng, EntropyError, with_thread_rng};

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
}

/// Random bytes mapped at a time, without a branch, by the sampling loop (a power of two).
const BLOCK: usize = 8;

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
    /// behind), so a code may expire up to one clock tick early, never late.
    ///
    /// [expiry]: GeneratorConfig::expiry
    pub fn generate(&self) -> Result<Code, EntropyError> {
        let now = if self.expiry.is_zero() {
            SystemTime::UNIX_EPOCH // unused: the code never expires
        } else {
            coarse_now()
        };
        let mut code = Code::zeroed(self.length, self.expires_at(now));
        with_thread_rng(|rng| self.fill_with(rng, code.bytes_mut()))?;
        Ok(code)
    }

    /// A new code from `rng`, made at `now`.
    pub fn generate_with(&self, rng: &mut CodeRng, now: SystemTime) -> Result<Code, EntropyError> {
        let mut code = Code::zeroed(self.length, self.expires_at(now));
        self.fill_with(rng, code.bytes_mut())?;
        Ok(code)
    }

    /// Writes one code into `out` with this thread's generator; allocates nothing.
    /// `out` must be exactly [`Generator::length`] bytes long.
    pub fn fill(&self, out: &mut [u8]) -> Result<(), FillError> {
        if out.len() != self.length {
            return Err(FillError::Length {
                expected: self.length,
                got: out.len(),
            });
        }
        with_thread_rng(|rng| self.fill_with(rng, out)).map_err(FillError::Entropy)
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
    /// While at least [`BLOCK`] characters are missing it maps [`BLOCK`] bytes at a time
    /// without a branch: each character is written at the next free place, which advances
    /// only when the byte was accepted, so a rejected byte's 0 is overwritten by the next
    /// accepted one (or by a later block). Every accepted byte of a block is used, so no byte is read that the
    /// byte-by-byte loop would not have read.
    #[inline]
    fn map_bytes(&self, bytes: &[u8], out: &mut [u8]) -> (usize, usize) {
        let (mut read, mut written) = (0, 0);
        while out.len() - written >= BLOCK {
            let Some(block) = bytes[read..].first_chunk::<BLOCK>() else {
                break;
            };
            let dst: &mut [u8; BLOCK] = (&mut out[written..written + BLOCK])
                .try_into()
                .expect("a block fits");
            let mut k = 0;
            for &b in block {
                let c = self.table[usize::from(b)];
                dst[k & (BLOCK - 1)] = c;
                k += usize::from(c != 0);
            }
            read += BLOCK;
            written += k;
        }
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

/// The current time from a clock that is cheap to read, at most a few milliseconds behind.
#[cfg(target_os = "linux")]
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
pub struct Code {
    len: u16,
    inline: [u8; INLINE],
    /// The characters of a code longer than [`INLINE`].
    spilled: Option<Box<[u8]>>,
    expires_at: Option<SystemTime>,
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
        // Bytes past the code's length were never written.
        self.bytes_mut().zeroize();
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
                        generator_type: "APP_SECRET".into(),
                        length,
                        expiry: "0s".into(),
                        include_lower_letters: classes & 1 != 0,
                        include_upper_letters: classes & 2 != 0,
                        include_digits: classes & 4 != 0,
                        include_symbols: classes & 8 != 0,
                        exclude_ambiguous: exclude,
                        require_each_class: false,
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
                    generator_type: t.short_name().to_owned(),
                    length,
                    expiry: format!("{secs}s"),
                    include_lower_letters: c[0],
                    include_upper_letters: c[1],
                    include_digits: c[2],
                    include_symbols: c[3],
                    exclude_ambiguous: ex,
                    require_each_class: req,
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
