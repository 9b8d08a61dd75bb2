//! A private PostgreSQL cluster that one test starts, restarts and stops by itself (`initdb` + `pg_ctl` on a
//! free port in a temp dir), so restarting it never disturbs the shared server the other tests use.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

/// A running private cluster; stopped (immediately) and removed when dropped.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The uid and gid to run PostgreSQL's tools as: `postgres` when the test runs as root (PostgreSQL
    /// refuses to run as root), else none.
    owner: Option<(u32, u32)>,
    /// Extra server settings (`-c name=value`) the test asked for.
    settings: Vec<String>,
    pub port: u16,
}

/// The folder with `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/*/bin`, else the `PATH`'s.
fn bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(PathBuf::from).find(|dir| dir.join("initdb").exists())
}

/// Our effective uid, from `/proc` (no libc binding needed).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let fields: Vec<&str> = passwd.lines().find(|line| line.starts_with("postgres:"))?.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").port()
}

impl PgCluster {
    /// Starts a fresh cluster, or says it was skipped (`None`) when PostgreSQL is not installed. With
    /// `PAYLEDGER_REQUIRE_POSTGRES_TESTS=1` (CI) a missing installation fails the test instead.
    pub async fn start() -> Option<PgCluster> {
        PgCluster::start_with(&[]).await
    }

    /// [`PgCluster::start`] with extra server settings, each `name=value` (later ones win over the defaults).
    pub async fn start_with(settings: &[&str]) -> Option<PgCluster> {
        let Some(bin) = bindir() else {
            if std::env::var("PAYLEDGER_REQUIRE_POSTGRES_TESTS").is_ok_and(|v| v == "1") {
                panic!("PAYLEDGER_REQUIRE_POSTGRES_TESTS=1 but no initdb was found (install postgresql)");
            }
            eprintln!("SKIPPED: PostgreSQL test (no initdb in /usr/lib/postgresql/*/bin or on PATH)");
            return None;
        };
        let owner = if euid() == Some(0) {
            Some(postgres_user().expect("running as root: a `postgres` user to run the private cluster as"))
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("payledger-faults-pg").tempdir().expect("cluster dir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster dir");
        }
        let settings = settings.iter().map(|setting| format!(" -c {setting}")).collect();
        let cluster = PgCluster { dir, bin, owner, settings, port: free_port() };
        let data = cluster.data();
        cluster.run("initdb", &["-D", &data, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]).await;
        cluster.pg_ctl(&["start"]).await;
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The URL of the cluster's `postgres` database (each test owns the whole cluster).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin.join(tool));
        command.current_dir(self.dir.path()).kill_on_drop(true);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn run(&self, tool: &str, args: &[&str]) {
        let output = self.command(tool).args(args).output().await.expect("run a PostgreSQL tool");
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// `pg_ctl <action>` with this cluster's options, waiting until it is done.
    async fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200{}",
            self.port,
            self.dir.path().display(),
            self.settings.concat()
        );
        let log = self.dir.path().join("log").display().to_string();
        let mut args = vec!["-D".to_owned(), self.data(), "-o".to_owned(), options, "-l".to_owned(), log];
        args.extend(["-w".to_owned(), "-t".to_owned(), "60".to_owned()]);
        args.extend(action.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("pg_ctl", &args).await;
    }

    /// `pg_ctl restart -m fast`: every connection is closed, and the server is back when this returns.
    pub async fn restart_fast(&self) {
        self.pg_ctl(&["-m", "fast", "restart"]).await;
    }

    /// `pg_ctl stop -m fast`.
    pub async fn stop_fast(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]).await;
    }

    /// `pg_ctl start`, returning once the server accepts connections.
    pub async fn start_again(&self) {
        self.pg_ctl(&["start"]).await;
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut command = std::process::Command::new(self.bin.join("pg_ctl"));
        command.args(["-D", &self.data(), "-m", "immediate", "-w", "-t", "30", "stop"]);
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let _ = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status();
        // Give the postmaster a moment to release its files before the folder is removed.
        std::thread::sleep(Duration::from_millis(100));
    }
}
