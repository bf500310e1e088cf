//! Helpers shared by several test modules: the storage backends a story
//! runs on, server nodes as child processes, the PostgreSQL and Redis
//! engines, the delivery ledger, nginx and private `redis-server`s.

pub mod backends;
pub mod cluster;
pub use microbot_test_support::engines;
pub mod ledger;
pub mod nginx;
pub mod redis;
