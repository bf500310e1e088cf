//! Adversarial tests at the crypto and protocol level (issue 7, point 2):
//! tampered, replayed, reordered and truncated ciphertexts (1:1 and group),
//! messages claiming a huge skip, a group message signed by another member,
//! a frame length of 2^63 and a million tiny frames.
//!
//! They attack the same deterministic fixtures as the fuzz targets
//! (`microbot_fuzz_targets::fixtures`). Server-level attacks (streams never
//! read, TOTP brute force, removed devices) are the server's tests.

mod adversarial {
    pub mod frames;
    pub mod group;
    pub mod one_to_one;
    pub mod prekey;
}
