//! Property tests driven by the oracles of `secretgen-oracle`, the same ones the fuzz targets
//! and the fuzz replay use: the validator against SPEC section 4's rules, and every code path
//! against the reference sampler and the fit check. Then a few fixed cases that show each
//! oracle can fail.

use std::time::Duration;

use proptest::prelude::*;
use secretgen::Generator;
use secretgen_oracle::fit::{Misfit, fits};
use secretgen_oracle::rules::{self, Proposal, TypeFault};
use secretgen_oracle::spec::{self, Shape};
use secretgen_oracle::targets::{self, Text, generate};
use secretgen_oracle::{adapter, reference::Reference};

/// A generator type as written, valid or not: numbers 0 to 9 (with leading zeros), short
/// and full names, UNSPECIFIED, nonsense, any text.
fn any_type() -> impl Strategy<Value = String> {
    let names = spec::TYPES.map(|(_, short)| short).to_vec();
    prop_oneof![
        (0u8..=9, 0usize..=2).prop_map(|(n, zeros)| format!("{}{n}", "0".repeat(zeros))),
        prop::sample::select(names.clone()).prop_map(str::to_ascii_lowercase),
        prop::sample::select(names).prop_map(|s| format!("{}{s}", spec::TYPE_PREFIX)),
        Just("unspecified".to_owned()),
        Just("SECRET_GENERATOR_TYPE_UNSPECIFIED".to_owned()),
        Just("bogus".to_owned()),
        Just(String::new()),
        "[0-9a-zA-Z_]{0,40}",
        "\\PC{0,12}",
    ]
}

/// An expiry as written, valid or not: whole seconds around both limits, fractions (under a
/// second among them), negative, other units, not a duration.
fn any_expiry() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..3_000_000).prop_map(|s| format!("{s}s")),
        (2_678_300u64..2_678_500).prop_map(|s| format!("{s}s")),
        (0u64..100, 0u32..1000).prop_map(|(s, ms)| format!("{s}.{ms:03}s")),
        (0u32..1_000_000_000).prop_map(|ns| format!("0.{ns:09}s")),
        (0u64..100).prop_map(|s| format!("-{s}s")),
        Just("1h".to_owned()),
        Just("0.1234567890s".to_owned()),
        Just(String::new()),
    ]
}

/// A proposal of these fields; `f` holds the four classes, `excludeAmbiguous` and
/// `requireEachClass`.
fn build(generator_type: u8, length: i64, expiry: String, f: [bool; 6]) -> Proposal {
    Proposal {
        length,
        expiry,
        include_lower_letters: f[0],
        include_upper_letters: f[1],
        include_digits: f[2],
        include_symbols: f[3],
        exclude_ambiguous: f[4],
        require_each_class: f[5],
        ..Proposal::new(generator_type)
    }
}

/// `p` with `fields` unreadable, each at its zero value, as a transport leaves them.
fn unread(mut p: Proposal, fields: Vec<&'static str>) -> Proposal {
    let zero = Proposal::new(p.generator_type);
    for &field in &fields {
        match field {
            "length" => p.length = zero.length,
            "expiry" => p.expiry = zero.expiry.clone(),
            "includeLowerLetters" => p.include_lower_letters = false,
            "includeUpperLetters" => p.include_upper_letters = false,
            "includeDigits" => p.include_digits = false,
            "includeSymbols" => p.include_symbols = false,
            "excludeAmbiguous" => p.exclude_ambiguous = false,
            _ => p.require_each_class = false,
        }
    }
    p.unreadable = fields;
    p
}

