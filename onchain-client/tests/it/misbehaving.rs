//! Apps whose policy contract misbehaves (reverts, burns gas) or answers with its own
//! reason. KmsAuth must answer `(false, reason)` without reverting; the client maps it.
//!
//! The app contracts are tiny hand-assembled EVM programs (no Solidity needed): they
//! answer ERC-165 like an IAppAuth (true for every id except 0xffffffff) and do
//! something else for every other call.

use cairn_onchain::alloy::network::TransactionBuilder;
use cairn_onchain::alloy::primitives::{Address, Bytes};
use cairn_onchain::alloy::providers::Provider;
use cairn_onchain::alloy::rpc::types::TransactionRequest;
use cairn_onchain::alloy::sol_types::SolValue;
use cairn_onchain::{reasons, Check, Error};

use crate::common::{assert_denied_by, boot, devnet, Devnet, COMPOSE};

/// Offset of the JUMPDEST where the non-ERC-165 behaviour starts.
const BEHAVIOUR: u8 = 0x3e;

/// Runtime code: `supportsInterface(id)` returns `id != 0xffffffff`; anything else
/// jumps to `behaviour` (which starts right after a JUMPDEST at `BEHAVIOUR`).
fn runtime(behaviour: &[u8]) -> Vec<u8> {
    let mut code = vec![
        0x60, 0x00, 0x35, 0x60, 0xe0, 0x1c, // selector = calldataload(0) >> 224
        0x63, 0x01, 0xff, 0xc9, 0xa7, 0x14, 0x15, // selector != supportsInterface
        0x60, BEHAVIOUR, 0x57, // jumpi BEHAVIOUR
        0x60, 0x04, 0x35, // id word = calldataload(4)
        0x7f, 0xff, 0xff, 0xff, 0xff, // push32 0xffffffff00..00
    ];
    code.extend_from_slice(&[0u8; 28]);
    code.extend_from_slice(&[
        0x14, 0x15, // id != 0xffffffff
        0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3, // mstore(0, r); return(0, 32)
    ]);
    assert_eq!(code.len(), usize::from(BEHAVIOUR));
    code.push(0x5b); // JUMPDEST
    code.extend_from_slice(behaviour);
    code
}

/// Init code that deploys `runtime` as is.
fn initcode(runtime: &[u8]) -> Bytes {
    let len = u16::try_from(runtime.len()).unwrap().to_be_bytes();
    let mut code = vec![
        0x61, len[0], len[1], 0x60, 0x0e, 0x60, 0x00, 0x39, // codecopy(0, 14, len)
        0x61, len[0], len[1], 0x60, 0x00, 0xf3, // return(0, len)
    ];
    code.extend_from_slice(runtime);
    code.into()
}

async fn deploy_stub(net: &Devnet, runtime: Vec<u8>) -> Address {
    let p = net.client.connection().provider();
    let tx = TransactionRequest::default().with_deploy_code(initcode(&runtime));
    let receipt = p
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let app = receipt.contract_address.unwrap();
    net.client
        .register_app(app)
        .await
        .expect("stub answers ERC-165 for IAppAuth");
    app
}

async fn denial(net: &Devnet, app: Address) -> Error {
    let at = net.client.policy_block().await.unwrap();
    net.client
        .is_app_allowed(&boot(app, COMPOSE), at)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn reverting_app_contract_is_denied_not_an_error() {
    let net = devnet(0).await;
    let app = deploy_stub(&net, runtime(&[0x60, 0x00, 0x60, 0x00, 0xfd])).await; // revert(0,0)
    match denial(&net, app).await {
        Error::Denied {
            check: Check::AppContractFailed,
            reason,
        } => {
            assert_eq!(reason, reasons::APP_CONTRACT_FAILED)
        }
        other => panic!("expected AppContractFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn gas_burning_app_contract_is_denied_not_an_error() {
    let net = devnet(0).await;
    // JUMPDEST at BEHAVIOUR+1; jump to it forever.
    let app = deploy_stub(&net, runtime(&[0x5b, 0x60, BEHAVIOUR + 1, 0x56])).await;
    let err = denial(&net, app).await;
    assert_denied_by(&err, Check::AppContractFailed);
}

#[tokio::test]
async fn custom_app_reason_passes_through_as_other() {
    let net = devnet(0).await;
    let answer = (false, "Maintenance window".to_string()).abi_encode_params();
    let len = u8::try_from(answer.len()).unwrap();
    // codecopy(0, DATA, len); return(0, len) — DATA is right after these 12 bytes.
    let data_at = BEHAVIOUR + 1 + 12;
    let mut behaviour = vec![
        0x60, len, 0x60, data_at, 0x60, 0x00, 0x39, 0x60, len, 0x60, 0x00, 0xf3,
    ];
    behaviour.extend_from_slice(&answer);
    let app = deploy_stub(&net, runtime(&behaviour)).await;
    match denial(&net, app).await {
        Error::Denied {
            check: Check::Other,
            reason,
        } => assert_eq!(reason, "Maintenance window"),
        other => panic!("expected the app's own reason, got {other:?}"),
    }
}
