//! Processes as `/proc` shows them: identity (pid + start time + boot id, so a reused
//! pid is never taken for a guest), sessions (a guest and everything it starts share
//! one), and signals (through `rustix`, no `unsafe` here).

use std::path::{Path, PathBuf};

pub use rustix::process::Signal;
use rustix::process::{kill_process, Pid};

use crate::store::ProcessRef;

/// Largest `/proc/<pid>/stat` read.
const MAX_STAT_LEN: u64 = 4096;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Single-letter state (`R`, `S`, `Z`, …).
    pub state: char,
    /// Parent pid.
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
    /// Session id.
    pub session: u32,
    /// Start time, clock ticks after boot.
    pub start_ticks: u64,
}

/// Parse the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted after the
/// *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: state (3), ppid (4), pgrp (5), session (6), … starttime (22).
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

fn read_small(path: &Path, max: u64) -> Option<String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    f.take(max).read_to_string(&mut s).ok()?;
    Some(s)
}

/// The stat of `pid`, or `None` when it does not exist.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&read_small(
        &Path::new("/proc").join(pid.to_string()).join("stat"),
        MAX_STAT_LEN,
    )?)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), or empty if unreadable.
pub fn boot_id() -> String {
    read_small(Path::new("/proc/sys/kernel/random/boot_id"), 64)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The identity of a running `pid`.
pub fn identify(pid: u32) -> Option<ProcessRef> {
    let s = stat(pid)?;
    Some(ProcessRef {
        pid,
        start_ticks: s.start_ticks,
        boot_id: boot_id(),
    })
}

/// Whether `p` is still the same, live (not zombie) process.
pub fn is_alive(p: &ProcessRef) -> bool {
    match stat(p.pid) {
        Some(s) => s.start_ticks == p.start_ticks && s.state != 'Z' && p.boot_id == boot_id(),
        None => false,
    }
}

/// The live processes whose session id is `sid`.
pub fn session_members(sid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.session == sid && s.state != 'Z'))
        .collect()
}

/// The current directory of `pid`.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(Path::new("/proc").join(pid.to_string()).join("cwd")).ok()
}

/// Send `signal` to `pid` (errors such as "no such process" are ignored: the caller
/// checks liveness itself).
pub fn signal(pid: u32, signal: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(e) = kill_process(pid, signal) {
        tracing::debug!(pid = pid.as_raw_nonzero().get(), error = %e, "signal not delivered");
    }
}

/// SIGKILL every live member of session `sid` for which `keep` says true. Returns how
/// many were signalled.
pub fn kill_session(sid: u32, keep: impl Fn(u32) -> bool) -> usize {
    let members: Vec<u32> = session_members(sid)
        .into_iter()
        .filter(|p| keep(*p))
        .collect();
    for pid in &members {
        signal(*pid, Signal::KILL);
    }
    members.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_names_with_spaces_and_parentheses() {
        let line = "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.session, 4242);
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_identified_and_a_changed_start_time_is_not_it() {
        let me = identify(std::process::id()).unwrap();
        assert!(is_alive(&me));
        let reused = ProcessRef {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!is_alive(&reused));
        let other_boot = ProcessRef {
            boot_id: "another-boot".into(),
            ..me
        };
        assert!(!is_alive(&other_boot));
    }
}
