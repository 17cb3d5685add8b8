//! The sampler's widest steps, where the CPU has them (checked at run time): 64 random bytes
//! mapped and packed at a time with AVX-512, 32 at a time with AVX2. The one module of the
//! workspace with `unsafe`.
//!
//! Each computes exactly what the byte-by-byte loop computes: each byte looked up in the
//! generator's table (0 for a byte in the rejection zone), and the characters of the accepted
//! bytes written one after another, in the order of their bytes. Only the speed differs.
//!
//! AVX-512 (`x86`), 64 bytes a step:
//! - `vpermi2b` twice and a blend on the byte's top bit look 64 bytes up in the 256-entry
//!   table at once;
//! - a mask of the non-zero characters (the accepted bytes), and `vpcompressb` packs those
//!   characters to the front of the register, in order.
//!
//! AVX2 (`avx2`), 32 bytes a step, for CPUs without AVX-512 (AVX2 has no byte permutation
//! wider than 16 entries and no compress), for alphabets of 2 to 96 characters:
//! - the byte's residue `b % n` (the table is `alphabet[b % n]` below the rejection zone) by
//!   halvings: taking `n * 2^j` away where the byte is at least that, for `j` from the top
//!   down (two steps for 62 characters, five for 10);
//! - the residue looked up in the alphabet, 16 characters per `vpshufb` (four for 62);
//! - the accepted bytes (`b < 256 - 256 % n`) of each 16 packed by one `vpshufb`, whose
//!   control comes from two tables of 256 patterns, one per mask of 8 bytes.
//!
//! Both store at the next free place and advance it by the number of accepted bytes, so what
//! lies after them is overwritten by the next block or by a later step, exactly as in
//! `Generator::map_blocks`.
//!
//! # Why `unsafe`
//! Two things the compiler cannot check: that the CPU has the instructions (the caller asks
//! [`available`], which asks the CPU once and caches the answer, before every call), and
//! that the loads and stores stay in bounds (they read and write through `&[u8; N]` and
//! `&mut [u8; N]`, taken from the slices with bounds checks, so each is exactly one valid
//! block). `tests` compares each step with the byte loop on every byte value, every table the
//! configurations can make and random inputs.

#![allow(unsafe_code)]

/// Bytes mapped per step of the widest step (AVX-512).
pub(super) const WIDTH: usize = 64;

/// The same for the AVX2 step.
const NARROW: usize = 32;

/// Which wide steps this CPU has: [`map`] takes the widest while it fits, then the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Available {
    avx512: bool,
    avx2: bool,
}

