//! cairn-guest integration tests: the boot flow and the guest agent against a stub KMS
//! over real RA-TLS on loopback, the TDX simulator, and the public Python dstack SDK.

mod agent;
mod agent_http;
mod boot;
mod cli;
mod js_sdk;
mod kms_chain;
mod python_sdk;
mod rust_sdk;
mod world;
