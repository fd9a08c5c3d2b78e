// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnScript} from "../../script/base/CairnScript.sol";
import {Deploy} from "../../script/Deploy.s.sol";
import {DeployGovernance} from "../../script/DeployGovernance.s.sol";
import {RegisterApp} from "../../script/RegisterApp.s.sol";
import {ComposeHash} from "../../script/ComposeHash.s.sol";
import {Admin} from "../../script/Admin.s.sol";

/// @dev Runs the forge scripts in-process, driven by environment variables as on a real chain.
/// Environment variables are process-wide and forge runs test functions in parallel, so the
/// whole sequence lives in one test function.
contract ScriptsTest is Test {
    uint256 internal constant KEY = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;
    bytes32 internal constant OS = keccak256("os");
    bytes32 internal constant H1 = keccak256("compose-1");
    bytes32 internal constant H2 = keccak256("compose-2");

    function _boot(address app, bytes32 hash) internal pure returns (IAppAuth.AppBootInfo memory b) {
        b.appId = app;
        b.composeHash = hash;
        b.osImageHash = OS;
        b.tcbStatus = "UpToDate";
        b.advisoryIds = new string[](0);
    }

    function test_Scripts_DeployRegisterComposeAdmin() public {
        address signer = vm.addr(KEY);
        address node = makeAddr("node");
        vm.setEnv("PRIVATE_KEY", vm.toString(KEY));

        // Deploy: KmsAuth with one OS image and one node, plus a DAO that does not own it.
        vm.setEnv("CAIRN_OS_IMAGE_HASHES", vm.toString(OS));
        vm.setEnv("CAIRN_KMS_NODES", vm.toString(node));
        vm.setEnv("CAIRN_DEPLOY_GOVERNANCE", "true");
        KmsAuth kms = new Deploy().run();
        assertEq(kms.owner(), signer, "owner");
        assertTrue(kms.allowedOsImages(OS), "os image");
        assertTrue(kms.isKmsNode(node), "node");
        assertTrue(kms.isTcbStatusAcceptable("UpToDate"), "initialized");

        // RegisterApp through the factory.
        vm.setEnv("CAIRN_KMS_AUTH", vm.toString(address(kms)));
        vm.setEnv("CAIRN_ALLOW_ANY_DEVICE", "true");
        vm.setEnv("CAIRN_COMPOSE_HASH", vm.toString(H1));
        address appId = new RegisterApp().run();
        assertTrue(kms.isAppRegistered(appId), "registered");
        assertEq(AppAuth(appId).owner(), signer, "app owner");
        (bool ok,) = kms.isAppAllowed(_boot(appId, H1));
        assertTrue(ok, "H1 allowed");

        // ComposeHash: add H2, remove H1.
        vm.setEnv("CAIRN_APP_ID", vm.toString(appId));
        vm.setEnv("CAIRN_COMPOSE_HASH", vm.toString(H2));
        vm.setEnv("CAIRN_ACTION", "add");
        new ComposeHash().run();
        vm.setEnv("CAIRN_COMPOSE_HASH", vm.toString(H1));
        vm.setEnv("CAIRN_ACTION", "remove");
        new ComposeHash().run();
        (ok,) = kms.isAppAllowed(_boot(appId, H2));
        assertTrue(ok, "H2 allowed");
        string memory reason;
        (ok, reason) = kms.isAppAllowed(_boot(appId, H1));
        assertEq(reason, "Compose hash not allowed", "H1 removed");

        // Admin: TCB policy and deregistration.
        vm.setEnv("CAIRN_ACTION", "set-tcb-status");
        vm.setEnv("CAIRN_TCB_STATUS", "SWHardeningNeeded");
        vm.setEnv("CAIRN_ACCEPTABLE", "true");
        new Admin().run();
        assertTrue(kms.isTcbStatusAcceptable("SWHardeningNeeded"), "tcb");
        vm.setEnv("CAIRN_ACTION", "deregister-app");
        new Admin().run();
        assertFalse(kms.isAppRegistered(appId), "deregistered");

        // Admin: root keys, then a rotation with a transition window, then its end moved.
        bytes memory k256 = hex"02aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
        bytes memory ca = hex"3059301306072a8648ce3d020106082a8648ce3d03010703420004";
        vm.setEnv("CAIRN_ACTION", "set-root-keys");
        vm.setEnv("CAIRN_KEY_GENERATION", "1");
        vm.setEnv("CAIRN_K256_PUBKEY", vm.toString(k256));
        vm.setEnv("CAIRN_CA_PUBKEY", vm.toString(ca));
        new Admin().run();
        assertEq(kms.keyGeneration(), 1, "generation 1");
        vm.setEnv("CAIRN_ACTION", "rotate-root-keys");
        vm.setEnv("CAIRN_KEY_GENERATION", "2");
        vm.setEnv("CAIRN_PREVIOUS_VALID_UNTIL", vm.toString(block.timestamp + 7 days));
        new Admin().run();
        assertEq(kms.keyGeneration(), 2, "generation 2");
        assertTrue(kms.isKeyGenerationActive(1), "generation 1 in its window");
        vm.setEnv("CAIRN_ACTION", "set-transition-window-end");
        vm.setEnv("CAIRN_PREVIOUS_VALID_UNTIL", vm.toString(block.timestamp));
        new Admin().run();
        assertFalse(kms.isKeyGenerationActive(1), "window ended by the admin");

        // DeployGovernance with a DAO-owned app.
        vm.setEnv("CAIRN_COMPOSE_HASH", vm.toString(H1));
        (CairnScript.Governance memory g, address daoApp) = new DeployGovernance().run();
        assertEq(AppAuth(daoApp).owner(), address(g.timelock), "timelock owns the DAO app");
        assertFalse(g.timelock.hasRole(g.timelock.DEFAULT_ADMIN_ROLE(), signer), "admin renounced");
        assertTrue(g.timelock.hasRole(g.timelock.PROPOSER_ROLE(), address(g.governor)), "proposer");

        // Unknown actions fail loudly.
        vm.setEnv("CAIRN_ACTION", "frobnicate");
        Admin admin = new Admin();
        vm.expectRevert(bytes("unknown CAIRN_ACTION: frobnicate"));
        admin.run();
    }
}
