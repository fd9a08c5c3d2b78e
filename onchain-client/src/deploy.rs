//! Deploying the whole Cairn system from Rust (tests, devnet).

use alloy::primitives::Address;
use alloy::sol_types::SolCall;

use crate::bindings::{AppAuth, ERC1967Proxy, KmsAuth};
use crate::connection::Connection;
use crate::error::Result;

/// Addresses of a deployed Cairn system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The KmsAuth proxy (what clients are configured with).
    pub kms_auth: Address,
    /// The KmsAuth implementation behind the proxy.
    pub kms_auth_implementation: Address,
    /// The AppAuth implementation the factory deploys proxies of.
    pub app_auth_implementation: Address,
}

impl Connection {
    /// Deploys the AppAuth implementation, the KmsAuth implementation and a KmsAuth
    /// `ERC1967Proxy` initialized with `initialize(owner, appAuthImplementation)`.
    pub async fn deploy_system(&self, owner: Address) -> Result<Deployment> {
        self.require_sender("deploy_system")?;
        let p = self.provider();
        let app_auth_implementation = self
            .deploy("deploy AppAuth implementation", AppAuth::deploy_builder(p))
            .await?;
        let kms_auth_implementation = self
            .deploy("deploy KmsAuth implementation", KmsAuth::deploy_builder(p))
            .await?;
        let init = KmsAuth::initializeCall {
            initialOwner: owner,
            appAuthImplementation_: app_auth_implementation,
        }
        .abi_encode();
        let kms_auth = self
            .deploy(
                "deploy KmsAuth proxy",
                ERC1967Proxy::deploy_builder(p, kms_auth_implementation, init.into()),
            )
            .await?;
        tracing::info!(%kms_auth, %kms_auth_implementation, %app_auth_implementation, "Cairn system deployed");
        Ok(Deployment {
            kms_auth,
            kms_auth_implementation,
            app_auth_implementation,
        })
    }
}
