// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";

import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";

/// @dev Root-key rotation with a transition window: `rotateKmsRootKeys`, `setTransitionWindowEnd`,
/// `transitionWindow`, `isKeyGenerationActive`, and how `setKmsRootKeys` ends a window.
contract KmsAuthRotationTest is CairnTestBase {
    address internal owner = makeAddr("Owner");
    KmsAuth internal kms;

    bytes internal constant K256 = hex"02aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
    bytes internal constant K256_2 = hex"03aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
    bytes internal constant CA = hex"3059301306072a8648ce3d020106082a8648ce3d03010703420004";
    bytes internal constant CA_2 = hex"3059301306072a8648ce3d020106082a8648ce3d03010703420005";
    uint64 internal constant T0 = 1_700_000_000;
    uint64 internal constant WEEK = 7 days;

    function setUp() public {
        vm.warp(T0);
        kms = _deployKmsAuth(owner, address(0));
        vm.prank(owner);
        kms.setKmsRootKeys(1, K256, CA);
    }

    function _rotate(uint32 generation, uint64 validUntil) internal {
        vm.prank(owner);
        kms.rotateKmsRootKeys(generation, K256_2, CA_2, validUntil);
    }

    function _window() internal view returns (uint32 previous, uint64 validUntil, bool active) {
        return kms.transitionWindow();
    }

    // ------------------------------------------------------------------ rotate

    function test_RotateKmsRootKeys_EmitsEventsAndOpensTheWindow() public {
        vm.expectEmit(address(kms));
        emit KmsAuth.KmsRootKeysSet(2, K256_2, CA_2);
        vm.expectEmit(address(kms));
        emit KmsAuth.TransitionWindowSet(1, T0 + WEEK);
        _rotate(2, T0 + WEEK);

        assertEq(kms.keyGeneration(), 2, "current generation");
        (bytes memory k, bytes memory c) = kms.rootKeys(2);
        assertEq(k, K256_2, "new k256");
        assertEq(c, CA_2, "new ca");
        (k, c) = kms.rootKeys(1);
        assertEq(k, K256, "old keys kept for audits");
        (uint32 previous, uint64 validUntil, bool active) = _window();
        assertEq(previous, 1, "previous generation");
        assertEq(validUntil, T0 + WEEK, "window end");
        assertTrue(active, "window open");
        assertTrue(kms.isKeyGenerationActive(1), "previous served");
        assertTrue(kms.isKeyGenerationActive(2), "current served");
        assertFalse(kms.isKeyGenerationActive(3), "future generation not served");
        assertFalse(kms.isKeyGenerationActive(0), "generation 0 never served");
    }

    function test_RotateKmsRootKeys_PreviousGenerationEndsExactlyAtValidUntil() public {
        _rotate(2, T0 + WEEK);
        vm.warp(T0 + WEEK - 1);
        assertTrue(kms.isKeyGenerationActive(1), "one second before the end");
        (,, bool active) = _window();
        assertTrue(active, "open one second before the end");
        vm.warp(T0 + WEEK);
        assertFalse(kms.isKeyGenerationActive(1), "refused at the end (exclusive)");
        (uint32 previous, uint64 validUntil, bool stillActive) = _window();
        assertEq(previous, 1, "previous still named");
        assertEq(validUntil, T0 + WEEK, "end kept");
        assertFalse(stillActive, "closed");
        assertTrue(kms.isKeyGenerationActive(2), "current still served");
    }

    function test_RotateKmsRootKeys_AgainDropsTheOlderGeneration() public {
        _rotate(2, T0 + WEEK);
        vm.expectEmit(address(kms));
        emit KmsAuth.TransitionWindowSet(2, T0 + 2 * WEEK);
        vm.prank(owner);
        kms.rotateKmsRootKeys(3, K256, CA, T0 + 2 * WEEK);
        assertFalse(kms.isKeyGenerationActive(1), "generation 1 dropped at once");
        assertTrue(kms.isKeyGenerationActive(2), "generation 2 is the previous now");
        assertTrue(kms.isKeyGenerationActive(3), "generation 3 current");
        (uint32 previous,,) = _window();
        assertEq(previous, 2, "previous");
    }

    function test_RevertIf_RotateKmsRootKeys_NoGenerationYet() public {
        KmsAuth fresh = _deployKmsAuth(owner, address(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNoGenerationToRotate.selector));
        fresh.rotateKmsRootKeys(1, K256, CA, T0 + WEEK);
    }

    function test_RevertIf_RotateKmsRootKeys_GenerationNotIncreasing() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthGenerationNotIncreasing.selector, uint32(1), uint32(1)));
        kms.rotateKmsRootKeys(1, K256_2, CA_2, T0 + WEEK);
    }

    function test_RevertIf_RotateKmsRootKeys_BadKeys() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidK256Pubkey.selector, bytes("")));
        kms.rotateKmsRootKeys(2, "", CA_2, T0 + WEEK);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidCaPubkey.selector, hex"3101"));
        kms.rotateKmsRootKeys(2, K256_2, hex"3101", T0 + WEEK);
        vm.stopPrank();
        assertEq(kms.keyGeneration(), 1, "nothing changed");
    }

    function test_RevertIf_RotateKmsRootKeys_WindowNotInTheFuture() public {
        uint64 latest = T0 + kms.MAX_TRANSITION_WINDOW();
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidTransitionWindow.selector, T0, T0, latest));
        kms.rotateKmsRootKeys(2, K256_2, CA_2, T0);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidTransitionWindow.selector, uint64(0), T0, latest));
        kms.rotateKmsRootKeys(2, K256_2, CA_2, 0);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidTransitionWindow.selector, latest + 1, T0, latest));
        kms.rotateKmsRootKeys(2, K256_2, CA_2, latest + 1);
        vm.stopPrank();
        (uint32 previous,,) = _window();
        assertEq(previous, 0, "no window");
        assertEq(kms.keyGeneration(), 1, "nothing changed");
    }

    function test_RevertIf_RotateKmsRootKeys_CallerNotOwner() public {
        address stranger = makeAddr("Stranger");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, stranger));
        kms.rotateKmsRootKeys(2, K256_2, CA_2, T0 + WEEK);
    }

    function testFuzz_RotateKmsRootKeys_WindowBounds(uint64 validUntil) public {
        uint64 latest = T0 + kms.MAX_TRANSITION_WINDOW();
        vm.prank(owner);
        if (validUntil <= T0 || validUntil > latest) {
            vm.expectRevert(
                abi.encodeWithSelector(KmsAuth.KmsAuthInvalidTransitionWindow.selector, validUntil, T0, latest)
            );
            kms.rotateKmsRootKeys(2, K256_2, CA_2, validUntil);
            assertEq(kms.keyGeneration(), 1, "refused");
            return;
        }
        kms.rotateKmsRootKeys(2, K256_2, CA_2, validUntil);
        (, uint64 end, bool active) = _window();
        assertEq(end, validUntil, "end");
        assertTrue(active, "open right after the rotation");
    }

    function testFuzz_IsKeyGenerationActive_MatchesTheWindow(uint32 generation, uint64 windowSecs, uint64 elapsed)
        public
    {
        windowSecs = uint64(bound(windowSecs, 1, kms.MAX_TRANSITION_WINDOW()));
        elapsed = uint64(bound(elapsed, 0, 2 * uint256(kms.MAX_TRANSITION_WINDOW())));
        generation = uint32(bound(generation, 0, 4));
        _rotate(2, T0 + windowSecs);
        vm.warp(T0 + elapsed);
        bool want = generation == 2 || (generation == 1 && elapsed < windowSecs);
        assertEq(kms.isKeyGenerationActive(generation), want, "active");
    }

    // ------------------------------------------------------------------ setKmsRootKeys after a rotation

    function test_SetKmsRootKeys_EndsAnOpenWindowAtOnce() public {
        _rotate(2, T0 + WEEK);
        vm.expectEmit(address(kms));
        emit KmsAuth.KmsRootKeysSet(3, K256, CA);
        vm.expectEmit(address(kms));
        emit KmsAuth.TransitionWindowSet(1, 0);
        vm.prank(owner);
        kms.setKmsRootKeys(3, K256, CA);
        (uint32 previous, uint64 validUntil, bool active) = _window();
        assertEq(previous, 0, "no previous generation");
        assertEq(validUntil, 0, "no window");
        assertFalse(active, "closed");
        assertFalse(kms.isKeyGenerationActive(1), "generation 1 refused");
        assertFalse(kms.isKeyGenerationActive(2), "generation 2 refused at once (emergency rotation)");
        assertTrue(kms.isKeyGenerationActive(3), "generation 3 current");
    }

    function test_SetKmsRootKeys_WithoutAWindowEmitsNoWindowEvent() public {
        vm.recordLogs();
        vm.prank(owner);
        kms.setKmsRootKeys(2, K256_2, CA_2);
        assertEq(vm.getRecordedLogs().length, 1, "only KmsRootKeysSet");
    }

    // ------------------------------------------------------------------ setTransitionWindowEnd

    function test_SetTransitionWindowEnd_ExtendsAndShortens() public {
        _rotate(2, T0 + WEEK);
        vm.expectEmit(address(kms));
        emit KmsAuth.TransitionWindowSet(1, T0 + 2 * WEEK);
        vm.prank(owner);
        kms.setTransitionWindowEnd(T0 + 2 * WEEK);
        (, uint64 validUntil,) = _window();
        assertEq(validUntil, T0 + 2 * WEEK, "extended");

        vm.warp(T0 + WEEK);
        vm.expectEmit(address(kms));
        emit KmsAuth.TransitionWindowSet(1, T0 + WEEK);
        vm.prank(owner);
        kms.setTransitionWindowEnd(T0 + WEEK); // not after now: ends at once
        assertFalse(kms.isKeyGenerationActive(1), "ended");
    }

    function test_RevertIf_SetTransitionWindowEnd_NoWindow() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNoTransitionWindow.selector));
        kms.setTransitionWindowEnd(T0 + WEEK);
    }

    function test_RevertIf_SetTransitionWindowEnd_WindowEnded_CannotReopen() public {
        _rotate(2, T0 + WEEK);
        vm.warp(T0 + WEEK);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNoTransitionWindow.selector));
        kms.setTransitionWindowEnd(T0 + 2 * WEEK);
        assertFalse(kms.isKeyGenerationActive(1), "still refused");
    }

    function test_RevertIf_SetTransitionWindowEnd_NoOpOrTooLate() public {
        _rotate(2, T0 + WEEK);
        uint64 latest = T0 + kms.MAX_TRANSITION_WINDOW();
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthTransitionWindowUnchanged.selector, T0 + WEEK));
        kms.setTransitionWindowEnd(T0 + WEEK);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidTransitionWindow.selector, latest + 1, T0, latest));
        kms.setTransitionWindowEnd(latest + 1);
        vm.stopPrank();
    }

    function test_RevertIf_SetTransitionWindowEnd_CallerNotOwner() public {
        _rotate(2, T0 + WEEK);
        address stranger = makeAddr("Stranger");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, stranger));
        kms.setTransitionWindowEnd(T0);
    }

    function testFuzz_SetTransitionWindowEnd_NeverReopensAnEndedWindow(uint64 windowSecs, uint64 later, uint64 newEnd)
        public
    {
        windowSecs = uint64(bound(windowSecs, 1, kms.MAX_TRANSITION_WINDOW()));
        later = uint64(bound(later, windowSecs, 3 * uint256(kms.MAX_TRANSITION_WINDOW())));
        _rotate(2, T0 + windowSecs);
        vm.warp(T0 + later);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNoTransitionWindow.selector));
        kms.setTransitionWindowEnd(newEnd);
        assertFalse(kms.isKeyGenerationActive(1), "previous generation stays refused");
    }
}
