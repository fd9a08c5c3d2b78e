//! A checked, time-bounded connection to one JSON-RPC endpoint.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::Ethereum;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::TransportResult;
use url::Url;

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
}

impl Connection {
    /// Connects to `rpc_url` and checks that it serves `chain_id`.
    ///
    /// Errors: [`Error::ChainIdMismatch`] for another chain; [`Error::Unreachable`] or
    /// [`Error::Timeout`] when the endpoint does not answer within `call_timeout`.
    pub async fn connect(
        rpc_url: Url,
        chain_id: u64,
        call_timeout: Duration,
        signer: Option<PrivateKeySigner>,
    ) -> Result<Self> {
        if call_timeout.is_zero() {
            return Err(Error::misconfigured("call timeout must be positive"));
        }
        if !matches!(rpc_url.scheme(), "http" | "https") {
            return Err(Error::misconfigured(format!(
                "unsupported RPC URL scheme {:?} (expected http or https)",
                rpc_url.scheme()
            )));
        }
        // alloy's HTTP transport is reqwest built with `rustls-no-provider`: Cairn uses the
        // ring provider everywhere (no aws-lc). reqwest panics when it builds a client with
        // no process-wide provider installed, so install ring's first; an error only means
        // a provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
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
                    builder.wallet(signer).connect_http(rpc_url).erased(),
                    Some(sender),
                )
            }
            None => (builder.connect_http(rpc_url).erased(), None),
        };
        let conn = Self {
            provider,
            chain_id,
            call_timeout,
            sender,
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

fn call_target<P, D>(call: &CallBuilder<P, D, Ethereum>) -> Option<Address>
where
    P: Provider<Ethereum>,
    D: CallDecoder,
{
    use alloy::network::TransactionBuilder;
    call.as_ref().to()
}
