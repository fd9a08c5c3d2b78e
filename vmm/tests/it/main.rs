//! cairn-vmm integration tests that need no chain, KMS or guest: the API's validation,
//! auth and OpenAPI document against a VMM served in-process on a temp unix socket and
//! loopback TCP. The end-to-end scenarios (anvil + KMS + guests) are in `cairn-e2e`.

mod api;
mod openapi;
mod page;
mod support;
