//! The random stream behind masking keys and handshake keys.
//!
//! ChaCha8's block function is about 3 KB of Thumb code once unrolled, and every call site
//! that inlines it pays that again. All randomness in `ws` goes through
//! [`KeyStream::fill`], which is never inlined, so firmware carries one copy; and only a
//! client's path reaches it (a server never masks), so a server-only image carries none.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A ChaCha8 stream seeded by the caller (this crate has no entropy source of its own).
///
/// ```
/// use ustack::ws::keys::KeyStream;
/// let (mut a, mut b) = (KeyStream::new([7; 32]), KeyStream::new([7; 32]));
/// assert_eq!(a.mask_key(), b.mask_key());
/// assert_ne!(a.mask_key(), KeyStream::new([8; 32]).mask_key());
/// ```
#[derive(Debug, Clone)]
pub struct KeyStream(ChaCha8Rng);

impl KeyStream {
    /// A stream that starts from `seed`; equal seeds give equal streams.
    pub fn new(seed: [u8; 32]) -> Self {
        KeyStream(ChaCha8Rng::from_seed(seed))
    }

    /// Fills `out` with the next bytes of the stream.
    #[inline(never)]
    pub fn fill(&mut self, out: &mut [u8]) {
        self.0.fill_bytes(out);
    }

    /// The next four bytes: one frame's masking key.
    pub fn mask_key(&mut self) -> [u8; 4] {
        let mut k = [0; 4];
        self.fill(&mut k);
        k
    }
}
