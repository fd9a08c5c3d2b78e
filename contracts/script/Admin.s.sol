// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {KmsAuth} from "../src/KmsAuth.sol";
import {CairnScript} from "./base/CairnScript.sol";

/// @notice The common KmsAuth admin actions, one per run, chosen by CAIRN_ACTION:
///   add-os-image | remove-os-image            CAIRN_OS_IMAGE_HASH
///   set-root-keys                             CAIRN_KEY_GENERATION, CAIRN_K256_PUBKEY, CAIRN_CA_PUBKEY
///   rotate-root-keys                          the same + CAIRN_PREVIOUS_VALID_UNTIL (unix seconds)
///   set-transition-window-end                 CAIRN_PREVIOUS_VALID_UNTIL (unix seconds)
///   add-kms-node | remove-kms-node            CAIRN_NODE
///   add-kms-mr | remove-kms-mr                CAIRN_MR_AGGREGATED
///   add-kms-device | remove-kms-device        CAIRN_DEVICE_ID
///   set-gateway-app-id                        CAIRN_GATEWAY_APP_ID
///   set-tcb-status                            CAIRN_TCB_STATUS, CAIRN_ACCEPTABLE (bool)
///   set-advisory                              CAIRN_ADVISORY_ID, CAIRN_TOLERATED (bool)
///   deregister-app                            CAIRN_APP_ID
///   set-app-auth-implementation               CAIRN_APP_AUTH_IMPLEMENTATION
///   accept-ownership                          (the signer is the pending owner)
/// Always: PRIVATE_KEY (or forge's signer flags), CAIRN_KMS_AUTH.
contract Admin is CairnScript {
    /// @notice Runs the action named by CAIRN_ACTION.
    function run() external {
        KmsAuth kms = KmsAuth(_envAddressRequired("CAIRN_KMS_AUTH"));
        string memory action = vm.envString("CAIRN_ACTION");
        _startBroadcast();
        if (_eq(action, "add-os-image")) {
            kms.addOsImageHash(_envBytes32Required("CAIRN_OS_IMAGE_HASH"));
        } else if (_eq(action, "remove-os-image")) {
            kms.removeOsImageHash(_envBytes32Required("CAIRN_OS_IMAGE_HASH"));
        } else if (_eq(action, "set-root-keys")) {
            uint256 generation = vm.envUint("CAIRN_KEY_GENERATION");
            require(generation <= type(uint32).max, "CAIRN_KEY_GENERATION out of range");
            // forge-lint: disable-next-line(unsafe-typecast) -- range checked above
            kms.setKmsRootKeys(uint32(generation), vm.envBytes("CAIRN_K256_PUBKEY"), vm.envBytes("CAIRN_CA_PUBKEY"));
        } else if (_eq(action, "rotate-root-keys")) {
            uint256 generation = vm.envUint("CAIRN_KEY_GENERATION");
            require(generation <= type(uint32).max, "CAIRN_KEY_GENERATION out of range");
            uint256 validUntil = vm.envUint("CAIRN_PREVIOUS_VALID_UNTIL");
            require(validUntil <= type(uint64).max, "CAIRN_PREVIOUS_VALID_UNTIL out of range");
            kms.rotateKmsRootKeys(
                // forge-lint: disable-next-line(unsafe-typecast) -- range checked above
                uint32(generation),
                vm.envBytes("CAIRN_K256_PUBKEY"),
                vm.envBytes("CAIRN_CA_PUBKEY"),
                // forge-lint: disable-next-line(unsafe-typecast) -- range checked above
                uint64(validUntil)
            );
        } else if (_eq(action, "set-transition-window-end")) {
            uint256 validUntil = vm.envUint("CAIRN_PREVIOUS_VALID_UNTIL");
            require(validUntil <= type(uint64).max, "CAIRN_PREVIOUS_VALID_UNTIL out of range");
            // forge-lint: disable-next-line(unsafe-typecast) -- range checked above
            kms.setTransitionWindowEnd(uint64(validUntil));
        } else if (_eq(action, "add-kms-node")) {
            kms.addKmsNode(_envAddressRequired("CAIRN_NODE"));
        } else if (_eq(action, "remove-kms-node")) {
            kms.removeKmsNode(_envAddressRequired("CAIRN_NODE"));
        } else if (_eq(action, "add-kms-mr")) {
            kms.addKmsAggregatedMr(_envBytes32Required("CAIRN_MR_AGGREGATED"));
        } else if (_eq(action, "remove-kms-mr")) {
            kms.removeKmsAggregatedMr(_envBytes32Required("CAIRN_MR_AGGREGATED"));
        } else if (_eq(action, "add-kms-device")) {
            kms.addKmsDevice(_envBytes32Required("CAIRN_DEVICE_ID"));
        } else if (_eq(action, "remove-kms-device")) {
            kms.removeKmsDevice(_envBytes32Required("CAIRN_DEVICE_ID"));
        } else if (_eq(action, "set-gateway-app-id")) {
            kms.setGatewayAppId(vm.envAddress("CAIRN_GATEWAY_APP_ID"));
        } else if (_eq(action, "set-tcb-status")) {
            kms.setTcbStatusAcceptable(vm.envString("CAIRN_TCB_STATUS"), vm.envBool("CAIRN_ACCEPTABLE"));
        } else if (_eq(action, "set-advisory")) {
            kms.setAdvisoryTolerated(vm.envString("CAIRN_ADVISORY_ID"), vm.envBool("CAIRN_TOLERATED"));
        } else if (_eq(action, "deregister-app")) {
            kms.deregisterApp(_envAddressRequired("CAIRN_APP_ID"));
        } else if (_eq(action, "set-app-auth-implementation")) {
            kms.setAppAuthImplementation(_envAddressRequired("CAIRN_APP_AUTH_IMPLEMENTATION"));
        } else if (_eq(action, "accept-ownership")) {
            kms.acceptOwnership();
        } else {
            revert(string.concat("unknown CAIRN_ACTION: ", action));
        }
        vm.stopBroadcast();
        console2.log("done:", action);
    }
}
