//! The RPC quorum: every read is asked of every endpoint at once, and an answer is used
//! only when `quorum` endpoints gave it and none that answered before said otherwise.
//!
//! Rules (docs/onchain-client.md, "RPC quorum"):
//! - answers are compared for equality; the first conflicting answer ends the read with
//!   [`Error::ChainDisagreement`] (logged with every endpoint's answer, counted);
//! - once `quorum` endpoints agree the read is done and slower endpoints are not waited
//!   for, so a stalled endpoint costs nothing while enough others answer;
//! - an endpoint failure (timeout, transport, RPC error) only removes its vote; when the
//!   remaining endpoints can no longer reach the quorum the read fails: with the failure
//!   itself when no endpoint answered, else [`Error::NoQuorum`];
//! - transactions and event history go to the first endpoint whose last call did not
//!   fail for transport reasons ([`Endpoints::primary`]).

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alloy::providers::DynProvider;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::bindings::KmsAuth;
use crate::connection::Connection;
use crate::error::{Error, Result};

/// One endpoint: its connection, a KmsAuth handle on it, and whether its last call
/// succeeded at the transport level.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) conn: Connection,
    pub(crate) kms: KmsAuth::KmsAuthInstance<DynProvider>,
    healthy: AtomicBool,
}

impl Endpoint {
    pub(crate) fn new(conn: Connection, kms_auth: alloy::primitives::Address) -> Self {
        let kms = KmsAuth::new(kms_auth, conn.provider().clone());
        Self {
            conn,
            kms,
            healthy: AtomicBool::new(true),
        }
    }

    pub(crate) fn label(&self) -> &str {
        self.conn.label()
    }

    fn record<T>(&self, r: &Result<T>) {
        // A revert or a denial comes from a healthy endpoint; only failures to get an
        // answer at all mark it unhealthy.
        let failed = matches!(r, Err(e) if e.is_retryable());
        self.healthy.store(!failed, Ordering::Relaxed);
    }
}

/// The configured endpoints and their quorum.
#[derive(Debug)]
pub(crate) struct Endpoints {
    list: Vec<Endpoint>,
    quorum: usize,
    disagreements: AtomicU64,
}

impl Endpoints {
    /// `list` is non-empty and `1 ≤ quorum ≤ list.len()` (checked by the caller).
    pub(crate) fn new(list: Vec<Endpoint>, quorum: usize) -> Result<Self> {
        if list.is_empty() || quorum == 0 || quorum > list.len() {
            return Err(Error::misconfigured(format!(
                "quorum {quorum} must be between 1 and the number of endpoints ({})",
                list.len()
            )));
        }
        Ok(Self {
            list,
            quorum,
            disagreements: AtomicU64::new(0),
        })
    }

    pub(crate) fn quorum(&self) -> usize {
        self.quorum
    }

    pub(crate) fn all(&self) -> &[Endpoint] {
        &self.list
    }

    /// How many reads ended in [`Error::ChainDisagreement`] so far.
    pub(crate) fn disagreements(&self) -> u64 {
        self.disagreements.load(Ordering::Relaxed)
    }

    /// Where transactions and history queries go: the first endpoint whose last call
    /// did not fail at the transport level, else the first.
    pub(crate) fn primary(&self) -> &Endpoint {
        self.list
            .iter()
            .find(|e| e.healthy.load(Ordering::Relaxed))
            .unwrap_or(&self.list[0])
    }

