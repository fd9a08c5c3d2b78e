//! `cairn` against the real services (in-process, `cairn_e2e`), real guests, KMS and
//! anvil.

mod audit;
mod devnet;
mod gateway;
mod vm;
