// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {AppAuth} from "../src/AppAuth.sol";
import {KmsAuth} from "../src/KmsAuth.sol";
import {CairnScript} from "./base/CairnScript.sol";

/// @notice Deploys a DAO: CairnToken + TimelockController + CairnGovernor, and optionally an
/// AppAuth owned by the timelock through an existing KmsAuth's factory.
/// Variables (docs/governance.md): PRIVATE_KEY, CAIRN_TOKEN_NAME, CAIRN_TOKEN_SYMBOL,
/// CAIRN_TOKEN_HOLDER, CAIRN_TOKEN_SUPPLY, CAIRN_VOTING_DELAY, CAIRN_VOTING_PERIOD,
/// CAIRN_PROPOSAL_THRESHOLD, CAIRN_QUORUM_PERCENT, CAIRN_TIMELOCK_DELAY; for the app:
/// CAIRN_KMS_AUTH, CAIRN_COMPOSE_HASH, CAIRN_ALLOW_ANY_DEVICE, CAIRN_DEVICE_ID, CAIRN_UPGRADES_DISABLED.
contract DeployGovernance is CairnScript {
    /// @notice Runs the deployment; returns the governance contracts and the DAO's app (or zero).
    function run() external returns (Governance memory g, address appId) {
        address deployer = _startBroadcast();
        g = _deployGovernance(deployer);
        address kms = vm.envOr("CAIRN_KMS_AUTH", address(0));
        if (kms != address(0)) {
            appId = KmsAuth(kms)
                .deployAndRegisterApp(
                    address(g.timelock),
                    vm.envOr("CAIRN_UPGRADES_DISABLED", false),
                    vm.envOr("CAIRN_ALLOW_ANY_DEVICE", false),
                    vm.envOr("CAIRN_DEVICE_ID", bytes32(0)),
                    vm.envOr("CAIRN_COMPOSE_HASH", bytes32(0))
                );
            console2.log("DAO-owned AppAuth (app id):", appId);
            require(AppAuth(appId).owner() == address(g.timelock), "timelock must own the app");
        }
        vm.stopBroadcast();
    }
}
