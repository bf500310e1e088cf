//! The subcommands, one module per group of them.

pub mod account;
pub mod chat;
pub mod contacts;
pub mod devices;
pub mod files;
pub mod groups;
pub mod history;
pub mod messages;
