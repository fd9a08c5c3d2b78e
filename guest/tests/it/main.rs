//! cairn-guest integration tests: the boot flow and the guest agent against a stub KMS
//! over real RA-TLS on loopback, the TDX simulator, and the public Python dstack SDK.

mod agent;
mod boot;
mod cli;
mod host_api;
mod python_sdk;
mod world;
