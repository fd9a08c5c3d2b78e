//! Group commit: concurrent single-entry appends share one commit and one
//! fsync.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::storage::MAX_BATCH_LEN;

/// The queue of callers waiting for a commit.
#[derive(Debug, Default)]
struct Queue {
    /// Ticket of the next submitted entry.
    next_ticket: u64,
    /// Ticket of `pending[0]`.
    first_pending: u64,
    /// Entries submitted but not yet taken by a leader.
    pending: Vec<Vec<u8>>,
    /// Whether a leader is committing right now. While it is, new entries
    /// accumulate and form the next group.
    leader_active: bool,
    /// Outcomes not yet picked up by their callers, by ticket.
    done: HashMap<u64, Result<u64>>,
}

/// Leader/follower group commit.
///
/// Each caller queues its entry. If no commit is running, the caller becomes
/// the leader: it takes every queued entry (up to [`MAX_BATCH_LEN`]),
/// commits them as one batch outside the lock, records each caller's index
/// (or the shared error), and wakes the others. A caller returns only once
/// the commit holding its entry has finished, so `Ok` means durable.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    finished: Condvar,
}

impl GroupCommit {
    /// Submits `entry` and waits until `commit` (called by whichever caller
    /// leads the group) has made it durable; returns its index.
    pub(crate) fn submit(
        &self,
        entry: Vec<u8>,
        commit: impl Fn(&[Vec<u8>]) -> Result<u64>,
    ) -> Result<u64> {
        let mut queue = self.queue.lock().map_err(|_| Error::Poisoned)?;
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.pending.push(entry);
        loop {
            if let Some(outcome) = queue.done.remove(&ticket) {
                return outcome;
            }
            if !queue.leader_active && !queue.pending.is_empty() {
                queue.leader_active = true;
                let take = queue.pending.len().min(MAX_BATCH_LEN);
                let batch: Vec<Vec<u8>> = queue.pending.drain(..take).collect();
                let first_ticket = queue.first_pending;
                queue.first_pending += take as u64;
                drop(queue);
                let outcome = commit(&batch);
                queue = self.queue.lock().map_err(|_| Error::Poisoned)?;
                for i in 0..take as u64 {
                    let result = outcome.clone().map(|first| first + i);
                    queue.done.insert(first_ticket + i, result);
                }
                queue.leader_active = false;
                self.finished.notify_all();
                continue;
            }
            queue = self.finished.wait(queue).map_err(|_| Error::Poisoned)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::*;

    impl GroupCommit {
        fn pending_len(&self) -> usize {
            self.queue.lock().map(|q| q.pending.len()).unwrap_or(0)
        }
    }

    /// A fake commit that records batch sizes; the first call blocks until
    /// released, so the test controls who waits for whom.
    struct Recorder {
        batches: Mutex<Vec<usize>>,
        gate: Mutex<Option<mpsc::Receiver<()>>>,
        next_index: Mutex<u64>,
    }

    impl Recorder {
        fn commit(&self, batch: &[Vec<u8>]) -> Result<u64> {
            // Take the receiver out first so the lock is not held while blocked.
            let gate = self.gate.lock().expect("gate").take();
            if let Some(gate) = gate {
                gate.recv().expect("released");
            }
            self.batches.lock().expect("batches").push(batch.len());
            let mut next = self.next_index.lock().expect("index");
            let first = *next;
            *next += batch.len() as u64;
            Ok(first)
        }
    }

    #[test]
    fn callers_arriving_during_a_commit_share_the_next_commit() {
        let (release, gate) = mpsc::channel();
        let recorder = Arc::new(Recorder {
            batches: Mutex::new(Vec::new()),
            gate: Mutex::new(Some(gate)),
            next_index: Mutex::new(0),
        });
        let group = Arc::new(GroupCommit::default());
        let spawn = |entry: u8| {
            let (group, recorder) = (Arc::clone(&group), Arc::clone(&recorder));
            std::thread::spawn(move || group.submit(vec![entry], |b| recorder.commit(b)))
        };
        // The first caller leads and blocks inside its commit.
        let leader = spawn(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while recorder.gate.lock().expect("gate").is_some() {
            assert!(Instant::now() < deadline, "leader never started");
            std::thread::yield_now();
        }
        // Four more callers queue up behind it.
        let followers: Vec<_> = (1..=4).map(spawn).collect();
        while group.pending_len() < 4 {
            assert!(Instant::now() < deadline, "followers never queued");
            std::thread::yield_now();
        }
        release.send(()).expect("release leader");
        assert_eq!(leader.join().expect("leader").expect("committed"), 0);
        let mut indices: Vec<u64> = followers
            .into_iter()
            .map(|f| f.join().expect("follower").expect("committed"))
            .collect();
        indices.sort_unstable();
        assert_eq!(indices, vec![1, 2, 3, 4]);
        // One commit for the leader, one shared by all four followers.
        assert_eq!(*recorder.batches.lock().expect("batches"), vec![1, 4]);
    }

    #[test]
    fn a_failed_commit_fails_every_caller_of_the_group() {
        let group = GroupCommit::default();
        let outcome = group.submit(vec![1], |_| Err(Error::Poisoned));
        assert!(matches!(outcome, Err(Error::Poisoned)));
        // The queue is usable again afterwards.
        assert_eq!(group.submit(vec![2], |_| Ok(7)).expect("committed"), 7);
    }
}
