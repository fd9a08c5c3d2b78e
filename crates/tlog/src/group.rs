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
