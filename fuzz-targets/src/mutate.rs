//! Structured mutations of real messages: what an attacker on the wire can do
//! to bytes it cannot forge (flip, overwrite, cut, insert, append).
//!
//! Positions are taken modulo the current length, so every mutation applies
//! to every message and the fuzzer never wastes an input.

use arbitrary::Arbitrary;

/// One edit of a byte string.
#[derive(Debug, Clone, Arbitrary)]
pub enum Mutation {
    /// Flips bit `bit % 8` of the byte at `at`.
    FlipBit {
        /// Position (modulo the length).
        at: u32,
        /// Bit index (modulo 8).
        bit: u8,
    },
    /// Overwrites the byte at `at`.
    SetByte {
        /// Position (modulo the length).
        at: u32,
        /// New value.
        value: u8,
    },
    /// Writes `value` big-endian at `at` (as far as the message reaches):
    /// hits the counters of ratchet and sender-key headers.
    SetU32 {
        /// Position (modulo the length).
        at: u32,
        /// New value.
        value: u32,
    },
    /// Keeps the first `len % (length + 1)` bytes.
    Truncate {
        /// New length (modulo the length + 1).
        len: u32,
    },
    /// Removes up to `len` bytes starting at `at`.
    Remove {
        /// Position (modulo the length).
        at: u32,
        /// How many bytes.
        len: u8,
    },
    /// Inserts bytes before position `at`.
    Insert {
        /// Position (modulo the length + 1).
        at: u32,
        /// The bytes inserted.
        bytes: Vec<u8>,
    },
    /// Appends bytes.
    Append(Vec<u8>),
    /// Swaps the bytes at two positions.
    Swap {
        /// First position (modulo the length).
        a: u32,
        /// Second position (modulo the length).
        b: u32,
    },
}

/// `at` reduced modulo `len` (`None` when `len` is 0).
fn position(at: u32, len: usize) -> Option<usize> {
    (len > 0).then(|| at as usize % len)
}

impl Mutation {
    /// Applies the mutation to `bytes`.
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            Mutation::FlipBit { at, bit } => {
                if let Some(byte) = position(*at, len).and_then(|i| bytes.get_mut(i)) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            Mutation::SetByte { at, value } => {
                if let Some(byte) = position(*at, len).and_then(|i| bytes.get_mut(i)) {
                    *byte = *value;
                }
            }
            Mutation::SetU32 { at, value } => {
                if let Some(start) = position(*at, len) {
                    for (target, source) in bytes.iter_mut().skip(start).zip(value.to_be_bytes()) {
                        *target = source;
                    }
                }
            }
            Mutation::Truncate { len: new_len } => {
                bytes.truncate(*new_len as usize % (len + 1));
            }
            Mutation::Remove { at, len: count } => {
                if let Some(start) = position(*at, len) {
                    let end = start.saturating_add(usize::from(*count)).min(len);
                    bytes.drain(start..end);
                }
            }
            Mutation::Insert {
                at,
                bytes: inserted,
            } => {
                let start = *at as usize % (len + 1);
                bytes.splice(start..start, inserted.iter().copied());
            }
            Mutation::Append(appended) => bytes.extend_from_slice(appended),
            Mutation::Swap { a, b } => {
                if let (Some(a), Some(b)) = (position(*a, len), position(*b, len)) {
                    bytes.swap(a, b);
                }
            }
        }
    }
}

/// `original` with every mutation applied in order.
pub fn apply_all(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for mutation in mutations {
        mutation.apply(&mut bytes);
    }
    bytes
}

/// Reads up to `max` values of `T` from the rest of `u` (stops at the first
/// value the bytes cannot make).
pub fn sequence<'a, T: Arbitrary<'a>>(u: arbitrary::Unstructured<'a>, max: usize) -> Vec<T> {
    match u.arbitrary_take_rest_iter::<T>() {
        Ok(iter) => iter.take(max).map_while(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}
