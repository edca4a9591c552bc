//! A PostgreSQL cluster of a test's (or the fault bench's) own, durable whatever the shared test
//! cluster uses, which it may stop, crash and start again without touching anyone else's data.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The newest PostgreSQL server binaries installed (as `deploy/dev` finds them).
pub fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (deploy/dev installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists() && bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect("pg_ctl and initdb")
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn tool(bin: &Path, args: &[&str]) -> std::process::Output {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.current_dir("/")
        .args(args)
        .output()
        .expect("running a PostgreSQL tool")
}

/// A throw-away durable cluster (`fsync`, `synchronous_commit`, `full_page_writes` on) on a
/// free loopback port; stopped and removed on drop.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Its port.
    pub port: u16,
    /// `max_connections`.
    pub max_connections: u32,
}

impl Cluster {
    /// initdb and start.
    pub fn create() -> Self {
        let bin = bindir();
        let dir = std::env::temp_dir().join(format!("strata-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let data = dir.join("data");
        // The postgres user must own its directory.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
        let out = tool(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self {
            bin,
            data,
            port,
            max_connections: 100,
        };
        cluster.start();
        cluster
    }

    fn data(&self) -> &str {
        self.data.to_str().expect("utf-8 path")
    }

    fn try_start(&self) -> std::process::Output {
        let data = self.data();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{data}' \
             -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections={}",
            self.port, self.max_connections
        );
        let log = self.data.with_file_name("pg.log");
        tool(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// Starts the cluster and waits until it accepts connections.
    pub fn start(&self) {
        let out = self.try_start();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the cluster after [`Cluster::kill`]: the killed postmaster's backends notice its
    /// death and exit on their own, and until they have, the old shared memory is in use and
    /// a start is refused; this waits for that (30 s at most).
    pub fn start_after_kill(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.try_start();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pg_ctl start after a kill: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The crash: no shutdown checkpoint, nothing flushed that was not already.
    pub fn crash(&self) {
        self.stop_with("immediate");
    }

    /// A clean shutdown (`-m fast`: sessions are cut, a checkpoint is written).
    pub fn stop(&self) {
        self.stop_with("fast");
    }

    fn stop_with(&self, mode: &str) {
        let out = tool(
            &self.bin.join("pg_ctl"),
            &["-D", self.data(), "-m", mode, "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop -m {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The postmaster's pid (the first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> u32 {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid of a running cluster");
        pid.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("a pid in postmaster.pid")
    }

    /// `kill -9` of the postmaster.
    pub fn kill(&self) {
        let pid = self.postmaster_pid().to_string();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid}");
    }

    /// The superuser URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = tool(
            &self.bin.join("pg_ctl"),
            &["-D", self.data(), "-m", "immediate", "stop"],
        );
        if let Some(dir) = self.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
