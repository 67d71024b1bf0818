//! The proxy under load runs as its own process, so its CPU time and peak memory are its own, read
//! from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `prism-proxy` child process.
pub struct ProxyProcess {
    child: Child,
    /// Its URL.
    pub url: String,
}

/// CPU seconds (user + system) and peak RSS of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_seconds: f64,
    /// Peak resident set size in bytes (VmHWM).
    pub peak_rss_bytes: u64,
}

/// The `prism-proxy` binary: `PRISM_PROXY_BIN`, else next to the running executable (cargo puts
/// both binaries in one directory; test executables sit one level below, in `deps/`).
pub fn proxy_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PRISM_PROXY_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("prism-proxy"), dir.parent()?.join("prism-proxy")]
        .into_iter()
        .find(|p| p.is_file())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time and peak RSS so far of process `pid` (this process: `std::process::id()`), from
/// `/proc/<pid>`; zeros where `/proc` is not readable.
pub fn usage_of(pid: u32) -> Usage {
    let cpu_seconds = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / clock_ticks())
        })
        .unwrap_or(0.0);
    let peak_rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0);
    Usage {
        cpu_seconds,
        peak_rss_bytes,
    }
}

impl ProxyProcess {
    /// Starts `binary --config config --listen 127.0.0.1:port` and waits until it accepts calls.
    pub async fn start(
        binary: &Path,
        config: &Path,
        port: u16,
        log: &Path,
    ) -> Result<Self, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("PRISM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut proc = Self { child, url };
        loop {
            if let Ok(Some(status)) = proc.child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("prism-proxy exited at start ({status}): {text}"));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(proc);
            }
            if started.elapsed() > Duration::from_secs(30) {
                proc.stop();
                return Err("prism-proxy did not listen within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time and peak RSS so far, from `/proc/<pid>`.
    pub fn usage(&self) -> Usage {
        usage_of(self.child.id())
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (then kills after 10 s).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