/// Whether [`map`] may be called on this CPU, per step.
#[inline]
pub(super) fn available() -> Available {
    #[cfg(target_arch = "x86_64")]
    {
        Available {
            avx512: std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vbmi")
                && std::arch::is_x86_feature_detected!("avx512vbmi2")
                && std::arch::is_x86_feature_detected!("popcnt"),
            avx2: std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("popcnt"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Available {
            avx512: false,
            avx2: false,
        }
    }
}

/// Maps bytes through `table` (`alphabet[b % n]` below the rejection zone `256 - 256 % n`,
/// 0 from there, `n` the alphabet's length) into `out`, advancing `read` and `written`: with
/// AVX-512 while at least [`WIDTH`] characters are missing from `out` and [`WIDTH`] bytes are
/// left in `bytes`, then with AVX2 while 32 are. Does nothing where neither is
/// [`available`].
#[inline]
pub(super) fn map(
    table: &[u8; 256],
    n: usize,
    bytes: &[u8],
    out: &mut [u8],
    read: &mut usize,
    written: &mut usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let steps = available();
        if steps.avx512 {
            // SAFETY: the CPU has every feature `x86::map` is compiled for; `available` asked it.
            let (r, w) = unsafe { x86::map(table, &bytes[*read..], &mut out[*written..]) };
            *read += r;
            *written += w;
        }
        if steps.avx2 && avx2::takes(n) {
            // SAFETY: the CPU has every feature `avx2::map` is compiled for; `available` asked.
            let (r, w) = unsafe { avx2::map(table, n, &bytes[*read..], &mut out[*written..]) };
            *read += r;
            *written += w;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (table, n, bytes, out, read, written);
}
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512i, _mm512_loadu_si512, _mm512_mask_blend_epi8, _mm512_maskz_compress_epi8,
        _mm512_movepi8_mask, _mm512_permutex2var_epi8, _mm512_storeu_si512, _mm512_test_epi8_mask,
    };

    use super::WIDTH;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")]
    fn load(block: &[u8; WIDTH]) -> __m512i {
        // SAFETY: `block` is 64 readable bytes; the load has no alignment requirement.
        unsafe { _mm512_loadu_si512(block.as_ptr().cast()) }
    }

    /// [`super::map`] from the starts of `bytes` and `out`: returns how many bytes it read and
    /// characters it wrote.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")]
    pub(super) fn map(table: &[u8; 256], bytes: &[u8], out: &mut [u8]) -> (usize, usize) {
        let quarter = |i: usize| load(table[i * WIDTH..][..WIDTH].try_into().expect("64 bytes"));
        let (t0, t1, t2, t3) = (quarter(0), quarter(1), quarter(2), quarter(3));
        let (mut r, mut w) = (0, 0);
        while out.len() - w >= WIDTH {
            let Some(block) = bytes[r..].first_chunk::<WIDTH>() else {
                break;
            };
            let dst: &mut [u8; WIDTH] = (&mut out[w..w + WIDTH]).try_into().expect("a block fits");
            let v = load(block);
            // Bits 0-6 of each byte pick one of 128 entries; bit 7 picks the half.
            let low = _mm512_permutex2var_epi8(t0, v, t1);
            let high = _mm512_permutex2var_epi8(t2, v, t3);
            let c = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), low, high);
            let accepted = _mm512_test_epi8_mask(c, c);
            let packed = _mm512_maskz_compress_epi8(accepted, c);
            // SAFETY: `dst` is 64 writable bytes; the store has no alignment requirement.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), packed) };
            r += WIDTH;
            w += accepted.count_ones() as usize;
        }
        (r, w)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_min_epu8, _mm_shuffle_epi8, _mm_storeu_si128,
        _mm256_add_epi8, _mm256_broadcastsi128_si256, _mm256_castsi256_si128, _mm256_cmpeq_epi8,
        _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
        _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_sub_epi8,
        _mm256_xor_si256,
    };

    use super::NARROW;

    /// For each mask of 8 bytes (bit `i` set: byte `i` accepted), the `vpshufb` controls that
    /// move the accepted bytes, in order, to the front: `LOW[mask]` for the lower 8 of 16,
    /// and `HIGH[mask]` for the upper 8, whose controls stand in its bytes 8 to 15, so that
    /// the 16 bytes from `8 - k` on put them at places `k` on. Every other place is 0x80, which
    /// `vpshufb` turns to 0: the bytewise minimum of `LOW[low]` and `HIGH[high][8 - k..][..16]`,
    /// with `k` the bits of `low`, packs all 16 bytes.
    static LOW: [[u8; 16]; 256] = {
        let mut controls = [[0x80u8; 16]; 256];
        let mut mask = 0;
        while mask < 256 {
            let row = pack_control(mask);
            let mut i = 0;
            while i < 8 {
                controls[mask][i] = row[i];
                i += 1;
            }
            mask += 1;
        }
        controls
    };

    /// See [`LOW`].
    static HIGH: [[u8; 32]; 256] = {
        let mut controls = [[0x80u8; 32]; 256];
        let mut mask = 0;
        while mask < 256 {
            let row = pack_control(mask);
            let mut i = 0;
            while i < 8 {
                controls[mask][8 + i] = if row[i] == 0x80 { 0x80 } else { row[i] + 8 };
                i += 1;
            }
            mask += 1;
        }
        controls
    };

    /// The places of the bits of `mask`, in order, then 0x80.
    const fn pack_control(mask: usize) -> [u8; 8] {
        let mut control = [0x80u8; 8];
        let (mut from, mut to) = (0, 0);
        while from < 8 {
            if mask >> from & 1 == 1 {
                control[to] = from as u8;
                to += 1;
            }
            from += 1;
        }
        control
    }

    /// Whether the step handles an alphabet of `n` characters: from 2 (with 1, every byte is
    /// the one character) to 96, six groups of 16 (the largest alphabet, every class, has 89).
    pub(super) fn takes(n: usize) -> bool {
        (2..=96).contains(&n)
    }

    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    fn load(block: &[u8; NARROW]) -> __m256i {
        // SAFETY: `block` is 32 readable bytes; the load has no alignment requirement.
        unsafe { _mm256_loadu_si256(block.as_ptr().cast()) }
    }

    /// The 16 characters `table[16 * i..]` in both 128-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    fn characters(table: &[u8; 256], i: usize) -> __m256i {
        let chunk: &[u8; 16] = table[16 * i..][..16].try_into().expect("16 bytes");
        // SAFETY: `chunk` is 16 readable bytes; the load has no alignment requirement.
        _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) })
    }

    /// Packs the accepted bytes of `lane` (bit `i` of `mask`: byte `i`) to the front of
    /// `out`, in order, zeros after them; returns how many.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    fn pack(lane: __m128i, mask: u32, out: &mut [u8; 16]) -> usize {
        let (low, high) = ((mask & 0xff) as usize, (mask >> 8 & 0xff) as usize);
        let first = low.count_ones() as usize;
        let (to_low, to_high) = (&LOW[low], &HIGH[high][8 - first..][..16]);
        // SAFETY: both are 16 readable bytes; the loads have no alignment requirement.
        let control = unsafe {
            // Each place is 0x80 in one of the two or both: the smaller is the control.
            _mm_min_epu8(
                _mm_loadu_si128(to_low.as_ptr().cast()),
                _mm_loadu_si128(to_high.as_ptr().cast()),
            )
        };
        // SAFETY: `out` is 16 writable bytes; the store has no alignment requirement.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_shuffle_epi8(lane, control)) };
        first + high.count_ones() as usize
    }

    /// Halvings that bring a byte below `256 - 256 % n` to its residue `b % n` (see
    /// [`map_with`]): the least `J` with `floor(256 / n) <= 2^J`.
    const fn halvings(n: usize) -> usize {
        (256 / n).next_power_of_two().trailing_zeros() as usize
    }

    /// [`super::map`]'s AVX2 step from the starts of `bytes` and `out`: returns how many bytes
    /// it read and characters it wrote. `table` is `alphabet[b % n]` below the rejection zone;
    /// [`takes`] `n`.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) fn map(table: &[u8; 256], n: usize, bytes: &[u8], out: &mut [u8]) -> (usize, usize) {
        // Every pair of groups and halvings an alphabet of 2 to 96 characters has, each with
        // its loops unrolled.
        match (n.div_ceil(16), halvings(n)) {
            (1, 7) => map_with::<1, 7>(table, n, bytes, out),
            (1, 6) => map_with::<1, 6>(table, n, bytes, out),
            (1, 5) => map_with::<1, 5>(table, n, bytes, out),
            (1, 4) => map_with::<1, 4>(table, n, bytes, out),
            (2, 4) => map_with::<2, 4>(table, n, bytes, out),
            (2, 3) => map_with::<2, 3>(table, n, bytes, out),
            (3, 3) => map_with::<3, 3>(table, n, bytes, out),
            (4, 3) => map_with::<4, 3>(table, n, bytes, out),
            (4, 2) => map_with::<4, 2>(table, n, bytes, out),
            (5, 2) => map_with::<5, 2>(table, n, bytes, out),
            (6, 2) => map_with::<6, 2>(table, n, bytes, out),
            (6, 1) => map_with::<6, 1>(table, n, bytes, out),
            _ => unreachable!("an alphabet of {n} characters is not taken"),
        }
    }

    /// [`map`] for an alphabet of `n` characters in `G` groups of 16, whose accepted bytes
    /// take `J` halvings to their residue.
    #[inline]
    #[target_feature(enable = "avx2,popcnt")]
    fn map_with<const G: usize, const J: usize>(
        table: &[u8; 256],
        n: usize,
        bytes: &[u8],
        out: &mut [u8],
    ) -> (usize, usize) {
        debug_assert!(takes(n) && n.div_ceil(16) == G && halvings(n) == J);
        // An accepted byte is below n * floor(256 / n) <= n * 2^J. While it is below n * 2^(j+1),
        // taking n * 2^j away where it is at least that (the smaller of r and r - n * 2^j,
        // which wraps above r where r is smaller) leaves it below n * 2^j; after the J
        // halvings it is below n: b % n. (n * 2^j < 256 for j < J.)
        let halves: [__m256i; J] =
            std::array::from_fn(|j| _mm256_set1_epi8(((n << (J - 1 - j)) as u8) as i8));
        // Group i of the alphabet answers for residues 16i to 16i + 15. Adding 0x70 - 16i moves
        // those to 0x70 to 0x7f (top bit clear: vpshufb looks them up by their low four bits),
        // the residues above them to 0x80 or more (vpshufb gives 0), and those below them to
        // below 0x70, which vpshufb looks up too. So a residue of group j gets the xor of the
        // look-ups in groups j and up: each group's table is its characters xor the next
        // group's, and the xor of groups j and up is group j's characters.
        let alphabet: [__m256i; G] = std::array::from_fn(|i| {
            let group = characters(table, i);
            if i + 1 < G {
                _mm256_xor_si256(group, characters(table, i + 1))
            } else {
                group
            }
        });
        let offsets: [__m256i; G] =
            std::array::from_fn(|i| _mm256_set1_epi8((0x70 - 16 * i) as u8 as i8));
        let last_accepted = _mm256_set1_epi8((255 - 256 % n) as u8 as i8);
        let (mut r, mut w) = (0, 0);
        while out.len() - w >= NARROW {
            let Some(block) = bytes[r..].first_chunk::<NARROW>() else {
                break;
            };
            let dst: &mut [u8; NARROW] =
                (&mut out[w..w + NARROW]).try_into().expect("a block fits");
            let v = load(block);
            let mut residues = v;
            for half in &halves {
                residues = _mm256_min_epu8(residues, _mm256_sub_epi8(residues, *half));
            }
            let mut c = _mm256_setzero_si256();
            for (group, offset) in alphabet.iter().zip(&offsets) {
                let index = _mm256_add_epi8(residues, *offset);
                c = _mm256_xor_si256(c, _mm256_shuffle_epi8(*group, index));
            }
            // Accepted: b <= 255 - 256 % n, unsigned.
            let accepted = _mm256_cmpeq_epi8(_mm256_min_epu8(v, last_accepted), v);
            let mask = _mm256_movemask_epi8(accepted) as u32;
            let first: &mut [u8; 16] = dst.first_chunk_mut().expect("16 bytes");
            let k = pack(_mm256_castsi256_si128(c), mask, first);
            let rest: &mut [u8; 16] = (&mut dst[k..k + 16]).try_into().expect("16 bytes");
            let k = k + pack(_mm256_extracti128_si256::<1>(c), mask >> 16, rest);
            r += NARROW;
            w += k;
        }
        (r, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GeneratorConfig;
    use crate::generator::Generator;
    use crate::generator_type::GeneratorType;
    use crate::rng::CodeRng;

    /// The byte loop the wide steps must equal: every byte looked up, the accepted ones kept.
    fn by_byte(table: &[u8; 256], bytes: &[u8], room: usize) -> (usize, Vec<u8>) {
        let mut out = Vec::new();
        let mut read = 0;
        while out.len() < room && read < bytes.len() {
            let c = table[usize::from(bytes[read])];
            read += 1;
            if c != 0 {
                out.push(c);
            }
        }
        (read, out)
    }

    /// A way through the wide steps: the dispatcher or one step on its own.
    struct Way {
        name: &'static str,
        /// The width of its last step for an alphabet of `n` (0: it does nothing for `n`).
        width: fn(usize) -> usize,
        run: Run,
    }

    /// A way's run, from the starts of its slices: how many bytes it read and characters it
    /// wrote.
    type Run = fn(&[u8; 256], usize, &[u8], &mut [u8]) -> (usize, usize);

    /// The dispatcher, then each step this CPU has on its own.
    fn ways() -> Vec<Way> {
        let mut ways = vec![Way {
            name: "map",
            width: |n| {
                let steps = available();
                #[cfg(target_arch = "x86_64")]
                if steps.avx2 && avx2::takes(n) {
                    return NARROW;
                }
                let _ = n;
                if steps.avx512 { WIDTH } else { 0 }
            },
            run: |table, n, bytes, out| {
                let (mut read, mut written) = (0, 0);
                map(table, n, bytes, out, &mut read, &mut written);
                (read, written)
            },
        }];
        #[cfg(target_arch = "x86_64")]
        {
            if available().avx512 {
                ways.push(Way {
                    name: "avx512",
                    width: |_| WIDTH,
                    // SAFETY: this CPU has AVX-512 (`available`, above).
                    run: |table, _, bytes, out| unsafe { x86::map(table, bytes, out) },
                });
            }
            if available().avx2 {
                ways.push(Way {
                    name: "avx2",
                    width: |n| if avx2::takes(n) { NARROW } else { 0 },
                    run: |table, n, bytes, out| {
                        if !avx2::takes(n) {
                            return (0, 0);
                        }
                        // SAFETY: this CPU has AVX2 (`available`, above).
                        unsafe { avx2::map(table, n, bytes, out) }
                    },
                });
            }
        }
        ways
    }

    fn check(table: &[u8; 256], n: usize, bytes: &[u8], room: usize) {
        for Way { name, width, run } in ways() {
            let mut out = vec![0u8; room];
            let (read, written) = run(table, n, bytes, &mut out);
            let width = width(n);
            if width == 0 {
                assert_eq!((read, written), (0, 0), "{name}, n = {n}");
                continue;
            }
            // Whole blocks only, each while a block's room was left, until one is not.
            assert_eq!(read % NARROW, 0, "{name}, n = {n}");
            assert!(
                bytes.len() - read < width || room - written < width,
                "{name}, n = {n}: stopped early at {read} of {}, {written} of {room}",
                bytes.len()
            );
            let (want_read, want) = by_byte(table, &bytes[..read], usize::MAX);
            assert_eq!(want_read, read, "{name}, n = {n}");
            assert_eq!(&out[..written], &want[..], "{name}, n = {n}");
        }
    }

    /// Every default configuration's table, and a table for every alphabet size from 1 to
    /// 255 (rejection zones from none to 255 bytes), each with its alphabet's length.
    fn tables() -> Vec<([u8; 256], usize)> {
        let mut tables: Vec<([u8; 256], usize)> = GeneratorType::ALL
            .iter()
            .map(|&t| {
                let generator = Generator::new(&GeneratorConfig::default_for(t));
                (generator.table, generator.alphabet_len())
            })
            .collect();
        for n in 1..=255usize {
            let accepted = 256 - 256 % n;
            let mut table = [0u8; 256];
            for (b, slot) in table.iter_mut().enumerate().take(accepted) {
                *slot = (b % n) as u8 + 1;
            }
            tables.push((table, n));
        }
        tables
    }

    #[test]
    fn every_byte_value_in_every_lane_maps_as_the_byte_loop_does() {
        for (table, n) in tables() {
            // Each lane of either width sees each of the 256 values once over the blocks.
            let bytes: Vec<u8> = (0..2048).map(|i| (i * 67 % 256) as u8).collect();
            check(&table, n, &bytes, 2048);
        }
    }

    #[test]
    fn random_bytes_map_as_the_byte_loop_does_for_any_room() {
        let mut rng = CodeRng::from_seed([3; 32]);
        for (table, n) in tables() {
            let mut bytes = Vec::new();
            while bytes.len() < 700 {
                let chunk = rng.available().unwrap();
                let take = chunk.len().min(700 - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
                rng.consume(take);
            }
            for room in [0, 31, 32, 33, 63, 64, 65, 97, 130, 700, 800] {
                for start in [0, 1, 31, 63] {
                    check(&table, n, &bytes[start..], room);
                }
            }
        }
    }
}
