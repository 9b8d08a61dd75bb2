//! The reads, seeds and checks whose SQL is the same on both backends (SQLite accepts `$n` placeholders).
//!
//! Each area has its own file with one macro of queries, instantiated for each store in `sqlite.rs` and
//! `postgres.rs` with what differs between the backends (pool names, how a time is bound, transaction
//! openers), and the `Store` methods that forward to them. The macros expect `sqlx::Row` in scope where they
//! are instantiated.

pub mod accounts;
pub mod audit;
pub mod balances;
pub mod csv_mappings;
pub mod events;
pub mod hot_reads;
pub mod jobs;
pub mod notices;
pub mod payouts;
pub mod principals;
pub mod statements;
pub mod tokens;
pub mod verify;
