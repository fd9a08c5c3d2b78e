//! cairn-vmm — the host service that runs CVMs, and asks the chain first.
//!
//! A VMM keeps the CVMs of one host: a manifest and a persisted state machine per CVM,
//! port mappings, console logs, and a backend that runs them — `cairn-guest` processes
//! on the TDX simulator, or TDX guests under QEMU. Before it creates, starts or upgrades
//! a CVM it asks the chain, at a pinned policy block, what the KMS will ask: is the app
//! registered, its compose hash allowed (or scheduled: when?), its OS image allowed. A
//! refused deploy costs nothing and names the failed check in the contract's words.
//! `wait_for_approval` lets an upgrade wait for a DAO vote or timelock.
//!
//! ```text
//!  cairn vm / web page ──HTTP (unix socket, TCP + bearer)──► server ─► Vmm
//!     Vmm: create/start/upgrade ─► preflight (cairn-onchain, head − N)
//!          ─► store (atomic manifest/state) ─► backend command ─► supervisor (setsid)
//!     guest ──host-api.sock──► hostapi (boot progress, display only)
//!     restart: Vmm::open re-adopts live guests (pid + start time + boot id)
//! ```
//!
//! What it trusts: its configuration and state directory, the chain RPC endpoint (chain
//! id checked). What it does **not** do: make a KMS release keys (it can only refuse to
//! run things; the KMS judges the CVM's own evidence), see plaintext env (clients
//! encrypt it for the app's KMS env key), or trust what a guest reports (display only).
//! The process backend gives no isolation at all: development and tests only.
//!
//! # Layout
//! - `config` — [`Config`] (TOML, then `CAIRN_VMM_*`, then flags).
//! - `error`, `reject` — [`Error`], its status and code table.
//! - `store` — on-disk manifest and state, atomic writes.
//! - `images` — the OS image catalogue.
//! - `preflight` — the chain pre-flight.
//! - `ports`, `logs`, `procfs`, `supervisor` — host ports, console logs, processes.
//! - `backend` — the [`Backend`] trait, `process` and `qemu`.
//! - `manager` — [`Vmm`]: lifecycle, re-adoption, upgrades.
//! - `hostapi` — the per-CVM guest → host socket.
//! - `server` — the router, auth, handlers, OpenAPI, the web page (`server/ui/`), [`run`].
//! - `client` — [`VmmClient`], the API's client (CLI, tests).
//! - `envcrypt` — [`encrypt_env`]: the KMS env key checked against the chain, then
//!   encryption (what clients do before they send `encrypted_env`).
//! - `metrics` — Prometheus metrics.

mod backend;
mod client;
mod config;
mod envcrypt;
mod error;
mod hostapi;
mod images;
mod logs;
mod manager;
mod metrics;
mod ports;
mod preflight;
mod procfs;
mod reject;
mod server;
mod store;
mod supervisor;

// The public interface is:
pub use crate::{
    // Backends (the trait, and the qemu host check and command line for operators).
    backend::{check_tdx, Backend, Launch, ProcessBackend, QemuBackend},
    // The API's client, and deploy-time env encryption for its users.
    client::{ClientError, Endpoint, Streaming, VmmClient},
    // Running a VMM: configuration, listeners, the server, the manager.
    config::{
        ApiSection, BackendKind, BackendSection, ChainSection, Config, CvmSection, ImageKindConfig,
        ImageSection, LogsSection, ProcessSection, QemuSection, ENV_PREFIX,
    },
    envcrypt::{encrypt_env, encrypt_env_over, EnvError, ENV_PUBKEY_MAX_AGE_SECS},
    // Errors.
    error::{Conflict, Error, Result},
    images::{BootFiles, Catalog, Image},
    manager::{kill_all_guests, UpgradeOutcome, Vmm, MAX_SOCKET_PATH},
    // Metrics.
    metrics::Metrics,
    server::{
        bind_unix, openapi, route_table, router, run, Listeners, Transport, API_CSP, PAGE_CSP,
        PAGE_PATH, SCRIPT_PATH, STYLE_PATH,
    },
    store::{CvmDir, Manifest},
};
