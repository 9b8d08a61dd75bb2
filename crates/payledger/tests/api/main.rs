//! The server's integration tests, all in one test binary: one module per area, sharing the harness in
//! [`common`]. (They used to be eighteen binaries, each linking `common` and the whole server again.)
//!
//! In one binary every test can run beside any other; the heavy race and load tests therefore take
//! [`common::load`]'s locks, which keep them apart from each other and from the tests that measure time.
//!
//! Run one area with `cargo test -p payledger --test api races::` (or `console::browser::`, …).

mod common;

mod access;
mod backup;
mod balance_races;
mod balances;
mod batch;
mod console;
mod crash;
mod deploy;
mod docs;
mod events;
mod faults;
mod gateway;
mod layout;
mod login_limits;
mod payout_workers;
mod payouts;
mod principals;
mod proxy;
mod races;
mod statements;
mod user_cache;
mod verify;
mod webhook;
mod webhook_endpoints;
mod webhook_security;
