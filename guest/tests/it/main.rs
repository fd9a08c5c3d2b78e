//! cairn-guest integration tests: the boot flow and the guest agent against a stub KMS
//! over real RA-TLS on loopback, the TDX simulator, the public Python dstack SDK, and
//! (for the docker-compose runner's refusals) the machine's Docker engine.

mod agent;
mod agent_http;
mod boot;
mod cli;
mod compose;
mod host_api;
mod js_sdk;
mod kms_chain;
mod python_sdk;
mod rust_sdk;
mod world;
