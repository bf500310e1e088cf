//! RNGs for vectors: [`RecordingRng`] draws from a seeded ChaCha20 stream and
//! records every draw; [`ReplayRng`] serves recorded draws back in order.
//!
//! Replaying is how a vector fixes "random" values: an implementation under
//! test receives the list of draws and must consume them in exactly the order
//! and sizes SPEC.md gives. A draw of the wrong size, or one too many, makes
//! the replay fail instead of silently using other bytes.

use std::convert::Infallible;

use rand_chacha::ChaCha20Rng;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};

/// A seeded RNG that records every `fill_bytes` draw.
pub struct RecordingRng {
    inner: ChaCha20Rng,
    draws: Vec<Vec<u8>>,
}

impl RecordingRng {
    /// A ChaCha20 RNG seeded with `seed` repeated over 32 bytes.
    pub fn from_seed_byte(seed: u8) -> Self {
        Self {
            inner: ChaCha20Rng::from_seed([seed; 32]),
            draws: Vec::new(),
        }
    }

    /// Takes the draws recorded since the last call.
    pub fn take_draws(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.draws)
    }
}

impl TryRng for RecordingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.inner.try_fill_bytes(dst)?;
        self.draws.push(dst.to_vec());
        Ok(())
    }
}

impl TryCryptoRng for RecordingRng {}

/// Serves recorded draws in order; any mismatch is remembered and reported by
/// [`ReplayRng::finish`].
pub struct ReplayRng {
    draws: std::vec::IntoIter<Vec<u8>>,
    mismatch: Option<String>,
}

impl ReplayRng {
    /// Replays `draws` in order.
    pub fn new(draws: Vec<Vec<u8>>) -> Self {
        Self {
            draws: draws.into_iter(),
            mismatch: None,
        }
    }

    /// Ok when every draw was consumed with the recorded size and none is left.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(error) = self.mismatch.take() {
            return Err(error);
        }
        match self.draws.len() {
            0 => Ok(()),
            left => Err(format!("{left} recorded random draws were not consumed")),
        }
    }
}

impl TryRng for ReplayRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        match self.draws.next() {
            Some(draw) if draw.len() == dst.len() => dst.copy_from_slice(&draw),
            Some(draw) => {
                self.mismatch.get_or_insert_with(|| {
                    format!(
                        "a draw of {} bytes was asked for, {} recorded",
                        dst.len(),
                        draw.len()
                    )
                });
                dst.fill(0);
            }
            None => {
                self.mismatch.get_or_insert_with(|| {
                    format!("a draw of {} bytes was asked for, none left", dst.len())
                });
                dst.fill(0);
            }
        }
        Ok(())
    }
}

impl TryCryptoRng for ReplayRng {}
