//! The disk fills up under load (SQLite). Writes answer 503 with `Retry-After`, reads keep working, and once
//! space is freed writes resume without a restart; nothing acknowledged is lost.
//!
//! Two ways to fill it: a small tmpfs holding the database that a filler file fills (`ENOSPC`, as a real full
//! disk; mounting needs root, so elsewhere the test says it was skipped unless
//! `PAYLEDGER_REQUIRE_FAULT_TESTS=1`, as in CI), and a file-size limit (`RLIMIT_FSIZE`) lowered on the running
//! server to its files' current size (`EFBIG`; any user, so it always runs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::load::{Client, INNS};
use super::server::{Process, assert_verified};
use crate::common;

/// The filesystem's size: room for the database and its WAL with the load's first rows, small enough to
/// fill in a moment.
const DISK: &str = "size=32m";
/// Concurrent clients.
const CLIENTS: usize = 16;
/// 503 answers to see after the disk is full before freeing it.
const REFUSALS: usize = 20;

/// A size-limited tmpfs, unmounted (lazily, so an open file cannot keep it) when dropped, even when the
/// test fails.
struct Mount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    fn new() -> Option<Mount> {
        let dir = tempfile::Builder::new().prefix("payledger-faults-disk").tempdir().expect("mount point");
        let path = dir.path().to_path_buf();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", DISK, "payledger-faults", &path.display().to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Mount { path, _dir: dir })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes a filler file until the filesystem is full; returns its size.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 512] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

/// How a test takes the disk's free space away and gives it back.
enum Squeeze {
    /// A filler file on the tmpfs that holds the database.
    Filler(PathBuf),
    /// The server's `RLIMIT_FSIZE`, set with `prlimit`.
    FileSizeLimit { pid: u32, database: PathBuf },
}

impl Squeeze {
    /// Takes the space away; says how.
    fn fill(&self) -> String {
        match self {
            Squeeze::Filler(path) => format!("filled the tmpfs with {} KiB", fill(path) / 1024),
            Squeeze::FileSizeLimit { pid, database } => {
                // No file of the database may grow any more: the next page past its end fails with EFBIG.
                let largest = ["", "-wal", "-shm"]
                    .iter()
                    .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", database.display())).ok())
                    .map(|meta| meta.len())
                    .max()
                    .expect("the database's files");
                prlimit(*pid, &format!("--fsize={largest}:"));
                format!("limited the server's files to {} KiB", largest / 1024)
            }
        }
    }

    /// Gives the space back.
    fn free(&self) {
        match self {
            Squeeze::Filler(path) => std::fs::remove_file(path).expect("free the space"),
            Squeeze::FileSizeLimit { pid, .. } => prlimit(*pid, "--fsize=unlimited:"),
        }
    }
}

fn prlimit(pid: u32, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), limit])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --pid {pid} {limit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_with_503_keeps_reads_and_recovers_without_a_restart() {
    let _heavy = common::load::heavy().await;
    let Some(mount) = Mount::new() else {
        if std::env::var("PAYLEDGER_REQUIRE_FAULT_TESTS").is_ok_and(|v| v == "1") {
            panic!("PAYLEDGER_REQUIRE_FAULT_TESTS=1 but a tmpfs could not be mounted (the test needs root)");
        }
        eprintln!("SKIPPED: disk-full test (mounting a size-limited tmpfs needs root)");
        return;
    };
    let data = tempfile::tempdir().expect("data dir");
    let url = format!("sqlite://{}", mount.path.join("payledger.db").display());
    let server = Process::serve(&url, data.path(), &[]).await;
    squeeze_under_load(server, &url, data.path(), Squeeze::Filler(mount.path.join("filler"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_size_limit_refuses_writes_with_503_keeps_reads_and_recovers_without_a_restart() {
    let _heavy = common::load::heavy().await;
    let data = tempfile::tempdir().expect("data dir");
    let database = data.path().join("payledger.db");
    let url = format!("sqlite://{}", database.display());
    let server = Process::serve_ignoring_sigxfsz(&url, data.path()).await;
    let squeeze = Squeeze::FileSizeLimit { pid: server.pid(), database };
    squeeze_under_load(server, &url, data.path(), squeeze).await;
}

/// Runs the load, takes the space away until writes are refused, checks reads, gives it back, and checks
/// that writes resume and the ledger holds exactly what was acknowledged.
async fn squeeze_under_load(mut server: Process, url: &str, data: &Path, squeeze: Squeeze) {
    let client = Client::new(vec![server.address.clone()]);
    client.fund_users().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = client.start(CLIENTS, stop.clone());
    client.wait_for_acks(0, 150).await;

    let how = squeeze.fill();
    let full = Instant::now();
    let mut refused = 0;
    for _ in 0..600 {
        refused = client.tally.lock().expect("tally").unavailable_between(full, Instant::now());
        if refused >= REFUSALS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused >= REFUSALS, "writes on a full disk are answered 503 ({refused} seen)");
    // Reads keep working while nothing can be written.
    let balance = client.read(&format!("/api/organizations/{}/balance/", INNS[0])).await;
    assert!(!balance.is_null(), "an organization's balance is read while the disk is full");
    client.read("/api/balances/?user_id=1").await;
    server.assert_running("the server on a full disk");
    let acked_while_full = client.acked();

    squeeze.free();
    let freed = Instant::now();
    client.wait_for_acks(acked_while_full, 150).await;
    let recovered = client.tally.lock().expect("tally").first_ack_after(freed);
    eprintln!(
        "{how}; {refused} answers 503 within {:?}; first acknowledgement {recovered:?} after freeing",
        freed - full
    );

    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    eprintln!("{}", client.tally.lock().expect("tally").summary());
    client.assert_stored_once(url).await;
    eprintln!("the server logged:\n{}", server.problems());
    server.stop("the server").await;
    assert_verified(url, data).await;
}
