//! Size limits, event names and other constants shared by the crate.
//!
//! Every parser in this crate checks its input against one of the `MAX_*` limits below
//! *before* it looks at the bytes.

/// Largest quote accepted by [`crate::Verifier::verify`]. A TDX v4 quote with a
/// three-certificate PCK chain is about 5 KB; the limit leaves room for longer chains.
pub const MAX_QUOTE_LEN: usize = 64 * 1024;
/// Largest event-log JSON document accepted.
pub const MAX_EVENT_LOG_LEN: usize = 512 * 1024;
/// Largest number of runtime events in one event log.
pub const MAX_EVENTS: usize = 1024;
/// Longest event name, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 128;
/// Longest event payload, in bytes (after hex decoding).
pub const MAX_EVENT_PAYLOAD_LEN: usize = 64 * 1024;
/// Largest collateral document (JSON file, or one PCCS response body).
pub const MAX_COLLATERAL_LEN: usize = 1024 * 1024;

/// Event type of a dstack-compatible runtime event (FORMATS.md "Runtime events").
pub const RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// The only RTMR runtime events are extended into.
pub const RUNTIME_EVENT_IMR: u32 = 3;

/// First event of the boot sequence; empty payload.
pub const EVENT_SYSTEM_PREPARING: &str = "system-preparing";
/// The app id (20 bytes).
pub const EVENT_APP_ID: &str = "app-id";
/// SHA-256 of `app-compose.json` (32 bytes).
pub const EVENT_COMPOSE_HASH: &str = "compose-hash";
/// The instance id (20 bytes, or empty).
pub const EVENT_INSTANCE_ID: &str = "instance-id";
/// End of the boot-time measurements; empty payload.
pub const EVENT_BOOT_MR_DONE: &str = "boot-mr-done";
/// The OS image hash (32 bytes).
pub const EVENT_OS_IMAGE_HASH: &str = "os-image-hash";
/// The key provider JSON.
pub const EVENT_KEY_PROVIDER: &str = "key-provider";
/// End of the system events; events after it belong to the application.
pub const EVENT_SYSTEM_READY: &str = "system-ready";

/// SHA-256 of the host share's `.encrypted-env` blob (empty payload: no such file),
/// measured by Cairn guests between `instance-id` and `boot-mr-done`, so before any key
/// release: a host that swaps the blob changes RTMR3, and so `mr_aggregated`. Optional
/// for verifiers (dstack guests and Cairn's KMS nodes do not measure it); where present
/// it must be at exactly that position. docs/protocol.md "Encrypted env measurement".
pub const EVENT_ENCRYPTED_ENV_HASH: &str = "encrypted-env-hash";
/// Index of [`EVENT_ENCRYPTED_ENV_HASH`] when measured.
pub const ENCRYPTED_ENV_HASH_INDEX: usize = 4;

/// The boot sequence of runtime events, in the order they must be measured (plus the
/// optional [`EVENT_ENCRYPTED_ENV_HASH`] at [`ENCRYPTED_ENV_HASH_INDEX`]).
pub const BOOT_EVENT_ORDER: [&str; 8] = [
    EVENT_SYSTEM_PREPARING,
    EVENT_APP_ID,
    EVENT_COMPOSE_HASH,
    EVENT_INSTANCE_ID,
    EVENT_BOOT_MR_DONE,
    EVENT_OS_IMAGE_HASH,
    EVENT_KEY_PROVIDER,
    EVENT_SYSTEM_READY,
];

/// Number of leading boot events a verifiable event log must contain
/// (`system-preparing` through `boot-mr-done`).
pub const MIN_BOOT_EVENTS: usize = 5;

/// Intel's SGX root CA certificate (DER), as shipped in dcap-qvl 0.7.1 (`src/TrustedRootCA.der`).
pub const INTEL_ROOT_CA_DER: &[u8] = include_bytes!("intel_root_ca.der");
