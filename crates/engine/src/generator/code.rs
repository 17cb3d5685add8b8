//! [`Code`]: an owned code, zeroed on drop, redacted in `Debug`.

use std::fmt;
use std::time::SystemTime;

use zeroize::Zeroize;

/// Codes up to this many characters are held inline, without a heap allocation.
pub(super) const INLINE: usize = 32;

/// A generated code and when it expires.
///
/// It is a secret: `Debug` shows its length, never its characters, it has no `Display`, and
/// its memory is zeroed when it is dropped. Read it with [`Code::expose`]. Codes of up to 32
/// characters (every default but APP_SECRET) live inline, without a heap allocation.
#[derive(Clone)]
#[repr(C)] // the characters first, aligned: moving a code is a few aligned vector moves
pub struct Code {
    pub(super) inline: [u8; INLINE],
    pub(super) expires_at: Option<SystemTime>,
    /// The characters of a code longer than [`INLINE`].
    pub(super) spilled: Option<Box<[u8]>>,
    pub(super) len: u16,
}

impl Code {
    pub(super) fn zeroed(len: usize, expires_at: Option<SystemTime>) -> Code {
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

    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
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
        // All of the inline storage, a fixed size: a few stores, no call.
        self.inline.as_mut_slice().zeroize();
        if let Some(spilled) = &mut self.spilled {
            spilled.zeroize();
        }
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
