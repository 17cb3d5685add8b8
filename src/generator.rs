//! A configuration compiled for sampling, and the codes it makes.

use std::fmt;
use std::time::{Duration, SystemTime};

use zeroize::Zeroize;

use crate::config::GeneratorConfig;
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
            let class = config.alphabet().class_of(c).expect("characters have a class");
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
    /// [expiry]: GeneratorConfig::expiry
    pub fn generate(&self) -> Result<Code, EntropyError> {
        with_thread_rng(|rng| self.generate_with(rng, SystemTime::now()))
    }

    /// A new code from `rng`, made at `now`.
    pub fn generate_with(&self, rng: &mut CodeRng, now: SystemTime) -> Result<Code, EntropyError> {
        let mut value = CodeBytes::zeroed(self.length);
        self.fill_with(rng, value.as_mut())?;
        Ok(Code {
            value,
            expires_at: self.expires_at(now),
        })
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

    #[inline]
    fn fill_uniform(&self, rng: &mut CodeRng, out: &mut [u8]) -> Result<(), EntropyError> {
        let mut filled = 0;
        while filled < out.len() {
            let bytes = rng.available()?;
            let mut read = 0;
            for &b in bytes {
                read += 1;
                let c = self.table[usize::from(b)];
                if c != 0 {
                    out[filled] = c;
                    filled += 1;
                    if filled == out.len() {
                        break;
                    }
                }
            }
            rng.consume(read);
        }
        Ok(())
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
    /// The operating system gave no randomness.
    Entropy(EntropyError),
}

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillError::Length { expected, got } => {
                write!(f, "buffer of {got} bytes for a code of {expected} characters")
            }
            FillError::Entropy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FillError {}

/// Codes up to this many characters are held inline, without a heap allocation.
const INLINE: usize = 64;

/// A code's characters: inline when short (every default fits), on the heap otherwise.
/// Either way zeroed when dropped.
#[derive(Clone)]
enum CodeBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl CodeBytes {
    fn zeroed(len: usize) -> CodeBytes {
        if len <= INLINE {
            CodeBytes::Inline {
                len: len as u8,
                bytes: [0; INLINE],
            }
        } else {
            CodeBytes::Heap(vec![0; len].into_boxed_slice())
        }
    }

    fn as_ref(&self) -> &[u8] {
        match self {
            CodeBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            CodeBytes::Heap(b) => b,
        }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        match self {
            CodeBytes::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            CodeBytes::Heap(b) => b,
        }
    }
}

impl Drop for CodeBytes {
    fn drop(&mut self) {
        match self {
            CodeBytes::Inline { bytes, .. } => bytes.zeroize(),
            CodeBytes::Heap(b) => b.zeroize(),
        }
    }
}

/// A generated code and when it expires.
///
/// It is a secret: `Debug` shows its length, never its characters, it has no `Display`, and
/// its memory is zeroed when it is dropped. Read it with [`Code::expose`].
#[derive(Clone)]
pub struct Code {
    value: CodeBytes,
    expires_at: Option<SystemTime>,
}

impl Code {
    /// The characters of the code. Every alphabet is printable ASCII.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(self.value.as_ref()).expect("codes are ASCII")
    }

    /// When the code stops being valid; `None` when it never expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Characters in the code.
    pub fn len(&self) -> usize {
        self.value.as_ref().len()
    }

    /// Always false: a code has at least one character.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("value", &format_args!("<{} characters, redacted>", self.len()))
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
