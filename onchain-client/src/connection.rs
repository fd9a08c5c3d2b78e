//! A checked, time-bounded connection to one JSON-RPC endpoint.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::Ethereum;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::Http;
use alloy::transports::TransportResult;
use url::Url;

use crate::config::{check_rpc_url, endpoint_label, is_loopback, RpcTransport};
use crate::error::{from_contract, from_pending, Error, Result, Target};

/// A connection to an endpoint whose chain id was checked, with a per-call timeout and an
/// optional transaction signer.
///
/// Every RPC the crate makes goes through [`tokio::time::timeout`] with
/// [`Connection::call_timeout`]; a transaction gets that budget for sending and again
/// for its receipt.
#[derive(Clone, Debug)]
pub struct Connection {
    provider: DynProvider,
    chain_id: u64,
    call_timeout: Duration,
    sender: Option<Address>,
    label: String,
}

impl Connection {
    /// Connects to `rpc_url` and checks that it serves `chain_id`: TLS required off
    /// loopback ([`check_rpc_url`]), system TLS roots, `call_timeout` per call.
    ///
    /// Errors: [`Error::InsecureRpc`] for plain HTTP to a non-loopback host;
    /// [`Error::ChainIdMismatch`] for another chain; [`Error::Unreachable`] or
    /// [`Error::Timeout`] when the endpoint does not answer within `call_timeout`.
    pub async fn connect(
        rpc_url: Url,
        chain_id: u64,
        call_timeout: Duration,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self> {
        Self::connect_with(rpc_url, chain_id, &RpcTransport::new(call_timeout), signer).await
    }

    /// [`Connection::connect`] with explicit transport options (insecure opt-in, extra
    /// TLS roots).
    pub async fn connect_with(
        rpc_url: Url,
        chain_id: u64,
        transport: &RpcTransport,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self> {
        let call_timeout = transport.call_timeout;
        if call_timeout.is_zero() {
            return Err(Error::misconfigured("call timeout must be positive"));
        }
        check_rpc_url(&rpc_url, transport.allow_insecure_rpc)?;
        let label = endpoint_label(&rpc_url);
        // alloy's HTTP transport is reqwest built with `rustls-no-provider`: Cairn uses the
        // ring provider everywhere (no aws-lc). reqwest panics when it builds a client with
        // no process-wide provider installed, so install ring's first; an error only means
        // a provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = http_client(&rpc_url, transport)?;
        let is_local = is_loopback(&rpc_url);
        let client = RpcClient::new(Http::with_client(http, rpc_url), is_local);
        // Fillers: gas estimation (a revert surfaces here, decoded), the chain id we were
        // configured with (signatures never target another chain), and a nonce read from
        // the node for every transaction: alloy's default cached nonce manager would skip
        // a nonce when estimation fails, leaving every later transaction stuck.
        let builder = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .with_chain_id(chain_id);
        let (provider, sender) = match signer {
            Some(signer) => {
                let sender = signer.address();
                (
                    builder.wallet(signer).connect_client(client).erased(),
                    Some(sender),
                )
            }
            None => (builder.connect_client(client).erased(), None),
        };
        let conn = Self {
            provider,
            chain_id,
            call_timeout,
            sender,
            label,
        };
        let actual = conn
            .rpc("eth_chainId", conn.provider.get_chain_id())
            .await?;
        if actual != chain_id {
            return Err(Error::ChainIdMismatch {
                expected: chain_id,
                actual,
            });
        }
        Ok(conn)
    }

    /// The endpoint as it appears in errors and logs (`scheme://host:port`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The underlying alloy provider (for calls this crate does not wrap; callers are
    /// responsible for their own timeouts).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// The checked chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The address transactions are sent from, if a signer is configured.
    pub fn sender(&self) -> Option<Address> {
        self.sender
    }

    /// The sender, or [`Error::Misconfigured`] when there is no signer.
    pub(crate) fn require_sender(&self, op: &'static str) -> Result<Address> {
        self.sender
            .ok_or_else(|| Error::misconfigured(format!("{op} needs a transaction signer")))
    }

    /// Runs `fut` under the per-call timeout.
    pub(crate) async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(res) => res,
            Err(_elapsed) => Err(Error::Timeout {
                op,
                after: self.call_timeout,
            }),
        }
    }

