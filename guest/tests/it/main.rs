//! cairn-guest integration tests: the boot flow and the guest agent against the real KMS
//! (in-process, over real RA-TLS on loopback, with anvil and the Cairn contracts) and
//! hostile variants of it, the TDX simulator, the public Python, JS and Rust dstack SDKs,
//! and (for the docker-compose runner's refusals) the machine's Docker engine.

mod agent;
mod agent_http;
mod boot;
mod cli;
mod compose;
mod host_api;
mod hostile;
mod js_sdk;
mod kms_chain;
mod python_sdk;
mod rust_sdk;
mod world;
