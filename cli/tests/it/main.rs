//! `cairn` against the real services (in-process, `cairn_e2e`), real guests, KMS and
//! anvil.

mod gateway;
mod vm;