/// Proposals of any shape. Half are wild: any type, expiry and flags, lengths crowded at 0,
/// the number of classes and 1024. Half have a length within two characters of the entropy
/// floor of their classes and type, where the entropy rule decides. In one of four, one to
/// three fields are unreadable.
fn any_proposal() -> impl Strategy<Value = Proposal> {
    let number = prop::sample::select(spec::TYPES.map(|(n, _)| n).to_vec());
    let wild_length = prop_oneof![-5i64..=40, 1000i64..=1030, -5i64..=1100];
    let wild = (
        number.clone(),
        wild_length,
        any_expiry(),
        any::<[bool; 6]>(),
    )
        .prop_map(|(t, length, expiry, f)| build(t, length, expiry, f));
    let expiry = prop_oneof![Just("300s".to_owned()), Just("0s".to_owned()), any_expiry()];
    let at_floor =
        (number, expiry, any::<[bool; 6]>(), -2i64..=2).prop_map(|(number, expiry, f, delta)| {
            let mut p = build(number, 1, expiry, f);
            let per_character = Shape {
                require_each_class: false,
                ..p.shape()
            };
            if p.classes().contains(&true) {
                let floor = spec::floor_bits(number);
                p.length = (floor / per_character.entropy_bits()).ceil() as i64;
            }
            p.length += delta;
            p
        });
    // Fields a transport can fail to read, as a JSON body can hold the wrong type for them.
    let readable: Vec<&str> = ["length", "expiry"]
        .into_iter()
        .chain(spec::FLAGS)
        .collect();
    let unreadable = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::sample::subsequence(readable, 1..=3),
    ];
    (prop_oneof![wild, at_floor], unreadable).prop_map(|(p, fields)| unread(p, fields))
}

