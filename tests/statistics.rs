//! Statistical tests of uniformity, with fixed seeds.
//!
//! Each test draws codes from a reproducible [`CodeRng`] and applies Pearson's chi-square test
//! per position and over disjoint adjacent pairs; with `requireEachClass`, over the class
//! patterns of whole codes and, per position and class, over the characters of that class.
//! Every code drawn must also fit its configuration (`secretgen_oracle::fit`). The threshold
//! is the chi-square quantile at p = 1e-6 (Wilson-Hilferty), so a correct generator passes
//! with overwhelming probability and, the seeds being fixed, the outcome never changes between
//! runs. The same checks are run against known-bad samplers (ZITADEL's `b % (N - 1)`, plain
//! `b % N` modulo bias, "place one of each class and shuffle", a bias inside each class) to
//! show that they fail: these tests can fail.
//!
//! The same checks run on the output of the real `secretgen generate` command with several
//! threads (`--threads 3`): its workers are keyed from the operating system, so those samples
//! differ between runs. Their thresholds are the same quantiles: a correct command fails one
//! of these checks with probability about 1e-6 each (below 1e-4 for the whole suite).

mod common;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use secretgen::{CodeRng, Generator, GeneratorConfig, GeneratorType};
use secretgen_oracle::adapter;
use secretgen_oracle::fit::assert_fits;
use secretgen_oracle::rules::Proposal;
use secretgen_oracle::spec::{CLASSES, Shape};

use common::cli::{output, stdout};

/// Upper tail quantile of chi-square with `df` degrees of freedom at p = 1e-6.
fn chi_square_limit(df: usize) -> f64 {
    const Z: f64 = 4.753_424; // standard normal quantile at 1 - 1e-6
    let df = df as f64;
    let h = 2.0 / (9.0 * df);
    df * (1.0 - h + Z * h.sqrt()).powi(3)
}

