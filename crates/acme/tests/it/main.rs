//! cairn-acme integration tests: issuance and renewal against a real Pebble (Debian's
//! `pebble` and `pebble-challtestsrv`, started per test on free loopback ports), the
//! Cloudflare client against a local server speaking Cloudflare's API shapes, and the
//! monitor checks against quotes from the TDX simulator.

mod cloudflare;
mod monitor;
mod pebble_tests;
mod sim;
