//! `cairn` against the real services (in-process, `cairn_e2e`), real guests, KMS and
//! anvil.

mod app;
mod attest;
mod audit;
mod chain;
mod dao;
mod devnet;
mod env;
mod exit_codes;
mod gateway;
mod kms;
mod plumbing;
mod vm;
