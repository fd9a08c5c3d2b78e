//! Replication (DESIGN.md §5): a new node B receives the master secret from a running
//! node A over one mutual RA-TLS connection.
//!
//! B's side ([`onboard`]), in order:
//! 1. refuse if B's store already holds an identity;
//! 2. connect to A presenting B's own RA-TLS certificate (usage `kms:rpc`); the handshake
//!    proves A holds its certificate key;
//! 3. verify A's evidence (steps 1-2 of the release path, usage `kms:rpc` required) and
//!    `isKmsAllowed(A)` at the pinned block;
//! 4. `POST /v1/onboard`; A checks B the same way (`Node::onboard_peer`), logs a
//!    `kms-onboard` entry, and answers with the master secret;
//! 5. derive the root keys and require them to equal the ones registered in KmsAuth for
//!    that generation — only then store the secret;
//! 6. log the onboarding in B's own log (a `kms-onboard` entry naming A).

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_attestation::{RaTlsCertBuilder, Usage};
use cairn_onchain::ChainClient;
use cairn_protocol::api::{OnboardRequest, OnboardResponse, Receipt, PATH_ONBOARD};
use cairn_tlog::{Log, ReleaseKind};
use hyper::Method;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::client::{client_config, KmsClient};
use crate::error::{Error, Result};
use crate::evidence;
use crate::kdf::MasterSecret;
use crate::keys::RootKeys;
use crate::node::{release_record, NodeOptions, LOG_DIR, SECRETS_DIR};
use crate::store::SecretStore;

/// What onboarding produced.
#[derive(Debug, Clone)]
pub struct OnboardReport {
    /// The new node's address (register it in KmsAuth before it anchors).
    pub node_address: [u8; 20],
    /// The key generation received.
    pub key_generation: u64,
    /// The source node's receipt of the onboarding entry.
    pub source_receipt: Receipt,
    /// Index of the onboarding entry in this node's own log.
    pub local_log_index: u64,
}

/// Accepts the server certificate for the handshake only if the server signs with its
/// key; the evidence is verified right after the handshake, before anything is sent.
#[derive(Debug)]
struct PossessionServerVerifier(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for PossessionServerVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Onboard the node described by `opts` from the node at `source` (see module docs).
pub async fn onboard(opts: &NodeOptions, source: SocketAddr) -> Result<OnboardReport> {
    crate::node::install_crypto_provider();
    let store = SecretStore::open(opts.data_dir.join(SECRETS_DIR))?;
    match store.identity() {
        Ok(id) => {
            return Err(Error::AlreadyBootstrapped {
                generation: id.generation,
            })
        }
        Err(Error::NotBootstrapped) => {}
        Err(e) => return Err(e),
    }
    let chain = ChainClient::connect(&opts.chain, None).await?;

    let own_cert = RaTlsCertBuilder::new(Usage::KmsRpc)
        .common_name("Cairn KMS (onboarding)")
        .event_log(&opts.event_log)
        .build(opts.tee.as_ref())?;
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let config = client_config(
        Arc::new(PossessionServerVerifier(algorithms)),
        Some(&own_cert),
    )?;
    let (mut client, server_cert) = KmsClient::connect(source, config).await?;

    let source_node = evidence::attest(
        Some(&server_cert),
        &opts.verifier,
        &opts.collateral,
        &opts.os_images,
        opts.clock.now(),
    )
    .await
    .map_err(|e| Error::Onboard(format!("source node evidence rejected: {e}")))?;
    if source_node.usage != Some(Usage::KmsRpc) {
        return Err(Error::Onboard(
            "source node certificate is not a kms:rpc certificate".into(),
        ));
    }
    let at = chain.policy_block().await?;
    chain.is_kms_allowed(&source_node.boot, at).await?;

    let resp: OnboardResponse = client
        .call(Method::POST, PATH_ONBOARD, Some(&OnboardRequest {}))
        .await?
        .map_err(|e| Error::OnboardRefused {
            status: e.status.as_u16(),
            code: e.body.error.code,
            message: e.body.error.message,
        })?;

    let master = MasterSecret::from_bytes(*resp.master_secret);
    let root = RootKeys::derive(&master)?;
    let registered = chain
        .root_keys(at)
        .await?
        .ok_or_else(|| Error::Onboard("no KMS root keys are registered on chain".into()))?;
    if u64::from(registered.generation) != resp.key_generation
        || registered.k256_pubkey.as_ref() != root.k256_public().as_slice()
        || registered.ca_pubkey.as_ref() != root.ca().spki_der().as_slice()
    {
        return Err(Error::RootKeysMismatch {
            generation: resp.key_generation,
        });
    }
    let identity = store.install(master, resp.key_generation)?;
    drop(store);

    let log = Log::open(opts.data_dir.join(LOG_DIR))?;
    let record = release_record(
        ReleaseKind::KmsOnboard,
        &source_node,
        at,
        identity.generation,
        opts.chain.chain_id,
        identity.node_key.address(),
        opts.clock.now(),
    )?;
    let bytes = record
        .encode()
        .map_err(|e| Error::Log(cairn_tlog::Error::from(e)))?;
    let local_log_index = tokio::task::spawn_blocking(move || log.append(bytes))
        .await
        .map_err(|e| Error::Onboard(e.to_string()))??;
    tracing::info!(
        node = %format!("0x{}", hex::encode(identity.node_key.address())),
        generation = identity.generation,
        "onboarded"
    );
    Ok(OnboardReport {
        node_address: identity.node_key.address(),
        key_generation: identity.generation,
        source_receipt: resp.receipt,
        local_log_index,
    })
}
