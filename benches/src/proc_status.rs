//! Resident memory and CPU time of a process and its threads, from
//! `/proc` (Linux).

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Resident set size now.
    pub rss_kib: u64,
    /// Peak resident set size.
    pub hwm_kib: u64,
}

fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    }
}

/// Memory of process `pid`, or of this process with `None`; `None` when
/// `/proc` cannot be read.
pub fn memory(pid: Option<u32>) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, fixed at 100
/// in the Linux ABI on x86-64).
pub const TICKS_PER_SEC: u64 = 100;

/// User + system CPU ticks from a `stat` line, and the command name.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // Fields after the command: state is field 3; utime and stime are 14, 15.
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU ticks (user + system) used so far by each live thread of a process,
/// with the thread's name.
pub fn thread_cpu(pid: Option<u32>) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("{}/task", proc_dir(pid))) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .collect()
}

/// CPU ticks (user + system) of a whole process, finished threads included.
pub fn process_cpu(pid: Option<u32>) -> Option<u64> {
    let s = std::fs::read_to_string(format!("{}/stat", proc_dir(pid))).ok()?;
    parse_stat(&s).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let m = memory(None).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        assert!(process_cpu(None).is_some());
        assert!(!thread_cpu(None).is_empty());
        assert_eq!(
            parse_stat("12 (a b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"),
            Some(("a b".into(), 11 + 12))
        );
    }
}
