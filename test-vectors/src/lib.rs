//! # microbot-test-vectors
//!
//! Deterministic test vectors for every Microbot primitive and wire format
//! (SPEC.md §17), and the code that generates and checks them.
//!
//! A vector is `{kind, name, input, output}`. `input` holds every secret and
//! every random value a party draws, in the order drawn, so any
//! implementation can replay it without our RNG; `output` holds every
//! intermediate and final value it must reproduce byte for byte.
//! [`kinds::compute`] is our implementation of "input → output" for each kind;
//! the generator draws inputs from a seeded RNG and records them, and the
//! conformance runner ([`runner`]) asks another implementation for the same
//! outputs through the adapter protocol ([`adapter`]). The vectors, a JSON
//! Schema per kind ([`schema`]) and the normative protobuf files are built
//! into the binary ([`bundle`]), so an installed runner needs nothing else.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod adapter;
pub mod bundle;
pub mod describe;
pub mod hexbytes;
pub mod kinds;
pub mod live;
pub mod replay_rng;
pub mod runner;
pub mod schema;
pub mod vector;

pub use vector::{Vector, VectorError, VectorFile};
