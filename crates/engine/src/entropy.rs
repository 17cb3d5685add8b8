//! Exact counting of the codes a configuration can produce, and their entropy in bits.

use num_bigint::BigUint;

/// Number of distinct codes of `length` characters over classes of the given sizes (disjoint),
/// counted exactly. With `require_each`, only codes holding at least one character of every
/// class count: by inclusion-exclusion, `sum over S of (-1)^|S| (N - n_S)^length`, where `S`
/// runs over the subsets of classes and `n_S` is their total size.
pub(crate) fn count_codes(class_sizes: &[u32], length: u32, require_each: bool) -> BigUint {
    let total: u32 = class_sizes.iter().sum();
    if !require_each {
        return BigUint::from(total).pow(length);
    }
    let mut plus = BigUint::ZERO;
    let mut minus = BigUint::ZERO;
    for subset in 0u32..(1 << class_sizes.len()) {
        let left_out: u32 = class_sizes
            .iter()
            .enumerate()
            .filter(|(i, _)| subset & (1 << i) != 0)
            .map(|(_, n)| n)
            .sum();
        let term = BigUint::from(total - left_out).pow(length);
        if subset.count_ones() % 2 == 0 {
            plus += term;
        } else {
            minus += term;
        }
    }
    // The alternating sum counts a set, so it is never negative.
    plus - minus
}

/// log2 of a big integer, to double precision; minus infinity for zero.
pub(crate) fn log2(n: &BigUint) -> f64 {
    let bits = n.bits();
    if bits <= 64 {
        let small = n.iter_u64_digits().next().unwrap_or(0);
        return (small as f64).log2();
    }
    let shift = bits - 64;
    let top = (n >> shift).iter_u64_digits().next().unwrap_or(0);
    (top as f64).log2() + shift as f64
}

/// `log2` of [`count_codes`]: the entropy of a uniformly drawn code, in bits.
pub(crate) fn entropy_bits(class_sizes: &[u32], length: u32, require_each: bool) -> f64 {
    if !require_each {
        let total: u32 = class_sizes.iter().sum();
        return f64::from(length) * f64::from(total).log2();
    }
    log2(&count_codes(class_sizes, length, require_each))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::{Alphabet, ClassSet};

    /// Counts by walking every code of the alphabet: the definition, not a formula.
    fn brute_force(alphabet: &Alphabet, length: u32, require_each: bool) -> u64 {
        let chars = alphabet.as_bytes();
        let wanted = alphabet.classes().bits();
        let mut digits = vec![0usize; length as usize];
        let mut count = 0u64;
        loop {
            let seen = digits
                .iter()
                .map(|&i| alphabet.class_of(chars[i]).unwrap().bit())
                .fold(0u8, |a, b| a | b);
            if !require_each || seen == wanted {
                count += 1;
            }
            // Next code, as an odometer.
            let mut pos = 0;
            loop {
                if pos == digits.len() {
                    return count;
                }
                digits[pos] += 1;
                if digits[pos] < chars.len() {
                    break;
                }
                digits[pos] = 0;
                pos += 1;
            }
        }
    }

    fn sizes(alphabet: &Alphabet) -> Vec<u32> {
        alphabet
            .classes()
            .iter()
            .map(|c| alphabet.class_size(c))
            .collect()
    }

    #[test]
    fn inclusion_exclusion_matches_brute_force_on_real_alphabets() {
        let cases = [
            (ClassSet::from_flags(false, false, true, false), false, 4),
            (ClassSet::from_flags(true, false, true, false), false, 3),
            (ClassSet::from_flags(true, false, true, false), true, 2),
            (ClassSet::from_flags(false, true, true, false), true, 3),
            (ClassSet::from_flags(true, true, true, false), true, 3),
            (ClassSet::from_flags(false, true, true, true), true, 3),
            (ClassSet::from_flags(true, true, true, true), true, 3),
            (ClassSet::from_flags(true, true, true, true), true, 2),
            (ClassSet::from_flags(false, false, true, true), true, 4),
        ];
        for (classes, exclude, length) in cases {
            for require in [false, true] {
                let a = Alphabet::new(classes, exclude).unwrap();
                let exact = count_codes(&sizes(&a), length, require);
                let walked = brute_force(&a, length, require);
                assert_eq!(exact, BigUint::from(walked), "{a:?} length {length}");
            }
        }
    }

    #[test]
    fn inclusion_exclusion_matches_brute_force_on_small_synthetic_classes() {
        // Classes of sizes 1, 2 and 3 as the letters a, bc, def.
        let class_of = |c: usize| match c {
            0 => 0,
            1 | 2 => 1,
            _ => 2,
        };
        for length in 0..=7u32 {
            let mut count = 0u64;
            for code in 0..6u64.pow(length) {
                let mut seen = 0u8;
                let mut rest = code;
                for _ in 0..length {
                    seen |= 1 << class_of((rest % 6) as usize);
                    rest /= 6;
                }
                count += u64::from(seen == 0b111);
            }
            assert_eq!(
                count_codes(&[1, 2, 3], length, true),
                BigUint::from(count),
                "length {length}"
            );
        }
    }

    #[test]
    fn fewer_positions_than_classes_give_no_code() {
        assert_eq!(count_codes(&[26, 26, 10, 27], 3, true), BigUint::ZERO);
        assert_eq!(entropy_bits(&[26, 26, 10, 27], 3, true), f64::NEG_INFINITY);
    }

    #[test]
    fn entropy_of_the_spec_example_and_large_codes() {
        // SPEC section 5: eight digits carry 26.57 bits.
        let bits = entropy_bits(&[10], 8, false);
        assert!((bits - 26.575_424_759).abs() < 1e-6, "{bits}");
        // 1024 symbols of 89: far beyond f64's range as a count, fine as a logarithm.
        let exact = log2(&count_codes(&[26, 26, 10, 27], 1024, false));
        let formula = entropy_bits(&[26, 26, 10, 27], 1024, false);
        assert!((exact - formula).abs() < 1e-9, "{exact} vs {formula}");
        // Requiring each class removes almost nothing from a long code...
        let required = entropy_bits(&[26, 26, 10, 27], 1024, true);
        assert!((formula - required).abs() < 1e-9, "{required} vs {formula}");
        // ...and a visible part of a short one: about a tenth of 20-character codes lack
        // a digit (79/89 to the 20th is 0.093).
        let full = entropy_bits(&[26, 26, 10, 27], 20, false);
        let required = entropy_bits(&[26, 26, 10, 27], 20, true);
        assert!(
            full - required > 0.14 && full - required < 0.2,
            "{full} vs {required}"
        );
    }

    #[test]
    fn requiring_each_class_of_a_short_code_costs_what_it_should() {
        // Four characters, one of each class: 4! * 26 * 26 * 10 * 27 codes.
        let exact = count_codes(&[26, 26, 10, 27], 4, true);
        assert_eq!(exact, BigUint::from(24u64 * 26 * 26 * 10 * 27));
    }
}
