//! Faults under load, against the real binary: PostgreSQL restarted and stopped under load (on a private
//! cluster each test starts itself), the SQLite disk filling up, and a lock held on the accounts table. A
//! client here does what the README tells one to: it resends every operation whose outcome it does not know,
//! with the same `operation_id` or `Idempotency-Key`, until the answer is definitive; the ledger must then
//! hold every acknowledged operation exactly once, and `payledger verify` must pass.
//!
//! Every test here holds [`crate::common::load::heavy`]: they load the machine and stop databases.

mod cluster;
mod disk_full;
mod large_batch;
mod load;
mod pg_restart;
mod server;
mod slow_db;
