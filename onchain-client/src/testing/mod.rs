//! Test support (feature `test-utils`): the project's pinned anvil, one fixture of a
//! deployed Cairn system on it, a JSON-RPC proxy that can lie, a KMS log in memory
//! that can lie to the auditor, and a wait on a policy head's advances.
//!
//! The feature only adds this module; it changes no behaviour of the rest of the crate.
//! Helpers panic with a message when the plumbing itself fails (that is a failed test);
//! they never skip: a test that needs anvil fails loudly without it.
//!
//! # Layout
//! - `anvil`: find and spawn the npm-pinned anvil on a free port ([`spawn_anvil`]).
//! - `head`: [`head_advances`] — wait until a policy head advanced `n` more times.
//! - `log`: [`MemoryLog`] — a KMS log held in memory, served to the auditor as a
//!   `LogSource`, honest or lying ([`LogLie`]).
//! - `fixture`: [`AnvilChain`] — anvil with KmsAuth deployed; mine, move time, deploy
//!   apps, register a KMS identity and nodes.
//! - `proxy`: [`RpcProxy`] — an HTTP(S) JSON-RPC proxy in front of anvil that forwards,
//!   or lies ([`Behaviour`]): flips verdicts, changes block hashes, freezes the head,
//!   rewinds anchor events, stalls, fails.

mod anvil;
mod fixture;
mod head;
mod log;
mod proxy;

// The public interface is:
pub use anvil::{find_anvil, spawn_anvil, spawn_anvil_with, ANVIL_ENV, NPM_ANVIL_PATH};
pub use fixture::{AnvilChain, KmsNodeRegistration, FIXTURE_MAX_HEAD_AGE, FIXTURE_TIMEOUT};
pub use head::head_advances;
pub use log::{LogLie, MemoryLog};
pub use proxy::{Behaviour, RpcProxy, MAX_PROXY_BODY};
