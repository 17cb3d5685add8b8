//! This thread's state, in one thread-local slot: its [`CodeRng`] and its cache of codes made
//! ahead for [`Generator::generate`] and [`Generator::fill`].
//!
//! One slot, not two: generating a cached code reaches the thread-local once.

use std::cell::RefCell;

use zeroize::Zeroize;

use super::Generator;
use super::code::INLINE;
use crate::rng::{CodeRng, EntropyError};

/// What each thread keeps: its generator, keyed on first use, and its cache of codes made
/// ahead for [`Generator::generate`].
pub(super) struct ThreadState {
    rng: Option<CodeRng>,
    pub(super) cache: CodeCache,
}

impl ThreadState {
    /// This thread's generator, keyed from the operating system on first use.
    #[inline]
    fn rng(&mut self) -> Result<&mut CodeRng, EntropyError> {
        match &mut self.rng {
            Some(rng) => Ok(rng),
            empty => Ok(empty.insert(CodeRng::from_os()?)),
        }
    }

    /// The generator and the cache at once, for refilling the cache.
    #[inline]
    fn rng_and_cache(&mut self) -> Result<(&mut CodeRng, &mut CodeCache), EntropyError> {
        let rng = match &mut self.rng {
            Some(rng) => rng,
            empty => empty.insert(CodeRng::from_os()?),
        };
        Ok((rng, &mut self.cache))
    }
}

thread_local! {
    static THREAD: RefCell<ThreadState> = const {
        RefCell::new(ThreadState { rng: None, cache: CodeCache::new() })
    };
}

/// Runs `f` with this thread's generator, keying it from the operating system on first use.
pub fn with_thread_rng<T>(
    f: impl FnOnce(&mut CodeRng) -> Result<T, EntropyError>,
) -> Result<T, EntropyError> {
    with_thread_state(|state| f(state.rng()?))
}

/// Runs `f` with this thread's state.
#[inline]
pub(super) fn with_thread_state<T>(f: impl FnOnce(&mut ThreadState) -> T) -> T {
    THREAD.with(|cell| f(&mut cell.borrow_mut()))
}

/// For tests only: makes this thread draw from `CodeRng::from_seed(seed)` from now on, and
/// empties its cache of codes made ahead (zeroing them). Then one generator's
/// [`Generator::generate`] and [`Generator::fill`] calls on this thread give, in order, exactly
/// the codes of [`Generator::generate_with`] and [`Generator::fill_with`] on
/// `CodeRng::from_seed(seed)` (the cache draws ahead, so another generator's draws, or
/// [`Generator::fill_codes`], in between change what follows). The thread never re-keys from
/// the operating system again: never call it where real secrets are made.
#[doc(hidden)]
pub fn seed_this_thread(seed: [u8; 32]) {
    with_thread_state(|state| {
        state.cache.clear();
        state.rng = Some(CodeRng::from_seed(seed));
    });
}

impl Generator {
    /// Moves this thread's next code cached for this generator out of the cache, refilling
    /// the cache first when it is empty or holds another generator's codes, into the start of
    /// `out`. Its place in the cache is zeroed.
    #[inline]
    pub(super) fn take_cached(&self, out: &mut [u8; INLINE]) -> Result<(), EntropyError> {
        with_thread_state(|state| self.take_cached_from(state, out))
    }

    /// [`Generator::take_cached`] from this thread's `state`.
    #[inline]
    fn take_cached_from(
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

    /// [`Generator::take_cached`] into `out`, exactly one code long (at most [`INLINE`]):
    /// moves this thread's next code of this generator into `out` and zeroes its place.
    #[inline]
    pub(super) fn move_cached(&self, out: &mut [u8]) -> Result<(), EntropyError> {
        with_thread_state(|state| {
            self.ensure_cached(state)?;
            let cache = &mut state.cache;
            move_small(&mut cache.bytes[cache.next..cache.next + out.len()], out);
            cache.next += out.len();
            Ok(())
        })
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
}

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
pub(super) struct CodeCache {
    /// The codes, then room for the last code's [`INLINE`]-byte window (always zero).
    pub(super) bytes: [u8; CACHE_BYTES + INLINE],
    /// [`Generator::id`] of the generator the codes belong to; 0 for none.
    pub(super) owner: u64,
    /// Start of the next code to hand out.
    pub(super) next: usize,
    /// End of the cached codes.
    pub(super) end: usize,
}

impl CodeCache {
    /// An empty cache.
    const fn new() -> CodeCache {
        CodeCache {
            bytes: [0; CACHE_BYTES + INLINE],
            owner: 0,
            next: 0,
            end: 0,
        }
    }

    /// Zeroes the codes not handed out and empties the cache.
    pub(super) fn clear(&mut self) {
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
