//! cairn-e2e scenarios: each test runs its own anvil with the Cairn contracts, the real
//! KMS in-process on a free port (simulator TEE, sled, transparency log) and the real
//! guest boot on the TDX simulator with the `process` runner (see `cairn_e2e`), or the
//! `docker-compose` runner on the machine's Docker engine (`docker_compose`);
//! `vmm` runs the VMM with the real `cairn-guest` binary.

mod acme;
mod audit;
mod audit_policy;
mod audit_rollback;
mod boot;
mod cluster;
mod docker_compose;
mod gateway;
mod governance;
mod python_sdk;
mod rotation;
mod vmm;
mod vmm_page;
