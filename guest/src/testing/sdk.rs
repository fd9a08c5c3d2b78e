//! The dstack SDK interop harness: the Python SDK's venv and scenario, SDK clients'
//! JSON output, and the quotes SDKs ask for.

use std::path::{Path, PathBuf};
use std::process::Output;

use cairn_attestation::{VerifiedQuote, Verifier};
use serde_json::Value;

/// The Python SDK version `scripts/setup.sh` installs.
pub const DSTACK_SDK_VERSION: &str = "0.5.4";

/// The Python SDK scenario: every method of the SDK against the agent at the socket it
/// is given, the results as one JSON object.
const PYTHON_SDK_CLIENT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/python/sdk_client.py");

/// The report data the Python scenario asks `get_quote` for: `dstack-sdk test`, padded.
pub fn python_sdk_report_data() -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..15].copy_from_slice(b"dstack-sdk test");
    rd
}

/// The workspace's `.venv/bin/python` (with dstack-sdk); fails loudly when it is missing.
pub fn venv_python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs dstack-sdk=={DSTACK_SDK_VERSION} into .venv)",
        p.display()
    );
    p
}

/// Runs the Python SDK scenario with `python` against the agent at `socket`.
pub async fn run_python_sdk_client(python: &Path, socket: &Path) -> Output {
    tokio::process::Command::new(python)
        .arg(PYTHON_SDK_CLIENT)
        .arg(socket)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} failed: {e}", python.display()))
}

/// The JSON an SDK client (`what`) printed; fails with its stderr when it did not succeed.
pub fn client_json(what: &str, out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The quote an SDK returned (`quote` in hex, `event_log`, and the SDK's own
/// `replayed_rtmr3`), verified now by `verifier` for `report_data`; the SDK's replay of
/// the event log must equal the quoted RTMR3.
pub fn verified_sdk_quote(q: &Value, report_data: &[u8; 64], verifier: &Verifier) -> VerifiedQuote {
    let quote = hex::decode(q["quote"].as_str().expect("quote is a string")).expect("hex quote");
    let event_log = q["event_log"].as_str().expect("event_log is a string");
    let vq = verifier
        .verify(
            &quote,
            event_log.as_bytes(),
            report_data,
            cairn_onchain::unix_now(),
        )
        .expect("the SDK's quote verifies");
    assert_eq!(q["replayed_rtmr3"], vq.rtmrs()[3].to_hex());
    vq
}
