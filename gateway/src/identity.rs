//! The gateway's own TLS identity: a key and a KMS-issued certificate chain from this
//! CVM's guest agent (`GetTlsKey` with RA-TLS evidence), like any Cairn app's.
//!
//! It is the server certificate CVMs register against (they accept it only if it chains
//! to their KMS root and carries KmsAuth's `gatewayAppId`), and the client certificate
//! the gateway presents to apps when it forwards over TLS. Before it is used the gateway
//! checks it as a relying party would: the chain is leaf → app CA → root for the leaf's
//! app id ([`verify_app_chain`]), and the leaf's own evidence verifies; its boot info is
//! what the gateway's self-check asks the chain about.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_acme::AgentClient;
use cairn_attestation::{
    parse_ra_tls_extensions, pem_to_der, verify_app_chain, CertRole, PossessionClientVerifier,
    PossessionServerVerifier, RootCa, Usage,
};
use cairn_onchain::{unix_now, BootInfo};
use cairn_protocol::agent::GetTlsKeyRequest;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::admission::match_os_image;
use crate::config::GatewayOptions;
use crate::error::{Error, Result};

/// The common name the gateway asks for.
pub const GATEWAY_SUBJECT: &str = "cairn-gateway";

/// The gateway's KMS-issued identity. `Debug` never shows the key.
pub(crate) struct Identity {
    /// The gateway's app id (from its verified evidence and its chain).
    pub app_id: [u8; 20],
    /// The KMS root CA that issued the chain (checked against KmsAuth by the caller).
    pub root: RootCa,
    /// The gateway's own boot info, for the self-check.
    pub boot: BootInfo,
    chain: Vec<CertificateDer<'static>>,
    key_pkcs8: Zeroizing<Vec<u8>>,
}

cairn_protocol::redacted_debug!(Identity {
    app_id: bare_hex,
    key: redacted,
    ..
});

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Identity {
    /// Ask the agent for the identity (polling until it answers, up to the start-up
    /// timeout: the agent may start after the app), then check it.
    pub async fn obtain(options: &GatewayOptions) -> Result<Identity> {
        let response = fetch(&options.agent, options.agent_startup_timeout).await?;
        let now = unix_now();
        let mut chain = Vec::new();
        for (i, pem) in response.certificate_chain.iter().enumerate() {
            let role = match i {
                0 => CertRole::Leaf,
                1 => CertRole::AppCa,
                _ => CertRole::Root,
            };
            chain.push(pem_to_der(pem, role).map_err(Error::IdentityChain)?);
        }
        let [leaf, _, root] = chain.as_slice() else {
            return Err(Error::Identity(format!(
                "GetTlsKey returned {} certificates; expected leaf, app CA, root",
                chain.len()
            )));
        };
        let app_id = parse_ra_tls_extensions(leaf)
            .map_err(Error::IdentityEvidence)?
            .app_id
            .ok_or_else(|| Error::Identity("the leaf carries no app id".to_owned()))?;
        let root = RootCa::from_der(root.clone()).map_err(Error::IdentityChain)?;
        verify_app_chain(&root, &chain, &app_id, now).map_err(Error::IdentityChain)?;
        let quote = options
            .verifier
            .verify_ra_tls_cert(leaf, Some(Usage::AppCustom), options.pccs.as_deref(), now)
            .await
            .map_err(Error::IdentityEvidence)?;
        let os_image_hash = match_os_image(&quote, &options.os_images).map_err(|e| {
            Error::Identity(format!(
                "the gateway's own OS image: {e} (add it to attestation.os_images)"
            ))
        })?;
        let boot = cairn_kms_client::boot_info(&quote, os_image_hash);
        let key = PrivatePkcs8KeyDer::from_pem_slice(response.key.as_bytes())
            .map_err(|e| Error::Identity(format!("the key is not PKCS#8 PEM: {e}")))?;
        let key_pkcs8 = Zeroizing::new(key.secret_pkcs8_der().to_vec());
        tracing::info!(app_id = %hex::encode(app_id), "gateway identity from the KMS");
        Ok(Identity {
            app_id,
            root,
            boot,
            chain: chain.into_iter().map(CertificateDer::from).collect(),
            key_pkcs8,
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.to_vec()))
    }

    /// The registration listener's config: this chain, a mandatory client certificate
    /// whose possession the handshake proves (admission judges the chain and evidence).
    pub fn registration_config(&self) -> Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_client_cert_verifier(Arc::new(PossessionClientVerifier::mandatory()))
            .with_single_cert(self.chain.clone(), self.key())
            .map_err(Error::Tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The config of connections to apps: the app proves it holds its certificate key in
    /// the handshake; its chain is checked right after (`backend`); the gateway presents
    /// this chain as its client certificate.
    pub fn backend_config(&self) -> Result<Arc<ClientConfig>> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PossessionServerVerifier::new()))
            .with_client_auth_cert(self.chain.clone(), self.key())
            .map_err(Error::Tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

async fn fetch(
    agent: &AgentClient,
    within: Duration,
) -> Result<cairn_protocol::agent::GetTlsKeyResponse> {
    let request = GetTlsKeyRequest {
        subject: GATEWAY_SUBJECT.to_owned(),
        alt_names: Vec::new(),
        usage_ra_tls: true,
        usage_server_auth: true,
        usage_client_auth: true,
        not_before: None,
        not_after: None,
        with_app_info: Some(true),
    };
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(100);
    loop {
        match agent.get_tls_key(&request).await {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() + pause > deadline => return Err(Error::Agent(e)),
            Err(e) => {
                tracing::info!(error = %e, "waiting for the guest agent");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}
