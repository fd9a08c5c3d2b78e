//! Integration tests of cairn-onchain against a real anvil (the pinned npm binary).
//! Every test spawns its own anvil on a free port.

mod admin;
mod anchoring;
mod common;
mod connect;
mod dao;
mod head;
mod history;
mod misbehaving;
mod pinning;
mod policy;
mod quorum;
mod receipt;
mod tls;
