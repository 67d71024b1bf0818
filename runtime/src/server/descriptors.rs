//! The process's file-descriptor limit against `server.max_connections`: each connection holds one
//! descriptor, so a cap above the limit cannot be reached, and accepts fail with EMFILE first.

/// Descriptors kept for what is not a client connection: the listener, backend connections and
/// files, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The soft "Max open files" limit (`ulimit -n`) from a `/proc/<pid>/limits` text, when it is a
/// number.
pub fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The start-up warning when `max_connections` does not fit under a soft limit of `open_files`.
pub fn warning(max_connections: usize, open_files: u64) -> Option<String> {
    let usable = open_files.saturating_sub(RESERVED_DESCRIPTORS);
    (max_connections as u64 > usable).then(|| {
        format!(
            "server.max_connections is {max_connections} but the process may open {open_files} files (ulimit -n): past about {usable} connections accepts fail for want of descriptors; raise the limit (ulimit -n, LimitNOFILE=) to at least {} or lower server.max_connections",
            max_connections as u64 + RESERVED_DESCRIPTORS
        )
    })
}

/// Logs the warning for this process, where its limits can be read.
pub fn check(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    if let Some(message) = soft_open_files(&limits).and_then(|n| warning(max_connections, n)) {
        tracing::warn!(max_connections, "{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 1048576              files     \n";

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        assert_eq!(soft_open_files(LIMITS), Some(1024));
        assert_eq!(
            soft_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(soft_open_files(""), None);
    }

    #[test]
    fn a_cap_over_the_limit_is_named_with_both_numbers() {
        let message = warning(4096, 1024).expect("4096 does not fit under 1024");
        assert!(message.contains("4096") && message.contains("1024") && message.contains("960"));
        assert!(warning(4096, 1_048_576).is_none());
        assert!(warning(960, 1024).is_none());
        assert!(warning(961, 1024).is_some());
    }
}
