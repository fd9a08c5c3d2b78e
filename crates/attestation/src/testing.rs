//! Test support (feature `test-utils`): what the RA-TLS tests of several crates set up
//! the same way — the simulated Intel PKI anchored at the wall clock and the real
//! verifier trusting its root, a rustls client that proves only possession of the
//! server's key, a certificate resolver that presents any certificate with any key, and
//! a [`SimPccs`] served on a free loopback port.
//!
//! The feature only adds this module; it changes no behaviour of the rest of the crate.
//! Nothing here is mocked: the PKI, quotes and PCCS are the simulator's, the verifier is
//! [`Verifier`], the TLS is rustls with ring. Helpers panic with a message when the
//! plumbing itself fails (that is a failed test, not an input to handle).
//!
//! What it does not do: hold any secret worth protecting (test keys only), or pick a
//! PKI seed for crates that need their own (`cairn_kms::testing::pki` has its own seed).

use std::sync::{Arc, OnceLock};

use rustls::client::{ResolvesClientCert, WantsClientCert};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ConfigBuilder, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ratls::PossessionServerVerifier;
use crate::simulator::{SimPccs, SimPki, SimPkiConfig};
use crate::{Collateral, Verifier};

/// The seed of [`sim_pki`]'s keys.
pub const SIM_PKI_SEED: [u8; 32] = [0x42; 32];

/// Seconds since the Unix epoch by the wall clock (0 before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The mock Intel PKI of seed [`SIM_PKI_SEED`], built once per process, its collateral
/// anchored at the wall clock (rustls hands verifiers the current time).
pub fn sim_pki() -> Arc<SimPki> {
    static PKI: OnceLock<Arc<SimPki>> = OnceLock::new();
    PKI.get_or_init(|| {
        Arc::new(SimPki::new(SimPkiConfig::new(SIM_PKI_SEED, unix_now())).expect("simulator PKI"))
    })
    .clone()
}

/// The real verifier trusting [`sim_pki`]'s root, with its collateral.
pub fn sim_verifier() -> Verifier {
    let pki = sim_pki();
    Verifier::dangerous_with_simulator_root(pki.root_ca_der())
        .with_collateral(Collateral::new(pki.collateral()).expect("simulator collateral"))
}

/// Presents a fixed certificate chain with a fixed signing key, as a client or as a
/// server, without rustls' own check that they belong together: what a peer sending junk,
/// or a thief holding only a public certificate, does.
#[derive(Debug)]
pub struct Presents(pub Arc<CertifiedKey>);

impl Presents {
    /// `chain` presented with the P-256 signing key `pkcs8_key` (PKCS#8 DER), which need
    /// not be the certified one.
    pub fn new(chain: Vec<CertificateDer<'static>>, pkcs8_key: Vec<u8>) -> Self {
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&PrivateKeyDer::Pkcs8(
            PrivatePkcs8KeyDer::from(pkcs8_key),
        ))
        .expect("a P-256 PKCS#8 key");
        Presents(Arc::new(CertifiedKey::new(chain, signer)))
    }
}

impl ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Presents {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A rustls client config (ring, safe default versions) that checks only that the server
/// holds its certificate's key ([`PossessionServerVerifier`]), waiting for the choice of
/// client certificate.
pub fn possession_client() -> ConfigBuilder<ClientConfig, WantsClientCert> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PossessionServerVerifier::new()))
}

/// A [`SimPccs`] serving on a free loopback port until [`ServedPccs::stop`].
#[derive(Debug)]
pub struct ServedPccs {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServedPccs {
    /// Serve `pccs` on `127.0.0.1:0`.
    pub async fn start(pccs: SimPccs) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("a bound listener's address")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(pccs.serve(listener, async move {
            let _ = stopped.await;
        }));
        ServedPccs { url, stop, task }
    }

    /// Its base URL (`http://127.0.0.1:port`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Shut the server down gracefully and wait for it: what serving returned.
    pub async fn stop(self) -> std::io::Result<()> {
        // The receiver is gone only if the server already ended: its result says why.
        let _ = self.stop.send(());
        self.task.await.expect("the PCCS task did not panic")
    }
}
