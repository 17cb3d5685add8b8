//! The generator's tests: its table, the bulk and cached paths against single draws, the
//! cache's ownership and zeroing. Sampling against its definition (the reference sampler)
//! and the properties of every valid configuration are checked once, through the oracle, in
//! `tests/rules.rs` and the fuzz targets.

use std::time::{Duration, SystemTime};

use super::cache::with_thread_state;
use super::*;
use crate::config::CodeLength;
use crate::generator_type::GeneratorType;

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
    (draft.length, draft.require_each_class) = (CodeLength::new(4), true);
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
    d.length = CodeLength::new(1024);
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
/// The cache's tests need it in here (they read the thread's cache); everywhere else the
/// oracle's fit check (`crates/oracle/src/fit.rs`) is the one, and the engine's unit tests
/// cannot use it: the oracle depends on the engine, and a dev-dependency on it would give
/// these tests a second copy of the engine's types.
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
    d.length = CodeLength::new(20);
    d.include_digits = false;
    d.include_symbols = true;
    d.require_each_class = true;
    let classes = GeneratorConfig::new(&d).unwrap();
    let mut d = classes.to_draft();
    d.length = CodeLength::new(32); // the longest cached length
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

#[test]
fn the_thread_generator_is_created_once_per_thread() {
    fn drain16(rng: &mut CodeRng) -> Result<Vec<u8>, EntropyError> {
        let bytes = rng.available()?[..16].to_vec();
        rng.consume(16);
        Ok(bytes)
    }
    let a = with_thread_rng(drain16).unwrap();
    let b = with_thread_rng(drain16).unwrap();
    assert_ne!(a, b, "the second call continues the stream");
    let other = std::thread::spawn(|| with_thread_rng(drain16).unwrap())
        .join()
        .unwrap();
    assert_ne!(a, other);
}

/// The cached paths (`generate` and `fill`, served from the thread's cache, which
/// `fill_codes_with` refills) give, in order, exactly the codes of single draws from the same
/// seed: the cache neither skips, repeats nor reorders a code, across refills, for short and
/// long codes, with and without `requireEachClass`.
#[test]
fn cached_codes_are_the_single_draws_of_the_same_seed() {
    let draft = |t: GeneratorType, length: i64, classes: [bool; 4], require: bool| {
        let mut d = GeneratorConfig::default_for(t).to_draft();
        d.length = CodeLength::new(length);
        [
            d.include_lower_letters,
            d.include_upper_letters,
            d.include_digits,
            d.include_symbols,
        ] = classes;
        d.require_each_class = require;
        // Bypass the entropy floor: this compares paths, not policy.
        GeneratorConfig::unchecked_for_tests(&d)
    };
    let configs = [
        GeneratorConfig::default_for(GeneratorType::OtpSms), // 8 digits: 32 codes a refill
        draft(GeneratorType::AppSecret, 1, [true, true, true, true], false), // 256 a refill
        draft(GeneratorType::InitCode, 6, [true, true, true, false], true),
        draft(GeneratorType::InitCode, 20, [true, true, false, true], true), // 240 of 256 bytes
        draft(GeneratorType::AppSecret, 32, [true, true, true, true], true), // longest cached
        draft(
            GeneratorType::AppSecret,
            33,
            [true, true, true, false],
            false,
        ), // drawn directly
        GeneratorConfig::default_for(GeneratorType::AppSecret),              // 64, drawn directly
    ];
    for (i, config) in configs.iter().enumerate() {
        let g = Generator::new(config);
        let len = g.length();
        // At least four refills of the cache.
        let codes = (4 * (256 / len).max(1) + 3).max(100);
        let seed = [i as u8 + 40; 32];
        seed_this_thread(seed);
        let mut reference = CodeRng::from_seed(seed);
        let now = SystemTime::UNIX_EPOCH;
        let mut want = vec![0u8; len];
        let mut got = vec![0u8; len];
        for k in 0..codes {
            if k % 3 == 2 {
                g.fill(&mut got).unwrap();
                g.fill_with(&mut reference, &mut want).unwrap();
                assert!(got == want, "config {i}, code {k}: fill");
            } else {
                let code = g.generate().unwrap();
                let single = g.generate_with(&mut reference, now).unwrap();
                assert!(code.expose() == single.expose(), "config {i}, code {k}");
            }
        }
    }
}
