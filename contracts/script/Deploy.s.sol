// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {AppAuth} from "../src/AppAuth.sol";
import {KmsAuth} from "../src/KmsAuth.sol";
import {CairnScript} from "./base/CairnScript.sol";

/// @notice Deploys the whole system: AppAuth implementation, KmsAuth implementation + proxy,
/// optional initial policy, and optionally a DAO (token + timelock + governor).
/// Variables (docs/governance.md): PRIVATE_KEY, CAIRN_KMS_OWNER, CAIRN_OS_IMAGE_HASHES,
/// CAIRN_KMS_NODES, CAIRN_KMS_AGGREGATED_MRS, CAIRN_KMS_DEVICE_IDS, CAIRN_GATEWAY_APP_ID,
/// CAIRN_DEPLOY_GOVERNANCE (+ the DeployGovernance variables), CAIRN_GOVERNANCE_OWNS_KMS.
/// @dev forge script contracts/script/Deploy.s.sol --rpc-url $RPC --broadcast
contract Deploy is CairnScript {
    /// @notice Runs the deployment; returns the KmsAuth proxy.
    function run() external returns (KmsAuth kms) {
        address deployer = _startBroadcast();
        AppAuth appImpl;
        // The deployer owns KmsAuth while it applies the initial policy, then hands over.
        (kms, appImpl) = _deployKmsAuth(deployer);

        _addEach("CAIRN_OS_IMAGE_HASHES", kms.addOsImageHash);
        _addEach("CAIRN_KMS_AGGREGATED_MRS", kms.addKmsAggregatedMr);
        _addEach("CAIRN_KMS_DEVICE_IDS", kms.addKmsDevice);
        address[] memory nodes = vm.envOr("CAIRN_KMS_NODES", ",", new address[](0));
        for (uint256 i = 0; i < nodes.length; ++i) {
            kms.addKmsNode(nodes[i]);
        }
        address gateway = vm.envOr("CAIRN_GATEWAY_APP_ID", address(0));
        if (gateway != address(0)) kms.setGatewayAppId(gateway);

        address newOwner = vm.envOr("CAIRN_KMS_OWNER", deployer);
        if (vm.envOr("CAIRN_DEPLOY_GOVERNANCE", false)) {
            Governance memory g = _deployGovernance(deployer);
            if (vm.envOr("CAIRN_GOVERNANCE_OWNS_KMS", false)) newOwner = address(g.timelock);
        }
        if (newOwner != deployer) {
            // Ownable2Step: the new owner must call acceptOwnership() (a DAO does it by proposal).
            kms.transferOwnership(newOwner);
            console2.log("KmsAuth pending owner (must acceptOwnership):", newOwner);
        }
        vm.stopBroadcast();
    }

    /// @dev Calls `add` (a KmsAuth allowlist setter) once for each value of the comma-separated
    /// bytes32 list in the environment variable `key` (none when unset).
    function _addEach(string memory key, function(bytes32) external add) internal {
        bytes32[] memory values = vm.envOr(key, ",", new bytes32[](0));
        for (uint256 i = 0; i < values.length; ++i) {
            add(values[i]);
        }
    }
}
