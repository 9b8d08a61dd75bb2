//! Keeps the heavy tests apart from each other and from the tests that measure time.
//!
//! All integration tests share one process, and `cargo test` runs any of them beside any other. When they
//! were separate binaries, a race test only ever ran beside the other tests of its own file. In one process,
//! without this lock:
//!
//! - the big races hold thousands of file descriptors each, since both ends of every connection live in this
//!   process (about 3400 at the peak of the 2000-notice race, 1800 for the 2400 transfers), and `cargo test`
//!   runs as many tests at once as the machine has cores: on a large machine all of them together come close
//!   to the 20000 that CI allows (`ulimit -n`);
//! - they starve the tests that check wall-clock time or give the server a fixed moment (a generated
//!   password printed within 1.5 s, a lease taken over within 3.5 s, a gateway timeout noticed within 3 s),
//!   and the browser tests' Chromium;
//! - their thousands of outgoing connections draw local ports from the range that a test reserving a port
//!   (binding a listener on port 0, dropping it and handing the port to a child process or to chromedriver)
//!   relies on staying free for a moment.
//!
//! So a heavy test holds [`heavy`]: it runs alone among the tests that take this lock, one heavy test at a
//! time. A test sensitive to that load holds [`quiet`]: those run beside each other and beside every test
//! that takes no lock, never beside a heavy one. A `tokio` lock, not `std`'s, because the guard is held
//! across `.await`s, and it does not poison: a failing test releases it like a passing one.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOAD: RwLock<()> = RwLock::const_new(());

/// Held for the whole of a test that puts the machine under heavy load (thousands of sockets, hundreds of
/// concurrent requests, a `kill -9` under load, worker processes paying a thousand payouts).
pub async fn heavy() -> RwLockWriteGuard<'static, ()> {
    LOAD.write().await
}

/// Held for the whole of a test that would flake beside a heavy one: it checks elapsed time, waits a fixed
/// time before it looks, reserves a port for another process, or drives Chromium.
pub async fn quiet() -> RwLockReadGuard<'static, ()> {
    LOAD.read().await
}
