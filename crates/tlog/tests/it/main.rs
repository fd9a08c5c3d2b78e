//! Integration tests of `cairn-tlog`, one module per topic.

mod checkpoint;
mod crash;
mod entry;
mod frontier;
mod log;
mod proofs;
mod support;
mod vectors;
