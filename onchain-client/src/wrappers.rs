//! The macro behind the one-call transaction wrappers of [`AppAuthClient`],
//! [`ChainClient`] and [`Dao`].
//!
//! Each wrapper sends one contract call and waits for its receipt; only the method, its
//! arguments and the doc differ. The operation name every error and log carries is
//! `"<Contract>.<solidityMethod>"`, built from the Solidity method name itself, so it
//! cannot drift from the call it names.
//!
//! [`AppAuthClient`]: crate::AppAuthClient
//! [`ChainClient`]: crate::ChainClient
//! [`Dao`]: crate::Dao

/// `contract_sends!("KmsAuth", Target::KmsAuth, connection, tx_kms; /// doc
/// add_kms_node(node: Address) => addKmsNode(node); …)` generates, in an `impl` block,
/// `pub async fn add_kms_node(&self, node: Address) -> Result<TransactionReceipt>` that
/// sends `self.tx_kms().addKmsNode(node)` with
/// `self.connection().send("KmsAuth.addKmsNode", Target::KmsAuth, …)`.
///
/// `$target` picks the revert decoder; `$conn` is the type's method returning its
/// [`Connection`](crate::Connection), `$instance` the one returning the contract binding.
/// The arguments after `=>` are expressions over the wrapper's parameters.
macro_rules! contract_sends {
    (
        $contract:literal, $target:path, $conn:ident, $instance:ident;
        $(
            $(#[$doc:meta])*
            $name:ident($($arg:ident: $ty:ty),* $(,)?) => $method:ident($($value:expr),* $(,)?);
        )*
    ) => {
        $(
            $(#[$doc])*
            pub async fn $name(
                &self,
                $($arg: $ty),*
            ) -> $crate::error::Result<::alloy::rpc::types::TransactionReceipt> {
                self.$conn()
                    .send(
                        concat!($contract, ".", stringify!($method)),
                        $target,
                        self.$instance().$method($($value),*),
                    )
                    .await
            }
        )*
    };
}

pub(crate) use contract_sends;