    /// Asks `ask` of every endpoint at once and returns the answer `quorum` of them gave
    /// (see the module docs). `what` names the question in errors and logs; it is only
    /// evaluated when something goes wrong.
    pub(crate) async fn agree<'a, T, F, Fut>(
        &'a self,
        what: impl Fn() -> String,
        ask: F,
    ) -> Result<T>
    where
        T: PartialEq + Debug,
        F: Fn(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if let [only] = self.list.as_slice() {
            let r = ask(only).await;
            only.record(&r);
            return r;
        }
        self.gather(&what, ask, |answers| {
            let (_, v) = answers.last()?;
            if answers.iter().any(|(_, a)| a != v) {
                return Some(Err(self.disagreement(what(), answers)));
            }
            if answers.len() < self.quorum {
                return None;
            }
            answers.pop().map(|(_, v)| Ok(v))
        })
        .await
    }

    /// Asks `ask` of every endpoint at once and returns the first `quorum` successful
    /// answers with their endpoint index, without comparing them (heads differ between
    /// honest endpoints). Fails as [`Endpoints::agree`] does when too few answer.
    pub(crate) async fn first_answers<'a, T, F, Fut>(
        &'a self,
        what: impl Fn() -> String,
        ask: F,
    ) -> Result<Vec<(usize, T)>>
    where
        F: Fn(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.gather(&what, ask, |answers| {
            (answers.len() >= self.quorum).then(|| Ok(std::mem::take(answers)))
        })
        .await
    }

    /// Asks `ask` of every endpoint at once and hands the successful answers so far
    /// (with their endpoint index, in arrival order) to `settle` after each one; the
    /// first `Some` it returns is the outcome. Fails as [`Endpoints::agree`] does when the
    /// endpoints that are left can no longer settle it.
    async fn gather<'a, T, R, F, Fut>(
        &'a self,
        what: impl Fn() -> String,
        ask: F,
        mut settle: impl FnMut(&mut Vec<(usize, T)>) -> Option<Result<R>>,
    ) -> Result<R>
    where
        F: Fn(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut pending = self.ask_all(ask);
        let mut answers = Vec::with_capacity(self.quorum);
        let mut first_error: Option<Error> = None;
        while let Some((i, r)) = pending.next().await {
            let ep = &self.list[i];
            ep.record(&r);
            match r {
                Ok(v) => {
                    answers.push((i, v));
                    if let Some(outcome) = settle(&mut answers) {
                        return outcome;
                    }
                }
                Err(e) => {
                    if self.failed(ep, e, &mut first_error, answers.len() + pending.len()) {
                        break;
                    }
                }
            }
        }
        Err(self.shortfall(what, answers.len(), first_error))
    }

    /// `ask` of every endpoint at once; each answer comes with its endpoint's index.
    fn ask_all<'a, T, F, Fut>(
        &'a self,
        ask: F,
    ) -> FuturesUnordered<impl Future<Output = (usize, Result<T>)>>
    where
        F: Fn(&'a Endpoint) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.list
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                let fut = ask(ep);
                async move { (i, fut.await) }
            })
            .collect()
    }

    /// Why fewer than `quorum` endpoints answered alike when `agreeing` did: the first
    /// endpoint error itself when none answered, else [`Error::NoQuorum`] with it as source.
    /// Logs `ep`'s failure and keeps the first error; true when the `possible` answers
    /// still to be had (given plus pending) can no longer make a quorum.
    fn failed(
        &self,
        ep: &Endpoint,
        e: Error,
        first_error: &mut Option<Error>,
        possible: usize,
    ) -> bool {
        tracing::debug!(endpoint = ep.label(), error = %e, "RPC endpoint failed");
        first_error.get_or_insert(e);
        possible < self.quorum
    }

    fn shortfall(
        &self,
        what: impl Fn() -> String,
        agreeing: usize,
        first_error: Option<Error>,
    ) -> Error {
        let source = first_error.unwrap_or_else(|| Error::misconfigured("no RPC endpoints"));
        if agreeing == 0 {
            return source;
        }
        Error::NoQuorum {
            what: what(),
            needed: self.quorum,
            agreeing,
            source: Box::new(source),
        }
    }

    #[cold]
    fn disagreement<T: Debug>(&self, what: String, answers: &[(usize, T)]) -> Error {
        self.disagreements.fetch_add(1, Ordering::Relaxed);
        let endpoints: Vec<String> = answers
            .iter()
            .map(|(i, _)| self.list[*i].label().to_owned())
            .collect();
        let detail: Vec<String> = answers
            .iter()
            .map(|(i, v)| format!("{} answered {v:?}", self.list[*i].label()))
            .collect();
        tracing::warn!(
            %what,
            endpoints = %endpoints.join(", "),
            answers = %detail.join("; "),
            "RPC endpoints disagree; neither answer is used"
        );
        Error::ChainDisagreement { endpoints, what }
    }
}
