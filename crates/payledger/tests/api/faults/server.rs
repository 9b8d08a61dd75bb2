//! The real `payledger` binary as a child process: `serve` on a random port, `worker`, and `verify`.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin every fault test's servers are started with (Basic credentials, so two instances accept them
/// without sharing a token key).
pub const ADMIN: (&str, &str) = ("admin", "fault-test-admin-password");
/// The card vault key the servers and the worker of one test share.
pub const CARD_KEY: &str = "8f3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b";

/// A running `payledger` process; killed if dropped without [`Process::stop`].
pub struct Process {
    child: Child,
    /// `host:port` for `serve`, empty for `worker`.
    pub address: String,
    /// The error and warning lines it logged, for the test's output.
    log: Arc<Mutex<Vec<String>>>,
}

fn command(subcommand: &str, database_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payledger"));
    command.arg(subcommand);
    configure(command, database_url, data_dir, env)
}

fn configure(mut command: Command, database_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    command
        .env("DATABASE_URL", database_url)
        .env("PAYLEDGER_DATA_DIR", data_dir)
        .env("PAYLEDGER_ADMIN_USERNAME", ADMIN.0)
        .env("PAYLEDGER_ADMIN_PASSWORD", ADMIN.1)
        .env("PAYLEDGER_CARD_KEYS", CARD_KEY)
        .env("PAYLEDGER_DEMO_ORGANIZATIONS", "0")
        .env("PAYLEDGER_LOG", "info")
        .env("PAYLEDGER_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl Process {
    /// `payledger serve` on a random port; returns once it announced its address.
    pub async fn serve(database_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> Process {
        let mut command = command("serve", database_url, data_dir, env);
        command.args(["--bind", "127.0.0.1:0"]);
        Process::spawn(command, true).await
    }

    /// `payledger serve` on a random port with SIGXFSZ ignored, so that when its file-size limit
    /// (`RLIMIT_FSIZE`) is lowered a write past it fails with `EFBIG` instead of killing the process.
    pub async fn serve_ignoring_sigxfsz(database_url: &str, data_dir: &Path) -> Process {
        // An ignored signal stays ignored across exec.
        let mut command = Command::new("bash");
        command.args(["-c", "trap '' XFSZ; exec \"$@\"", "bash", env!("CARGO_BIN_EXE_payledger"), "serve"]);
        let mut command = configure(command, database_url, data_dir, &[]);
        command.args(["--bind", "127.0.0.1:0"]);
        Process::spawn(command, true).await
    }

    /// `payledger worker` (payout workers only).
    pub async fn worker(database_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> Process {
        Process::spawn(command("worker", database_url, data_dir, env), false).await
    }

    async fn spawn(mut command: Command, serving: bool) -> Process {
        let mut child = command.spawn().expect("spawn payledger");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut address = String::new();
        if serving {
            address = tokio::time::timeout(Duration::from_secs(60), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                    if entry["fields"]["message"] == "payledger is serving" {
                        return entry["fields"]["address"].as_str().map(str::to_owned);
                    }
                }
                None
            })
            .await
            .ok()
            .flatten()
            .expect("the server announced its address");
        }
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = log.clone();
        // Keep draining stderr so the child never blocks on a full pipe; keep the last problems it reported.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"ERROR\"") || line.contains("\"WARN\"") || !line.starts_with('{') {
                    // Only what the problem was, so repeats of it can be counted.
                    let line = match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(entry) => {
                            format!("{} {} {}", entry["level"], entry["fields"]["message"], entry["fields"]["error"])
                        }
                        Err(_) => line,
                    };
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }
        });
        Process { child, address, log }
    }

    /// The process id (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("a running process has an id")
    }

    /// The URL of a path on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Fails the test if the process has exited (it must survive every fault).
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what} exited ({status}); its last problems:\n{}", self.problems());
        }
    }

    /// The warnings and errors it logged, each once with how often.
    pub fn problems(&self) -> String {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        for line in log.iter() {
            *counts.entry(line.as_str()).or_default() += 1;
        }
        counts.iter().map(|(line, count)| format!("  {count:>5} × {line}")).collect::<Vec<_>>().join("\n")
    }

    /// Stops it with SIGTERM and asserts a clean exit.
    pub async fn stop(mut self, what: &str) {
        self.assert_running(what);
        let stopping = std::time::Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().await;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{what} did not stop within a minute of SIGTERM"))
            .expect("wait");
        assert!(status.success(), "{what} stops cleanly on SIGTERM: {status}\n{}", self.problems());
        eprintln!("{what} stopped {:?} after SIGTERM", stopping.elapsed());
    }
}

/// Runs `payledger verify` on the database and fails the test on any problem.
pub async fn assert_verified(database_url: &str, data_dir: &Path) {
    let output = command("verify", database_url, data_dir, &[])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("run payledger verify");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "payledger verify failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("payledger verify: {}", stdout.lines().last().unwrap_or_default());
}

/// The resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
