//! Test support (feature `test-utils`): the Pebble harness that cairn-acme's tests and
//! the cairn-e2e gateway test share — Debian's `pebble` (an ACME CA) and
//! `pebble-challtestsrv` (the DNS server it asks), started per test on free loopback
//! ports, with Pebble's HTTPS listener certified by a CA made here.
//!
//! The feature only adds this module (and `tempfile`, optional, for its temp dir); it
//! changes no behaviour of the rest of the crate. Nothing here is mocked: the CA is
//! Pebble, the DNS is challtestsrv. Helpers panic with a message when the plumbing itself
//! fails (that is a failed test, not an input to handle).
//!
//! What it does not do: install Pebble (`scripts/setup.sh` installs Debian's `pebble`
//! package, which ships both binaries) or hold any secret worth protecting.
//!
//! # Layout
//! - `pebble`: [`Pebble`] — start, its URLs, the listener CA, its issuing root.

mod pebble;

// The public interface is:
pub use pebble::Pebble;
