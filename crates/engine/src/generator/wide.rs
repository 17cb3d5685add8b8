//! The sampler's widest step: 64 random bytes mapped and packed at a time with AVX-512, where
//! the CPU has it (checked at run time). The one module of the workspace with `unsafe`.
//!
//! It computes exactly what the byte-by-byte loop computes: each byte looked up in the
//! generator's table (0 for a byte in the rejection zone), and the characters of the accepted
//! bytes written one after another, in the order of their bytes. Only the speed differs:
//! - `vpermi2b` twice and a blend on the byte's top bit look 64 bytes up in the 256-entry
//!   table at once;
//! - a mask of the non-zero characters (the accepted bytes), and `vpcompressb` packs those
//!   characters to the front of the register, in order;
//! - the 64 lanes are stored at the next free place and the place advances by the number of
//!   accepted bytes, so the zeros after them are overwritten by the next block or by a later
//!   step, exactly as in `Generator::map_blocks`.
//!
//! # Why `unsafe`
//! Two things the compiler cannot check: that the CPU has the instructions (the caller asks
//! [`available`], which asks the CPU once and caches the answer, before every call), and
//! that the loads and stores stay in bounds (they read and write through `&[u8; 64]` and
//! `&mut [u8; 64]`, taken from the slices with bounds checks, so each is exactly one valid
//! block). `tests` compares this step with the byte loop on every byte value, every table the
//! configurations can make and random inputs.

#![allow(unsafe_code)]

/// Bytes mapped per step.
pub(super) const WIDTH: usize = 64;

/// Whether [`map`] may be called on this CPU.
#[inline]
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512vbmi2")
            && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// While at least [`WIDTH`] characters are missing from `out` and [`WIDTH`] bytes are left in
/// `bytes`, maps [`WIDTH`] bytes through `table`, advancing `read` and `written`. Does nothing
/// where [`available`] is false.
#[inline]
pub(super) fn map(
    table: &[u8; 256],
    bytes: &[u8],
    out: &mut [u8],
    read: &mut usize,
    written: &mut usize,
) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has every feature `x86::map` is compiled for; `available` asked it.
        let (r, w) = unsafe { x86::map(table, &bytes[*read..], &mut out[*written..]) };
        *read += r;
        *written += w;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (table, bytes, out, read, written);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GeneratorConfig;
    use crate::generator::Generator;
    use crate::generator_type::GeneratorType;
    use crate::rng::CodeRng;

    /// The byte loop the wide step must equal: every byte looked up, the accepted ones kept.
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

    fn check(table: &[u8; 256], bytes: &[u8], room: usize) {
        let mut out = vec![0u8; room];
        let (mut read, mut written) = (0, 0);
        map(table, bytes, &mut out, &mut read, &mut written);
        if !available() {
            assert_eq!((read, written), (0, 0));
            return;
        }
        // Whole blocks only, each while a block's room was left.
        assert_eq!(read % WIDTH, 0);
        assert!(bytes.len() - read < WIDTH || room - written < WIDTH);
        let (want_read, want) = by_byte(table, &bytes[..read], usize::MAX);
        assert_eq!(want_read, read);
        assert_eq!(&out[..written], &want[..]);
    }

    fn tables() -> Vec<[u8; 256]> {
        let mut tables: Vec<[u8; 256]> = GeneratorType::ALL
            .iter()
            .map(|&t| Generator::new(&GeneratorConfig::default_for(t)).table)
            .collect();
        // Alphabets of every size from 1 to 255: rejection zones from none to 255 bytes.
        for n in 1..=255usize {
            let accepted = 256 - 256 % n;
            let mut table = [0u8; 256];
            for (b, slot) in table.iter_mut().enumerate().take(accepted) {
                *slot = (b % n) as u8 + 1;
            }
            tables.push(table);
        }
        tables
    }

    #[test]
    fn every_byte_value_in_every_lane_maps_as_the_byte_loop_does() {
        for table in tables() {
            // Each lane sees each of the 256 values once over four blocks.
            let bytes: Vec<u8> = (0..1024).map(|i| (i * 67 % 256) as u8).collect();
            check(&table, &bytes, 1024);
        }
    }

    #[test]
    fn random_bytes_map_as_the_byte_loop_does_for_any_room() {
        let mut rng = CodeRng::from_seed([3; 32]);
        for table in tables() {
            let mut bytes = Vec::new();
            while bytes.len() < 700 {
                let chunk = rng.available().unwrap();
                let take = chunk.len().min(700 - bytes.len());
                bytes.extend_from_slice(&chunk[..take]);
                rng.consume(take);
            }
            for room in [0, 63, 64, 65, 130, 700, 800] {
                for start in [0, 1, 63] {
                    check(&table, &bytes[start..], room);
                }
            }
        }
    }
}
