//! Test support (feature `test-utils`): the dstack SDK interop harness that the guest's
//! SDK tests and the cairn-e2e `python_sdk` scenario share, so that one Python scenario
//! and one way of running it serve both — where the Python SDK is, running its scenario,
//! reading what an SDK client printed, and checking the quote an SDK asked for.
//!
//! The feature only adds this module; it changes no behaviour of the rest of the crate
//! and adds no dependency. Nothing here is mocked: the SDKs are the public ones, the
//! quote check is the caller's real [`cairn_attestation::Verifier`] (this crate does not
//! know the KMS cluster's PKI; the caller passes its verifier). Helpers panic with a
//! message when the plumbing itself fails (that is a failed test, not an input to
//! handle).
//!
//! What it does not do: install the SDKs (`scripts/setup.sh` does) or serve the agent
//! (the tests do, with [`crate::agent`]).
//!
//! # Layout
//! - `sdk`: [`DSTACK_SDK_VERSION`], [`venv_python`], [`run_python_sdk_client`] and
//!   [`python_sdk_report_data`] (the Python scenario), [`client_json`] (what any SDK
//!   client printed), [`verified_sdk_quote`] (the quote an SDK returned).

mod sdk;

// The public interface is:
pub use sdk::{
    client_json, python_sdk_report_data, run_python_sdk_client, venv_python, verified_sdk_quote,
    DSTACK_SDK_VERSION,
};
