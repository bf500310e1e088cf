//! Rust conveniences on the generated content types (SPEC.md §11):
//! constructors and redacting `Debug` impls. Not owned here: validity rules
//! ([`crate::content_rules`]), padding ([`crate::padding`]) and convergence
//! ([`crate::convergence`]).

mod constructors;
mod debug;