fn chi_square(observed: &[u64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum()
}

/// What a sample of codes looked like.
struct Verdict {
    /// Chi-square statistic and its limit, per position.
    positions: Vec<(f64, f64)>,
    /// Chi-square statistic and its limit over disjoint adjacent pairs.
    pairs: (f64, f64),
    /// Alphabet characters never seen.
    missing: Vec<char>,
}

impl Verdict {
    fn uniform(&self) -> bool {
        self.positions.iter().all(|(s, l)| s < l)
            && self.pairs.0 < self.pairs.1
            && self.missing.is_empty()
    }

    fn assert_uniform(&self, what: &str) {
        assert!(
            self.missing.is_empty(),
            "{what}: never drew {:?}",
            self.missing
        );
        for (pos, (stat, limit)) in self.positions.iter().enumerate() {
            assert!(
                stat < limit,
                "{what}: position {pos}: chi-square {stat:.1} >= {limit:.1}"
            );
        }
        let (stat, limit) = self.pairs;
        assert!(
            stat < limit,
            "{what}: pairs: chi-square {stat:.1} >= {limit:.1}"
        );
    }
}

/// Draws `codes` codes of `length` with `draw` and tests them against a uniform distribution
/// over `alphabet`; every character drawn must be in it.
fn examine(
    alphabet: &[u8],
    length: usize,
    codes: usize,
    mut draw: impl FnMut(&mut [u8]),
) -> Verdict {
    let k = alphabet.len();
    let mut index = [usize::MAX; 256];
    for (i, &c) in alphabet.iter().enumerate() {
        index[usize::from(c)] = i;
    }
    let mut per_position = vec![vec![0u64; k]; length];
    let mut pairs = vec![0u64; k * k];
    let mut seen = vec![false; k];
    let mut code = vec![0u8; length];
    let mut idx = vec![0usize; length];
    for _ in 0..codes {
        draw(&mut code);
        for (pos, &c) in code.iter().enumerate() {
            let i = index[usize::from(c)];
            assert_ne!(i, usize::MAX, "a character outside the alphabet");
            per_position[pos][i] += 1;
            seen[i] = true;
            idx[pos] = i;
        }
        for pair in idx.chunks_exact(2) {
            pairs[pair[0] * k + pair[1]] += 1;
        }
    }
    let uniform = |n: u64, cells: usize| vec![n as f64 / cells as f64; cells];
    let positions = per_position
        .iter()
        .map(|counts| {
            let stat = chi_square(counts, &uniform(counts.iter().sum(), k));
            (stat, chi_square_limit(k - 1))
        })
        .collect();
    let pair_stat = chi_square(&pairs, &uniform(pairs.iter().sum(), k * k));
    Verdict {
        positions,
        pairs: (pair_stat, chi_square_limit(k * k - 1)),
        missing: alphabet
            .iter()
            .zip(&seen)
            .filter(|(_, s)| !**s)
            .map(|(&c, _)| c as char)
            .collect(),
    }
}

/// A PASSWORDLESS_INIT_CODE configuration (floor 19.9 bits) of these classes.
fn config(classes: [bool; 4], length: i64, exclude_ambiguous: bool) -> GeneratorConfig {
    adapter::config(&Proposal {
        length,
        expiry: "3600s".into(),
        include_lower_letters: classes[0],
        include_upper_letters: classes[1],
        include_digits: classes[2],
        include_symbols: classes[3],
        exclude_ambiguous,
        ..Proposal::new(GeneratorType::PasswordlessInitCode.number())
    })
}

/// Runs the checks on the real generator for `config`, from a fixed seed; every code drawn
/// must also fit the configuration.
fn examine_generator(config: &GeneratorConfig, codes: usize, seed: u8) -> Verdict {
    let generator = Generator::new(config);
    let shape = adapter::shape(config);
    let mut rng = CodeRng::from_seed([seed; 32]);
    examine(&shape.alphabet(), shape.length, codes, |out| {
        generator.fill_with(&mut rng, out).unwrap();
        assert_fits(&shape, out);
    })
}

/// Enough codes that the rarest pair cell expects about 25 draws.
fn codes_for(alphabet_len: usize, length: usize) -> usize {
    (25 * alphabet_len * alphabet_len / (length / 2)).max(20_000)
}

#[test]
fn digits_only_codes_contain_the_9() {
    // ZITADEL drew `b % (len - 1)`, so its digit codes never held a 9. Ours hold it at every
    // position, as often as any other digit.
    let config = GeneratorConfig::default_for(GeneratorType::OtpSms);
    let generator = Generator::new(&config);
    let mut rng = CodeRng::from_seed([9; 32]);
    let mut nines = [0u32; 8];
    let codes = 100_000;
    let mut code = [0u8; 8];
    for _ in 0..codes {
        generator.fill_with(&mut rng, &mut code).unwrap();
        for (pos, &c) in code.iter().enumerate() {
            nines[pos] += u32::from(c == b'9');
        }
    }
    for (pos, &n) in nines.iter().enumerate() {
        // Binomial(100000, 0.1): mean 10000, sd 95; 6 sd either side, a false failure with
        // probability 2e-9 per position.
        assert!(
            (9430..=10570).contains(&n),
            "position {pos}: {n} nines in {codes}"
        );
    }
    examine_generator(&config, codes, 10).assert_uniform("OTP_SMS");
}

#[test]
fn ten_digits_are_uniform() {
    let c = config([false, false, true, false], 8, false);
    examine_generator(&c, codes_for(10, 8), 1).assert_uniform("digits");
}

#[test]
fn thirty_six_upper_and_digits_are_uniform() {
    let c = config([false, true, true, false], 8, false);
    assert_eq!(c.alphabet().len(), 36);
    examine_generator(&c, codes_for(36, 8), 2).assert_uniform("upper+digits");
}

#[test]
fn sixty_two_alphanumerics_are_uniform() {
    let c = config([true, true, true, false], 8, false);
    assert_eq!(c.alphabet().len(), 62);
    examine_generator(&c, codes_for(62, 8), 3).assert_uniform("alphanumeric");
}

#[test]
fn eighty_nine_characters_are_uniform() {
    let c = config([true, true, true, true], 8, false);
    assert_eq!(c.alphabet().len(), 89);
    examine_generator(&c, codes_for(89, 8), 4).assert_uniform("all classes");
}

#[test]
fn exclude_ambiguous_is_uniform_over_what_is_left() {
    let c = config([true, true, true, true], 8, true);
    assert_eq!(c.alphabet().len(), 82);
    let verdict = examine_generator(&c, codes_for(82, 8), 5);
    verdict.assert_uniform("all classes, unambiguous");
    let digits = config([false, false, true, false], 8, true);
    assert_eq!(digits.alphabet().as_str(), "23456789");
    let verdict = examine_generator(&digits, codes_for(8, 8), 6);
    verdict.assert_uniform("digits, unambiguous");
}

#[test]
fn the_checks_catch_zitadels_bug() {
    // `b % (N - 1)` over the ten digits: the 9 never appears.
    let digits = b"0123456789";
    let mut rng = StdRng::seed_from_u64(11);
    let verdict = examine(digits, 8, 20_000, |out| {
        for c in out.iter_mut() {
            *c = digits[usize::from(rng.random::<u8>()) % (digits.len() - 1)];
        }
    });
    assert!(!verdict.uniform());
    assert_eq!(verdict.missing, ['9']);
}

#[test]
fn the_checks_catch_modulo_bias() {
    // `b % 62` without rejection: eight characters get 5 bytes of 256, the rest 4.
    let c = config([true, true, true, false], 8, false);
    let alphabet = c.alphabet().as_bytes().to_vec();
    let mut rng = StdRng::seed_from_u64(12);
    let verdict = examine(&alphabet, 8, codes_for(62, 8), |out| {
        for c in out.iter_mut() {
            *c = alphabet[usize::from(rng.random::<u8>()) % alphabet.len()];
        }
    });
    assert!(verdict.missing.is_empty());
    assert!(
        verdict.positions.iter().all(|(s, l)| s > l),
        "{:?}",
        verdict.positions
    );
}

/// Six characters of every class, each in every code: 26 + 26 + 10 + 27 characters.
fn require_each_class_shape() -> Shape {
    Shape {
        length: 6,
        classes: [true; 4],
        exclude_ambiguous: false,
        require_each_class: true,
    }
}

/// For each byte, its class (index among the shape's included classes) and its index within
/// that class; `None` outside the alphabet.
fn classify(shape: &Shape) -> [Option<(usize, usize)>; 256] {
    let mut table = [None; 256];
    for (k, chars) in shape.class_chars().iter().enumerate() {
        for (i, &c) in chars.iter().enumerate() {
            table[usize::from(c)] = Some((k, i));
        }
    }
    table
}

/// Chi-square of class patterns of length-6 codes holding every class, against the exact
/// distribution: a pattern (digit `i` in base 4 is the class of character `i`) has the
/// probability of the product of its classes' sizes over the number of valid codes.
fn examine_patterns(codes: usize, mut draw: impl FnMut(&mut [u8; 6])) -> (f64, f64) {
    let shape = require_each_class_shape();
    let classes = classify(&shape);
    let sizes: Vec<f64> = shape.class_chars().iter().map(|c| c.len() as f64).collect();
    let cells = 4usize.pow(6);
    let covers = |p: usize| (0..6).fold(0u8, |m, i| m | 1 << (p / 4usize.pow(i) % 4)) == 0b1111;
    let weight = |p: usize| {
        (0..6)
            .map(|i| sizes[p / 4usize.pow(i) % 4])
            .product::<f64>()
    };
    let valid: Vec<usize> = (0..cells).filter(|&p| covers(p)).collect();
    let total: f64 = valid.iter().map(|&p| weight(p)).sum();
    let mut counts = vec![0u64; cells];
    let mut code = [0u8; 6];
    for _ in 0..codes {
        draw(&mut code);
        let pattern = code.iter().rev().fold(0, |acc, &c| {
            let (k, _) = classes[usize::from(c)].expect("a character of the alphabet");
            acc * 4 + k
        });
        counts[pattern] += 1;
    }
    let stray: u64 = (0..cells).filter(|&p| !covers(p)).map(|p| counts[p]).sum();
    assert_eq!(stray, 0, "codes without every class");
    let observed: Vec<u64> = valid.iter().map(|&p| counts[p]).collect();
    let expected: Vec<f64> = valid
        .iter()
        .map(|&p| weight(p) / total * codes as f64)
        .collect();
    (
        chi_square(&observed, &expected),
        chi_square_limit(valid.len() - 1),
    )
}

/// One test of [`examine_within_classes`]: at `position`, the characters of class `class`.
#[derive(Debug)]
struct WithinClass {
    position: usize,
    class: &'static str,
    stat: f64,
    limit: f64,
}

/// Per position and included class: chi-square of the characters of that class seen at that
/// position against a uniform distribution over the class (given that a code holds a class
/// at a position, which of its characters stands there is uniform), with its limit.
fn examine_within_classes(
    shape: &Shape,
    codes: usize,
    mut draw: impl FnMut(&mut [u8]),
) -> Vec<WithinClass> {
    let classes = classify(shape);
    let chars = shape.class_chars();
    let names: Vec<&'static str> = CLASSES
        .iter()
        .zip(shape.classes)
        .filter(|(_, on)| *on)
        .map(|((field, _), _)| *field)
        .collect();
    let mut counts: Vec<Vec<Vec<u64>>> = (0..shape.length)
        .map(|_| chars.iter().map(|c| vec![0; c.len()]).collect())
        .collect();
    let mut code = vec![0u8; shape.length];
    for _ in 0..codes {
        draw(&mut code);
        for (position, &c) in code.iter().enumerate() {
            let (k, i) = classes[usize::from(c)].expect("a character of the alphabet");
            counts[position][k][i] += 1;
        }
    }
    let mut tests = Vec::new();
    for (position, per_class) in counts.iter().enumerate() {
        for (k, observed) in per_class.iter().enumerate() {
            let n: u64 = observed.iter().sum();
            let expected = vec![n as f64 / observed.len() as f64; observed.len()];
            tests.push(WithinClass {
                position,
                class: names[k],
                stat: chi_square(observed, &expected),
                limit: chi_square_limit(observed.len() - 1),
            });
        }
    }
    tests
}

fn require_each_class_config() -> GeneratorConfig {
    let mut p = Proposal::of(&config([true, true, true, true], 6, false));
    p.require_each_class = true;
    adapter::config(&p)
}

#[test]
fn require_each_class_gives_each_class_pattern_its_share() {
    let config = require_each_class_config();
    let shape = adapter::shape(&config);
    let generator = Generator::new(&config);
    let mut rng = CodeRng::from_seed([13; 32]);
    let (stat, limit) = examine_patterns(300_000, |out| {
        generator.fill_with(&mut rng, out).unwrap();
        assert_fits(&shape, out);
    });
    assert!(stat < limit, "chi-square {stat:.1} >= {limit:.1}");
}

#[test]
fn require_each_class_is_uniform_within_each_class_at_every_position() {
    // 6 positions x 4 classes = 24 tests at p = 1e-6 each: a correct generator fails one
    // with probability below 2.4e-5 (and, the seed being fixed, never between runs). The
    // rarest cells (one symbol at one position) expect about 1,190 draws.
    let config = require_each_class_config();
    let shape = adapter::shape(&config);
    assert_eq!(shape, require_each_class_shape());
    let generator = Generator::new(&config);
    let mut rng = CodeRng::from_seed([14; 32]);
    let tests = examine_within_classes(&shape, 120_000, |out| {
        generator.fill_with(&mut rng, out).unwrap();
        assert_fits(&shape, out);
    });
    assert_eq!(tests.len(), 24);
    for t in tests {
        assert!(
            t.stat < t.limit,
            "position {}, {}: chi-square {:.1} >= {:.1}",
            t.position,
            t.class,
            t.stat,
            t.limit
        );
    }
}

#[test]
fn the_class_check_catches_a_bias_within_a_class() {
    // Right class patterns (they come from the real generator), but inside each class the
    // ZITADEL bug: the character of index `i` becomes `i % (size - 1)`, so each class's last
    // character never appears and its first appears twice as often.
    let config = require_each_class_config();
    let shape = adapter::shape(&config);
    let classes = classify(&shape);
    let chars = shape.class_chars();
    let generator = Generator::new(&config);
    let mut rng = CodeRng::from_seed([16; 32]);
    let tests = examine_within_classes(&shape, 120_000, |out| {
        generator.fill_with(&mut rng, out).unwrap();
        for c in out.iter_mut() {
            let (k, i) = classes[usize::from(*c)].unwrap();
            *c = chars[k][i % (chars[k].len() - 1)];
        }
    });
    assert!(tests.iter().all(|t| t.stat > t.limit), "{tests:?}");
}

#[test]
fn the_pattern_check_catches_place_one_of_each_and_shuffle() {
    // The common shortcut: one character of each class, two from the whole alphabet, then a
    // shuffle. Every code qualifies, but codes with a class three times are too rare.
    let shape = require_each_class_shape();
    let (chars, alphabet) = (shape.class_chars(), shape.alphabet());
    let mut rng = StdRng::seed_from_u64(15);
    let (stat, limit) = examine_patterns(300_000, |out| {
        for (slot, class) in out.iter_mut().zip(&chars) {
            *slot = *class.choose(&mut rng).unwrap();
        }
        out[4] = *alphabet.choose(&mut rng).unwrap();
        out[5] = *alphabet.choose(&mut rng).unwrap();
        out.shuffle(&mut rng);
    });
    assert!(
        stat > limit,
        "shortcut not detected: {stat:.1} < {limit:.1}"
    );
}

/// The codes of `secretgen generate ARGS --threads 3 --count COUNT`, in the order printed.
/// Every line must fit `config`, which the arguments give.
fn command_codes(config: &GeneratorConfig, args: &[&str], count: usize) -> Vec<Vec<u8>> {
    let count_arg = count.to_string();
    let mut all = vec!["generate"];
    all.extend_from_slice(args);
    all.extend(["--threads", "3", "--count", &count_arg]);
    let text = stdout(&output(all));
    let shape = adapter::shape(config);
    let codes: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    assert_eq!(codes.len(), count);
    for code in &codes {
        assert_fits(&shape, code);
    }
    codes
}

/// The arguments that give `config` to the command (a PASSWORDLESS_INIT_CODE configuration of
/// [`config`]'s kind).
fn command_args(config: &GeneratorConfig) -> Vec<String> {
    let mut args = vec![
        "PASSWORDLESS_INIT_CODE".to_owned(),
        "--length".to_owned(),
        config.length().get().to_string(),
    ];
    for (class, flag) in [
        (secretgen::CharClass::Lower, "--lower"),
        (secretgen::CharClass::Upper, "--upper"),
        (secretgen::CharClass::Digits, "--digits"),
        (secretgen::CharClass::Symbols, "--symbols"),
    ] {
        if config.includes(class) {
            args.push(flag.to_owned());
        }
    }
    if config.exclude_ambiguous() {
        args.push("--exclude-ambiguous".to_owned());
    }
    if config.require_each_class() {
        args.push("--require-each-class".to_owned());
    }
    args
}

/// [`command_codes`] for `config`.
fn threaded_codes(config: &GeneratorConfig, count: usize) -> Vec<Vec<u8>> {
    let args = command_args(config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command_codes(config, &args, count)
}

/// A draw for [`examine`] and its kin that hands out `codes` in turn.
fn replay(codes: &[Vec<u8>]) -> impl FnMut(&mut [u8]) + '_ {
    let mut next = codes.iter();
    move |out| out.copy_from_slice(next.next().expect("enough codes"))
}

#[test]
fn threaded_command_output_is_uniform() {
    // 200,000 codes: 28 chunks of 7,281 lines (alnum8), shared among three workers.
    for (classes, exclude_ambiguous) in [
        ([false, false, true, false], false),
        ([true, true, true, false], false),
        ([true, true, true, true], true),
    ] {
        let c = config(classes, 8, exclude_ambiguous);
        let n = 200_000;
        let codes = threaded_codes(&c, n);
        let alphabet = c.alphabet().as_bytes();
        examine(alphabet, 8, n, replay(&codes)).assert_uniform(c.alphabet().as_str());
        // Consecutive codes are independent, across chunks and workers too: the first
        // characters of two lines in turn, as a code of two.
        let firsts: Vec<Vec<u8>> = codes
            .chunks_exact(2)
            .map(|p| vec![p[0][0], p[1][0]])
            .collect();
        examine(alphabet, 2, n / 2, replay(&firsts))
            .assert_uniform(&format!("{}: consecutive codes", c.alphabet().as_str()));
    }
}

#[test]
fn threaded_command_requires_each_class_exactly() {
    let config = require_each_class_config();
    let shape = adapter::shape(&config);
    let codes = threaded_codes(&config, 300_000);
    let mut patterns = replay(&codes);
    let (stat, limit) = examine_patterns(codes.len(), |out| patterns(out));
    assert!(stat < limit, "patterns: chi-square {stat:.1} >= {limit:.1}");
    for t in examine_within_classes(&shape, 120_000, replay(&codes)) {
        assert!(
            t.stat < t.limit,
            "position {}, {}: chi-square {:.1} >= {:.1}",
            t.position,
            t.class,
            t.stat,
            t.limit
        );
    }
}
