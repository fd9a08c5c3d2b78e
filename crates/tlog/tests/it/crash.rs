//! Crash test: a child process appends in a loop and is killed with SIGKILL
//! at pseudo-random points; after each kill the log must reopen with every
//! acknowledged entry present and a root equal to a recomputation.
//!
//! The child is this same test binary, re-executed to run the ignored test
//! `crash::crash_writer_child` with `CAIRN_TLOG_CRASH_DIR` set.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_tlog::{verify_consistency, Hash, Log, MemoryTree, MAX_ENTRIES_PER_READ};

use crate::support::SplitMix;

const DIR_VAR: &str = "CAIRN_TLOG_CRASH_DIR";
const SEED_VAR: &str = "CAIRN_TLOG_CRASH_SEED";
const ROUNDS: u64 = 8;
/// Bound on the child's work, in case the parent never kills it.
const CHILD_MAX_ENTRIES: u64 = 200_000;
const ACK_DEADLINE: Duration = Duration::from_secs(60);

fn crash_entry(index: u64) -> Vec<u8> {
    format!("crash entry {index}").into_bytes()
}

/// The writer. Does nothing unless started by the parent test below.
#[test]
#[ignore = "helper process for crash_at_random_points_loses_no_acknowledged_entry"]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut rng = SplitMix(seed);
    let log = Log::open(&dir).expect("child opens the log");
    let mut stdout = std::io::stdout().lock();
    while log.size() < CHILD_MAX_ENTRIES {
        let first = log.size();
        let len = rng.range(1, 9);
        let batch: Vec<Vec<u8>> = (first..first + len).map(crash_entry).collect();
        let index = log.append_batch(&batch).expect("append");
        assert_eq!(index, first);
        // Printed only after append_batch returned: the entries are durable.
        writeln!(stdout, "ack {first} {len}").expect("stdout");
        stdout.flush().expect("stdout");
    }
}

/// Reads every entry of the log and recomputes its root.
fn recompute(log: &Log) -> Hash {
    let mut tree = MemoryTree::new();
    let size = log.size();
    let mut start = 0;
    while start < size {
        let end = (start + MAX_ENTRIES_PER_READ).min(size);
        for (i, entry) in log.entries(start..end).expect("entries").iter().enumerate() {
            assert_eq!(
                entry,
                &crash_entry(start + i as u64),
                "entry {}",
                start + i as u64
            );
            tree.push(entry);
        }
        start = end;
    }
    tree.root()
}

fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("ack ")?;
    let (first, len) = rest.split_once(' ')?;
    Some((first.parse().ok()?, len.parse().ok()?))
}

#[test]
fn crash_at_random_points_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = SplitMix(0x5eed_c0ffee);
    let mut prev = (0u64, Hash::EMPTY_ROOT);
    let mut acked_end = 0u64;
    for round in 0..ROUNDS {
        // Round 0 kills the child as soon as it is started (maybe while it
        // opens the log); the others after a random number of acks.
        let kill_after = if round == 0 { 0 } else { rng.range(1, 120) };
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash::crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(SEED_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = parse_ack(&line) {
                    if tx.send(ack).is_err() {
                        break;
                    }
                }
            }
        });
        let deadline = Instant::now() + ACK_DEADLINE;
        let mut seen = 0u64;
        while seen < kill_after {
            let left = deadline.saturating_duration_since(Instant::now());
            let (first, len) = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("round {round}: no ack before deadline: {e}"));
            acked_end = acked_end.max(first + len);
            seen += 1;
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "round {round}: child was killed");
        reader.join().expect("reader thread");
        // Acks printed before the kill that we had not read yet count too.
        for (first, len) in rx.try_iter() {
            acked_end = acked_end.max(first + len);
        }

        let log = Log::open(dir.path()).expect("log reopens after SIGKILL");
        let (size, root) = log.head();
        assert!(
            size >= acked_end,
            "round {round}: size {size} lost acknowledged entries below {acked_end}"
        );
        eprintln!(
            "round {round}: killed after {seen} acks; acknowledged {acked_end}, recovered {size}"
        );
        assert_eq!(recompute(&log), root, "round {round}: root matches entries");
        let proof = log.consistency_proof(prev.0, size).expect("proof");
        verify_consistency(prev.0, size, &prev.1, &root, &proof)
            .unwrap_or_else(|e| panic!("round {round}: not append-only across crash: {e}"));
        prev = (size, root);
    }
    assert!(prev.0 > 0, "the children appended something");
}
