// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {KmsAuthHandler} from "./KmsAuthHandler.sol";

contract KmsAuthInvariantTest is Test {
    KmsAuthHandler internal handler;
    KmsAuth internal kms;

    function setUp() public {
        vm.warp(1_700_000_000);
        handler = new KmsAuthHandler();
        kms = handler.kms();
        bytes4[12] memory handlerCalls = [
            KmsAuthHandler.registerApp.selector,
            KmsAuthHandler.deregisterApp.selector,
            KmsAuthHandler.addComposeHash.selector,
            KmsAuthHandler.scheduleComposeHash.selector,
            KmsAuthHandler.removeComposeHash.selector,
            KmsAuthHandler.warp.selector,
            KmsAuthHandler.addKmsNode.selector,
            KmsAuthHandler.removeKmsNode.selector,
            KmsAuthHandler.anchorCheckpoint.selector,
            KmsAuthHandler.rotateKmsRootKeys.selector,
            KmsAuthHandler.setKmsRootKeys.selector,
            KmsAuthHandler.setTransitionWindowEnd.selector
        ];
        bytes4[] memory selectors = new bytes4[](handlerCalls.length);
        for (uint256 i = 0; i < handlerCalls.length; ++i) {
            selectors[i] = handlerCalls[i];
        }
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    function _boot(address app, bytes32 hash) internal view returns (IAppAuth.AppBootInfo memory b) {
        b.appId = app;
        b.composeHash = hash;
        b.deviceId = keccak256("any-device");
        b.osImageHash = handler.OS_IMAGE();
        b.tcbStatus = "UpToDate";
        b.advisoryIds = new string[](0);
    }

    /// An app that is not registered is never allowed, whatever its own policy says.
    function invariant_UnregisteredAppNeverAllowed() public view {
        for (uint256 i = 0; i < 4; ++i) {
            AppAuth app = handler.appAt(i);
            if (kms.isAppRegistered(address(app))) continue;
            for (uint256 j = 0; j < 4; ++j) {
                (bool ok, string memory reason) = kms.isAppAllowed(_boot(address(app), handler.hashAt(j)));
                assertFalse(ok, "unregistered app allowed");
                assertEq(reason, "App not registered", "reason");
            }
        }
    }

    /// A compose hash removed (and not listed again) is never allowed, by the app or the KMS.
    function invariant_RemovedHashNeverAllowed() public view {
        for (uint256 i = 0; i < 4; ++i) {
            AppAuth app = handler.appAt(i);
            for (uint256 j = 0; j < 4; ++j) {
                bytes32 h = handler.hashAt(j);
                if (!handler.ghostRemoved(address(app), h)) continue;
                assertFalse(app.allowedComposeHashes(h), "removed hash allowed by app");
                (bool ok,) = app.isAppAllowed(_boot(address(app), h));
                assertFalse(ok, "removed hash allowed by app policy");
                (ok,) = kms.isAppAllowed(_boot(address(app), h));
                assertFalse(ok, "removed hash allowed by KMS");
            }
        }
    }

    /// A scheduled hash is allowed exactly from its activation time on.
    function invariant_ActivationTimeRespected() public view {
        for (uint256 i = 0; i < 4; ++i) {
            AppAuth app = handler.appAt(i);
            for (uint256 j = 0; j < 4; ++j) {
                bytes32 h = handler.hashAt(j);
                (bool listed, uint64 activation) = app.composeHashActivation(h);
                assertEq(app.allowedComposeHashes(h), listed && activation <= block.timestamp, "activation");
            }
        }
    }

    /// Anchored sizes never shrink: each node's anchor is the largest size it ever anchored.
    function invariant_AnchoredSizeNeverDecreases() public view {
        assertFalse(handler.ghostBadAnchorAccepted(), "shrinking/conflicting anchor accepted or good one refused");
        for (uint256 i = 0; i < 3; ++i) {
            address n = handler.nodeAt(i);
            (uint64 size,,) = kms.latestAnchor(n);
            assertEq(size, handler.ghostMaxAnchored(n), "anchor equals max ever anchored");
        }
    }

    /// A key generation that was retired (its window ended, or a later rotation or
    /// `setKmsRootKeys` replaced it) is never served again; at most two generations are served,
    /// the current one and the previous one, and only while its window is open.
    function invariant_RetiredGenerationNeverServedAgain() public view {
        assertFalse(handler.ghostReopened(), "an ended window was moved");
        uint32 current = kms.keyGeneration();
        (uint32 previous, uint64 validUntil, bool active) = kms.transitionWindow();
        assertEq(active, block.timestamp < validUntil, "window flag");
        if (previous != 0) assertLt(previous, current, "previous below current");
        for (uint32 g = 1; g <= handler.ghostMaxRetired(); ++g) {
            if (handler.ghostRetired(g)) assertFalse(kms.isKeyGenerationActive(g), "retired generation served");
        }
        for (uint32 g = 0; g <= current + 1; ++g) {
            bool served = kms.isKeyGenerationActive(g);
            assertEq(served, g != 0 && (g == current || (g == previous && active)), "served generations");
        }
    }
}
