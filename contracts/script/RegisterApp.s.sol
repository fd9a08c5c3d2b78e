// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {KmsAuth} from "../src/KmsAuth.sol";
import {CairnScript} from "./base/CairnScript.sol";

/// @notice Creates and registers an app through the KmsAuth factory (`deployAndRegisterApp`), or
/// registers an existing IAppAuth contract when CAIRN_APP_ID is set.
/// Variables (docs/governance.md): PRIVATE_KEY, CAIRN_KMS_AUTH (required), CAIRN_APP_ID,
/// CAIRN_APP_OWNER, CAIRN_UPGRADES_DISABLED, CAIRN_ALLOW_ANY_DEVICE, CAIRN_DEVICE_ID, CAIRN_COMPOSE_HASH.
contract RegisterApp is CairnScript {
    /// @notice Runs the registration; returns the app id.
    function run() external returns (address appId) {
        KmsAuth kms = KmsAuth(_envAddressRequired("CAIRN_KMS_AUTH"));
        address deployer = _startBroadcast();
        appId = vm.envOr("CAIRN_APP_ID", address(0));
        if (appId != address(0)) {
            kms.registerApp(appId);
            console2.log("registered existing app:", appId);
        } else {
            appId = kms.deployAndRegisterApp(
                vm.envOr("CAIRN_APP_OWNER", deployer),
                vm.envOr("CAIRN_UPGRADES_DISABLED", false),
                vm.envOr("CAIRN_ALLOW_ANY_DEVICE", false),
                vm.envOr("CAIRN_DEVICE_ID", bytes32(0)),
                vm.envOr("CAIRN_COMPOSE_HASH", bytes32(0))
            );
            console2.log("deployed and registered app:", appId);
        }
        vm.stopBroadcast();
    }
}
