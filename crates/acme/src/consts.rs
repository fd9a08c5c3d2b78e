//! Labels, paths, bounds and defaults, in one place (`docs/gateway.md`, "Certificates:
//! file or ACME", states each).

use std::time::Duration;

/// The `GetKey` path the ACME account key is derived from.
pub const ACCOUNT_KEY_PATH: &str = "cairn/gateway/acme-account";
/// The `GetKey` purpose sent with [`ACCOUNT_KEY_PATH`].
pub const ACCOUNT_KEY_PURPOSE: &str = "acme-account";
/// HKDF salt of the account-key derivation.
pub const ACCOUNT_KEY_SALT: &[u8] = b"cairn-acme/v1";
/// HKDF info prefix of the account-key derivation (followed by a big-endian u32 counter).
pub const ACCOUNT_KEY_INFO: &[u8] = b"cairn/v1/acme-account-p256";

/// Report-data tag of a certificate key: `SHA-512("zt-cert:" ‖ SPKI DER)`, dstack-gateway's
/// `QuoteContentType::Custom("zt-cert")`, so dstack's certificate monitor computes the same.
pub const CERT_KEY_TAG: &str = "zt-cert";
/// Report-data tag of the ACME account URI (dstack's `Custom("acme-account")`).
pub const ACCOUNT_URI_TAG: &str = "acme-account";

/// Where the gateway publishes [`crate::AcmeInfo`] (dstack-gateway's path, so its monitor
/// works unchanged).
pub const ACME_INFO_PATH: &str = "/.dstack/acme-info";

/// Largest body read from the ACME server (certificate chains are a few KiB).
pub const MAX_ACME_RESPONSE_LEN: usize = 256 * 1024;
/// Largest body read from a DNS provider.
pub const MAX_DNS_RESPONSE_LEN: usize = 1024 * 1024;
/// Largest body read from the guest agent (a quote plus its event log).
pub const MAX_AGENT_RESPONSE_LEN: usize = 256 * 1024;
/// Largest published document a monitor parses.
pub const MAX_ACME_INFO_LEN: usize = 8 * 1024 * 1024;
/// Certificate keys kept in the published history (oldest dropped first).
pub const MAX_HISTORY: usize = 256;
/// How much of an error body is kept in an error.
pub const MAX_ERROR_BODY_CHARS: usize = 512;
/// Cloudflare list pages read at most while clearing records.
pub const MAX_LIST_PAGES: u32 = 20;

/// Default timeout of one HTTP request (ACME server, DNS provider, guest agent).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one whole issuance (order, challenges, finalize, download).
pub const DEFAULT_ORDER_TIMEOUT: Duration = Duration::from_secs(600);
/// Default fraction of a certificate's lifetime after which it is renewed.
pub const DEFAULT_RENEW_AFTER_FRACTION: f64 = 2.0 / 3.0;
/// Default first retry delay after a failed issuance (doubles up to the maximum).
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(60);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// Default interval between renewal checks.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Default wait between publishing the TXT records and asking the CA to validate.
pub const DEFAULT_DNS_PROPAGATION: Duration = Duration::from_secs(30);
/// Default TTL of the TXT records (Cloudflare's minimum outside Enterprise plans is 60).
pub const DEFAULT_TXT_TTL: u32 = 60;
/// Cloudflare's API base.
pub const CLOUDFLARE_API_BASE: &str = "https://api.cloudflare.com/client/v4";
