//! Test support (feature `test-utils`): the test cluster of the KMS, e2e and guest tests
//! and benchmarks — the simulated Intel PKI anchored now, the cluster's master secret,
//! anvil with the Cairn system deployed and the cluster's root keys registered — and KMS
//! nodes of it serving on free ports, honest or in disguise, or as `cairn-kms` processes.
//!
//! The feature only adds this module; it changes no behaviour of the rest of the crate.
//! Helpers panic with a message when the plumbing itself fails (that is a failed test);
//! nothing here is mocked: the chain is anvil, the node is [`Node`](crate::Node) served by
//! the real accept loop, the quotes are the simulator's real TDX v4 quotes.
//!
//! # Layout
//! - `cluster`: the cluster's constants ([`MASTER`], [`CONFIRMATIONS`], [`image`], [`pki`],
//!   [`verifier`], [`root_keys`], [`kms_client`], [`checked_get_key`]) and a simulated [`Guest`] (its TD, boot
//!   measurements and RA-TLS client certificates) for calling the KMS directly.
//! - `net`: [`TestNet`] — `cairn_onchain::testing::AnvilChain` with the cluster's root
//!   keys; registers, opens and serves nodes, and lets their policy heads see what is
//!   mined; [`install_master`], [`held_generations`] and [`open_live_store`] on a node's secret store.
//! - `running`: [`RunningKms`] — a node serving on `127.0.0.1:0`; stop, URL, clients.
//!   [`TestNet::serve_disguised`] serves a node under another TLS certificate and router
//!   (the real router behind a tampering layer): a hostile KMS that is the real one with
//!   exactly one thing changed.
//! - `procs`: [`ProcCluster`] — real `cairn-kms` processes ([`ProcNode`]: own config, data
//!   directory and fixed port; `kill -9`, SIGTERM, restart at the same URL) on a
//!   [`TestNet`]'s chain, node 0 holding [`MASTER`] and the others onboarded from it,
//!   configured by [`ClusterOptions`]; [`FailoverClient`] asks each KMS URL in turn for one
//!   release as a booting guest does ([`Held`] releases, [`AllFailed`] rounds), over
//!   [`proc_client`]; [`free_port`], [`READY_DEADLINE`]. Used by the fault tests and the
//!   soak benchmark (`examples/kms_soak.rs`).

mod cluster;
mod net;
mod procs;
mod running;

// The public interface is:
pub use cluster::{
    checked_get_key, image, kms_client, pki, root_keys, unlisted_image, verifier, verifier_for,
    Guest, CONFIRMATIONS, DEADLINE, HEAD_POLL, MASTER, MAX_HEAD_AGE, NODE_CALL_TIMEOUT, PKI_SEED,
};
pub use net::{held_generations, install_master, open_live_store, TestNet};
pub use procs::{
    free_port, proc_client, AllFailed, ClusterOptions, FailoverClient, Held, ProcCluster, ProcNode,
    READY_DEADLINE,
};
pub use running::RunningKms;
