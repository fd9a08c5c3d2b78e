//! Integration tests of cairn-attestation: one binary, one module per topic.

mod cache;
mod common;
mod fixtures;
mod negative;
mod pccs;
mod pccs_limits;
mod possession;
mod ratls;
mod simulator;