/// The `generate` fuzz target's input, drawn by proptest, with a valid proposal.
fn valid_generate_input() -> impl Strategy<Value = generate::Input> {
    let proposal = (
        prop::sample::select(spec::TYPES.to_vec()),
        prop_oneof![1i64..=40, 1i64..=1024],
        1u64..=spec::MAX_EXPIRY.as_secs(),
        any::<bool>(),
        any::<[bool; 6]>(),
    )
        .prop_filter_map("refused", |((number, _), length, secs, never, f)| {
            let expiry = if number == spec::APP_SECRET && never {
                "0s".to_owned()
            } else {
                format!("{secs}s")
            };
            let p = build(number, length, expiry, f);
            rules::violations(&p).fields.is_empty().then_some(p)
        });
    (
        proposal,
        any::<[u8; 32]>(),
        0..=generate::MAX_NOW_SECS,
        1usize..=8,
        any::<prop::sample::Index>(),
    )
        .prop_map(|(proposal, seed, secs, codes, partial)| generate::Input {
            partial: partial.index(proposal.length as usize),
            proposal,
            seed,
            now: Duration::from_secs(secs),
            codes,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `GeneratorConfig::new` accepts exactly the proposals that break no rule, as what they
    /// say, and otherwise names exactly the fields they break.
    #[test]
    fn the_validator_names_exactly_the_rules_a_proposal_breaks(p in any_proposal()) {
        rules::check_verdict(&p, &adapter::validate(&p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The type parser accepts exactly the spellings of SPEC section 1 (the
    /// `generator_type` fuzz target's check).
    #[test]
    fn the_type_parser_reads_exactly_the_spec_spellings(text in any_type()) {
        targets::generator_type::check(&Text(text));
    }

    /// The expiry parser accepts exactly SPEC section 4's durations and writes them back
    /// canonically (the `expiry` fuzz target's check).
    #[test]
    fn the_expiry_parser_reads_exactly_the_spec_durations(text in any_expiry()) {
        targets::expiry::check(&Text(text));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The seeded paths (`generate_with`, `fill_with`, `fill_codes_with`, the `_generate`
    /// body) give exactly the reference sampler's codes, which fit the configuration; the
    /// thread's own paths (`generate`, `fill`, `fill_codes`, through the code cache) give
    /// codes that fit it.
    #[test]
    fn every_path_gives_codes_that_fit_and_the_seeded_ones_are_the_references(
        input in valid_generate_input()
    ) {
        generate::check(&input);
        let config = adapter::config(&input.proposal);
        let shape = adapter::shape(&config);
        let g = Generator::new(&config);
        for _ in 0..input.codes {
            let code = g.generate().unwrap();
            prop_assert_eq!(fits(&shape, code.expose().as_bytes()), Ok(()), "generate");
            let mut buf = vec![0u8; shape.length];
            g.fill(&mut buf).unwrap();
            prop_assert_eq!(fits(&shape, &buf), Ok(()), "fill");
        }
        let mut bulk = vec![0u8; shape.length * input.codes];
        prop_assert_eq!(g.fill_codes(&mut bulk), Ok(input.codes));
        for code in bulk.chunks_exact(shape.length) {
            prop_assert_eq!(fits(&shape, code), Ok(()), "fill_codes");
        }
    }
}

/// A proposal for the type named `t`.
fn proposal(t: &str, length: i64, expiry: &str, classes: [bool; 4]) -> Proposal {
    let number = rules::generator_type(t).expect("a usable type");
    build(
        number,
        length,
        expiry.to_owned(),
        [classes[0], classes[1], classes[2], classes[3], false, false],
    )
}

const DIGITS: [bool; 4] = [false, false, true, false];
const ALNUM: [bool; 4] = [true, true, true, false];
const ALL: [bool; 4] = [true; 4];

#[test]
fn the_rules_oracle_names_what_the_spec_names() {
    let fields = |p: Proposal| rules::violations(&p).fields;
    let none: [&str; 0] = [];
    assert_eq!(fields(proposal("otp_sms", 8, "300s", DIGITS)), none);
    assert_eq!(fields(proposal("7", 6, "1s", DIGITS)), none);
    assert_eq!(fields(proposal("APP_SECRET", 22, "0s", ALNUM)), none);
    assert_eq!(fields(proposal("OTP_SMS", 0, "300s", DIGITS)), ["length"]);
    assert_eq!(
        fields(proposal("OTP_SMS", 1025, "300s", DIGITS)),
        ["length"]
    );
    for expiry in ["-5s", "2678401s", "0.5s", "300", "1.5m"] {
        assert_eq!(
            fields(proposal("OTP_SMS", 8, expiry, DIGITS)),
            ["expiry"],
            "{expiry}"
        );
    }
    assert_eq!(fields(proposal("OTP_SMS", 8, "0s", DIGITS)), ["expiry"]);
    // Five digits are 16.6 bits, six 19.93; 21 alphanumerics 125 bits, 22 131.
    assert_eq!(
        fields(proposal("OTP_SMS", 5, "300s", DIGITS)),
        ["entropyBits"]
    );
    assert_eq!(
        fields(proposal("APP_SECRET", 21, "0s", ALNUM)),
        ["entropyBits"]
    );
    let mut short = proposal("INIT_CODE", 3, "60s", ALL);
    short.require_each_class = true;
    assert_eq!(fields(short), ["requireEachClass"]);
    let mut unambiguous = proposal("OTP_SMS", 6, "300s", DIGITS);
    unambiguous.exclude_ambiguous = true;
    assert_eq!(
        fields(unambiguous),
        ["entropyBits"],
        "eight digits left, 18 bits"
    );
    let mut every = fields(proposal("OTP_SMS", 0, "-1s", [false; 4]));
    every.sort_unstable();
    assert_eq!(
        every,
        [
            "expiry",
            "includeDigits",
            "includeLowerLetters",
            "includeSymbols",
            "includeUpperLetters",
            "length"
        ]
    );
    // An unreadable field is named as such, and no rule that reads it is judged.
    let p = unread(proposal("OTP_SMS", 5, "300s", DIGITS), vec!["length"]);
    assert_eq!(fields(p), ["length"]);
    let p = unread(
        proposal("OTP_SMS", 8, "300s", DIGITS),
        vec!["includeDigits"],
    );
    assert_eq!(fields(p), ["includeDigits"], "no class, but one is unknown");
    let mut p = unread(
        proposal("OTP_SMS", 3, "300s", ALL),
        vec!["requireEachClass"],
    );
    p.include_digits = true;
    assert_eq!(fields(p), ["requireEachClass"], "no entropy judged");
    // The type is read before a configuration exists.
    assert_eq!(rules::generator_type("0"), Err(TypeFault::Unspecified));
    assert_eq!(
        rules::generator_type("SECRET_GENERATOR_TYPE_UNSPECIFIED"),
        Err(TypeFault::Unspecified)
    );
    assert_eq!(rules::generator_type("bogus"), Err(TypeFault::Unknown));
    assert_eq!(rules::generator_type("otp_Email"), Ok(8));
    assert_eq!(rules::generator_type("007"), Ok(7));
}

#[test]
fn the_spec_oracle_counts_entropy_as_the_spec_shows() {
    let otp_sms = proposal("OTP_SMS", 8, "300s", DIGITS).shape();
    assert_eq!((otp_sms.entropy_bits() * 100.0).floor() / 100.0, 26.57);
    // Two digits holding every class of {lower, digits}: 2 * 26 * 10 of 36^2 codes.
    let mut both = proposal("OTP_SMS", 2, "300s", [true, false, true, false]).shape();
    both.require_each_class = true;
    assert!((both.entropy_bits() - 520f64.log2()).abs() < 1e-12);
    assert_eq!(
        Shape {
            exclude_ambiguous: true,
            ..proposal("OTP_SMS", 1, "1s", ALL).shape()
        }
        .alphabet()
        .len(),
        82
    );
}

#[test]
fn the_fit_oracle_catches_each_misfit() {
    let mut p = proposal("OTP_SMS", 4, "300s", [false, true, true, false]);
    (p.exclude_ambiguous, p.require_each_class) = (true, true);
    let shape = p.shape();
    assert_eq!(fits(&shape, b"A2B3"), Ok(()));
    assert_eq!(
        fits(&shape, b"A2B"),
        Err(Misfit::Length {
            expected: 4,
            got: 3
        })
    );
    assert_eq!(
        fits(&shape, b"A2b3"),
        Err(Misfit::NotInAlphabet { position: 2 })
    );
    assert_eq!(
        fits(&shape, b"A2O3"),
        Err(Misfit::Ambiguous { position: 2 })
    );
    assert_eq!(
        fits(&shape, b"2345"),
        Err(Misfit::MissingClass {
            class: "includeUpperLetters"
        })
    );
}

#[test]
fn the_reference_sampler_draws_every_character_equally_often() {
    // 62 characters: bytes 248 to 255 are rejected, every character stands for 4 of the
    // other 248. Without the rejection, 8 characters would come from 5 bytes of 256
    // (mean 4844 here, 13 sd above the bound).
    let shape = proposal("APP_SECRET", 1, "0s", ALNUM).shape();
    let mut reference = Reference::new(&shape, [1; 32]);
    let mut counts = [0u32; 256];
    for _ in 0..248_000 {
        counts[usize::from(reference.character())] += 1;
    }
    // Binomial(248000, 1/62): mean 4000, sd 62.7; 6 sd either side, a false failure with
    // probability below 2e-9 per character, 1.3e-7 for all 62; the seed is fixed.
    for &c in &shape.alphabet() {
        let n = counts[usize::from(c)];
        assert!((3624..=4376).contains(&n), "{} drawn {n} times", c as char);
    }
    let outside: u32 = (0..=255u8)
        .filter(|b| !shape.alphabet().contains(b))
        .map(|b| counts[usize::from(b)])
        .sum();
    assert_eq!(outside, 0);
    // A byte is kept with probability 248/256: 256,000 bytes for 248,000 characters on
    // average, sd 91 (each character's extra bytes are geometric, variance 8/248 / (248/256)
    // = 0.0333); 6 sd either side. The benchmarks size their keystreams with this count.
    let drawn = reference.bytes_drawn();
    assert!((255_454..=256_546).contains(&drawn), "{drawn} bytes drawn");
}