    /// Runs a raw RPC under the timeout, classifying transport errors.
    pub(crate) async fn rpc<T>(
        &self,
        op: &'static str,
        fut: impl IntoFuture<Output = TransportResult<T>>,
    ) -> Result<T> {
        self.timed(op, async {
            fut.await.map_err(|e| Error::from_transport(op, e))
        })
        .await
    }

    /// Runs a contract view call under the timeout, decoding reverts for `target`.
    pub(crate) async fn view<T>(
        &self,
        op: &'static str,
        target: Target,
        address: Address,
        fut: impl IntoFuture<Output = alloy::contract::Result<T>>,
    ) -> Result<T> {
        self.timed(op, async {
            fut.await.map_err(|e| from_contract(op, target, address, e))
        })
        .await
    }

    /// Sends a transaction and waits for its receipt (each phase under the timeout).
    /// A reverted transaction is an error; a revert seen during gas estimation is decoded
    /// into `target`'s custom errors.
    pub(crate) async fn send<P, D>(
        &self,
        op: &'static str,
        target: Target,
        call: CallBuilder<P, D, Ethereum>,
    ) -> Result<TransactionReceipt>
    where
        P: Provider<Ethereum>,
        D: CallDecoder,
    {
        self.require_sender(op)?;
        let address = call_target(&call).unwrap_or(Address::ZERO);
        let pending = self
            .timed(op, async {
                call.send()
                    .await
                    .map_err(|e| from_contract(op, target, address, e))
            })
            .await?;
        let tx_hash = *pending.tx_hash();
        let receipt = self
            .timed(op, async {
                pending.get_receipt().await.map_err(|e| from_pending(op, e))
            })
            .await?;
        if !receipt.status() {
            return Err(Error::TransactionFailed { op, tx_hash });
        }
        tracing::debug!(op, %tx_hash, block = ?receipt.block_number, "transaction mined");
        Ok(receipt)
    }

    /// Deploys a contract from a deploy builder and returns its address.
    pub(crate) async fn deploy<P, D>(
        &self,
        op: &'static str,
        call: CallBuilder<P, D, Ethereum>,
    ) -> Result<Address>
    where
        P: Provider<Ethereum>,
        D: CallDecoder,
    {
        let receipt = self.send(op, Target::Other, call).await?;
        receipt.contract_address.ok_or(Error::MissingEvent {
            event: "contract creation",
            tx_hash: receipt.transaction_hash,
        })
    }
}

/// The HTTP client of one endpoint: rustls (ring) with the platform verifier plus any
/// extra roots, no redirects (a redirect could downgrade to plain HTTP or leave the
/// configured host), HTTPS only for `https://` endpoints, no proxy from the environment
/// (reqwest's `system-proxy` feature is off), and a connect timeout of one call.
fn http_client(url: &Url, transport: &RpcTransport) -> Result<reqwest::Client> {
    let mut roots = Vec::with_capacity(transport.extra_roots.len());
    for der in &transport.extra_roots {
        roots.push(reqwest::Certificate::from_der(der.as_ref()).map_err(|e| {
            Error::misconfigured(format!("extra TLS root is not a DER certificate: {e}"))
        })?);
    }
    reqwest::Client::builder()
        .tls_certs_merge(roots)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(url.scheme() == "https")
        .connect_timeout(transport.call_timeout)
        .build()
        .map_err(|e| Error::misconfigured(format!("cannot build the RPC HTTP client: {e}")))
}

fn call_target<P, D>(call: &CallBuilder<P, D, Ethereum>) -> Option<Address>
where
    P: Provider<Ethereum>,
    D: CallDecoder,
{
    use alloy::network::TransactionBuilder;
    call.as_ref().to()
}
