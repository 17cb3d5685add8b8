//! `generate`: codes from an arbitrary proposal and a seeded [`CodeRng`].
//!
//! The input is a proposal built to be valid often, a seed, a time and how many codes. The
//! validator's answer is checked against the rules ([`rules::check_verdict`]); for a valid
//! configuration, codes are drawn through `generate_with`, `fill_with` and `fill_codes_with`
//! (with a partial last code) from the same seed, and every code must be exactly the
//! reference sampler's ([`Reference`]), which fits the configuration ([`fit::fits`]);
//! `expires_at == now + expiry`, `None` for 0; and the `_generate` response written from
//! them is JSON holding the same codes and timestamps. No failure shows a code.

use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Result, Unstructured};
use secretgen::api::wire;
use secretgen::service::Codes;
use secretgen::{CodeRng, Generator};

use crate::reference::Reference;
use crate::rules::{self, Proposal};
use crate::{adapter, fit, spec};

/// The latest `now` drawn: 31 days before the end of year 9999, the last instant an
/// RFC 3339 timestamp can write.
pub const MAX_NOW_SECS: u64 = 253_402_300_799 - 31 * 24 * 3600;

/// A configuration to validate and, when valid, generate from.
///
/// [`CodeRng`]: secretgen::CodeRng
#[derive(Debug)]
pub struct Input {
    /// The configuration, as an admin would write it.
    pub proposal: Proposal,
    /// The seed of the [`CodeRng`] codes are drawn from.
    pub seed: [u8; 32],
    /// "Now", since the Unix epoch.
    pub now: Duration,
    /// Codes drawn per path.
    pub codes: usize,
    /// Characters of one more, partial, code at the end of the bulk buffer.
    pub partial: usize,
}

impl<'a> Arbitrary<'a> for Input {
    /// Proposals are built to be valid often: any type, lengths mostly short, expiries in range (0 mostly for APP_SECRET) in several spellings. The bytes
    /// are read in the same order as when this target was written, so that the corpus and
    /// the regressions keep their meaning.
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let (number, _) = *u.choose(&spec::TYPES)?;
        // Once the spelling of the type (the draft held text); still drawn, so that the
        // bytes of every input keep their meaning. The generator_type target reads text.
        let _spelling = u.int_in_range(0u8..=3)?;
        let length = if u.ratio(3u8, 4)? {
            u.int_in_range(1i64..=40)?
        } else {
            u.int_in_range(1i64..=spec::MAX_LENGTH)?
        };
        let max = spec::MAX_EXPIRY.as_secs();
        let expiry = match u.int_in_range(0u8..=5)? {
            0 => "0s".to_owned(),
            1 => format!("{}s", u.int_in_range(1..=max)?),
            2 => format!(
                "{}.{:03}s",
                u.int_in_range(1..=max - 1)?,
                u.int_in_range(0..=999u32)?
            ),
            3 => {
                let nanos = u.int_in_range(0..=999_999_999u32)?;
                format!("{}.{nanos:09}s", u.int_in_range(1..=max - 1)?)
            }
            4 => format!("{:08}s", u.int_in_range(1..=max)?),
            _ if number == spec::APP_SECRET => "0s".to_owned(),
            _ => "300s".to_owned(),
        };
        let flags: [bool; 6] = u.arbitrary()?;
        let proposal = Proposal {
            length,
            expiry,
            include_lower_letters: flags[0],
            include_upper_letters: flags[1],
            include_digits: flags[2],
            include_symbols: flags[3],
            exclude_ambiguous: flags[4],
            require_each_class: flags[5],
            ..Proposal::new(number)
        };
        let seed = u.arbitrary()?;
        let now = Duration::new(
            u.int_in_range(0..=MAX_NOW_SECS)?,
            u.int_in_range(0..=999_999_999)?,
        );
        let codes = u.int_in_range(1..=8)?;
        let partial = u.int_in_range(0..=length as usize - 1)?;
        Ok(Input {
            proposal,
            seed,
            now,
            codes,
            partial,
        })
    }
}

/// Panics unless `got` is the reference's code `i` on `path`, naming neither code.
fn assert_same(path: &str, i: usize, got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{path}: code {i} is not the reference sampler's"
    );
}

/// Panics when generation breaks an invariant; see the module.
pub fn check(input: &Input) {
    let answer = adapter::validate(&input.proposal);
    rules::check_verdict(&input.proposal, &answer);
    let Ok(c) = answer else { return };
    let shape = adapter::shape(&c);
    let g = Generator::new(&c);
    let length = shape.length;
    assert_eq!(g.length(), length);
    assert_eq!(g.alphabet_len(), shape.alphabet().len());
    assert_eq!(g.entropy_bits().to_bits(), c.entropy_bits().to_bits());

    let mut reference = Reference::new(&shape, input.seed);
    let want: Vec<Vec<u8>> = (0..=input.codes).map(|_| reference.code()).collect();
    for code in &want {
        fit::assert_fits(&shape, code);
    }
    let (whole, next) = want.split_at(input.codes);

    // The owned path, with its expiry.
    let now = SystemTime::UNIX_EPOCH + input.now;
    let expires_at = (!c.expiry().is_never()).then(|| now + c.expiry().duration());
    assert_eq!(g.expires_at(now), expires_at);
    let mut rng = CodeRng::from_seed(input.seed);
    for (i, want) in whole.iter().enumerate() {
        let code = g
            .generate_with(&mut rng, now)
            .expect("a seeded CodeRng never fails");
        assert_eq!(code.len(), length);
        assert!(!code.is_empty());
        assert_eq!(code.expires_at(), expires_at);
        assert_same("generate_with", i, code.expose().as_bytes(), want);
        if length >= 16 {
            assert!(
                !format!("{code:?}").contains(code.expose()),
                "Debug shows the code"
            );
        }
    }

    // One code at a time into a buffer.
    let mut rng = CodeRng::from_seed(input.seed);
    let mut buf = vec![0u8; length];
    for (i, want) in whole.iter().enumerate() {
        g.fill_with(&mut rng, &mut buf)
            .expect("a seeded CodeRng never fails");
        assert_same("fill_with", i, &buf, want);
    }

    // In bulk, with a partial code at the end: the start of the next whole code.
    let mut rng = CodeRng::from_seed(input.seed);
    let mut bulk = vec![0u8; input.codes * length + input.partial];
    g.fill_codes_with(&mut rng, &mut bulk)
        .expect("a seeded CodeRng never fails");
    let (codes, rest) = bulk.split_at(input.codes * length);
    for (i, (got, want)) in codes.chunks_exact(length).zip(whole).enumerate() {
        assert_same("fill_codes_with", i, got, want);
    }
    assert_same(
        "fill_codes_with, partial",
        input.codes,
        rest,
        &next[0][..input.partial],
    );

    // The `_generate` response written from these codes.
    let t = c.generator_type();
    let body = wire::generate_response(&Codes::from_parts(t, 7, length, expires_at, codes));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("the response is JSON");
    assert_eq!(v["generatorType"], t.full_name());
    let listed = v["codes"].as_array().expect("a list of codes");
    assert_eq!(listed.len(), input.codes);
    for (i, (item, want)) in listed.iter().zip(whole).enumerate() {
        let got = item["code"].as_str().map(str::as_bytes).unwrap_or_default();
        assert_same("_generate response", i, got, want);
        match expires_at {
            None => assert!(item.get("expiresAt").is_none()),
            Some(at) => {
                let text = item["expiresAt"].as_str().expect("expiresAt");
                assert_eq!(humantime::parse_rfc3339(text).ok(), Some(at), "{text}");
            }
        }
    }
}
