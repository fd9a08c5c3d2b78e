// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";

contract AppAuthTest is CairnTestBase {
    address internal owner = makeAddr("Owner");
    AppAuth internal app;

    function setUp() public {
        vm.warp(1_700_000_000);
        app = _deployAppAuth(owner, false, false, DEVICE_ID, COMPOSE_HASH);
    }

    // ------------------------------------------------------------------ initialize

    function test_Initialize_SetsState() public view {
        assertEq(app.owner(), owner, "owner");
        assertTrue(app.allowedComposeHashes(COMPOSE_HASH), "initial hash active");
        (bool listed, uint64 activation) = app.composeHashActivation(COMPOSE_HASH);
        assertTrue(listed, "listed");
        assertEq(activation, uint64(block.timestamp), "activates now");
        assertTrue(app.allowedDeviceIds(DEVICE_ID), "initial device");
        assertFalse(app.allowAnyDevice(), "allowAnyDevice");
        assertFalse(app.requireTcbUpToDate(), "requireTcb");
        assertFalse(app.upgradesDisabled(), "upgradesDisabled");
    }

    function test_Initialize_EmitsEvents() public {
        AppAuth impl = new AppAuth();
        vm.expectEmit();
        emit AppAuth.UpgradesDisabled();
        vm.expectEmit();
        emit AppAuth.AllowAnyDeviceSet(true);
        vm.expectEmit();
        emit AppAuth.DeviceAdded(DEVICE_ID);
        vm.expectEmit();
        emit AppAuth.ComposeHashAdded(COMPOSE_HASH, uint64(block.timestamp));
        AppAuth a = _proxyAppAuth(address(impl), owner, true, true, DEVICE_ID, COMPOSE_HASH);
        assertTrue(a.upgradesDisabled(), "upgradesDisabled");
        assertTrue(a.allowAnyDevice(), "allowAnyDevice");
    }

    function test_Initialize_ZeroDeviceAndHashMeanNone() public {
        AppAuth a = _deployAppAuth(owner, false, false, bytes32(0), bytes32(0));
        assertFalse(a.allowedDeviceIds(bytes32(0)), "zero device not listed");
        (bool listed,) = a.composeHashActivation(bytes32(0));
        assertFalse(listed, "zero hash not listed");
    }

    function test_RevertIf_InitializeTwice() public {
        vm.expectRevert(abi.encodeWithSelector(Initializable.InvalidInitialization.selector));
        app.initialize(owner, false, false, bytes32(0), bytes32(0));
    }

    function test_RevertIf_InitializeImplementation() public {
        AppAuth impl = new AppAuth();
        vm.expectRevert(abi.encodeWithSelector(Initializable.InvalidInitialization.selector));
        impl.initialize(owner, false, false, bytes32(0), bytes32(0));
    }

    function test_RevertIf_InitialOwnerZero() public {
        AppAuth impl = new AppAuth();
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableInvalidOwner.selector, address(0)));
        _proxyAppAuth(address(impl), address(0), false, false, bytes32(0), bytes32(0));
    }

    // ------------------------------------------------------------------ compose hashes

    function test_AddComposeHash_EmitsEvent() public {
        vm.expectEmit(address(app));
        emit AppAuth.ComposeHashAdded(COMPOSE_HASH_2, uint64(block.timestamp));
        vm.prank(owner);
        app.addComposeHash(COMPOSE_HASH_2);
        assertTrue(app.allowedComposeHashes(COMPOSE_HASH_2), "active");
    }

    function test_RevertIf_AddComposeHash_AlreadyAllowed() public {
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthComposeHashAlreadyAllowed.selector, COMPOSE_HASH));
        vm.prank(owner);
        app.addComposeHash(COMPOSE_HASH);
    }

    function test_RevertIf_AddComposeHash_Zero() public {
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthZeroComposeHash.selector));
        vm.prank(owner);
        app.addComposeHash(bytes32(0));
    }

    function test_AddComposeHash_ActivatesScheduledHashNow() public {
        uint64 later = uint64(block.timestamp + 1 days);
        vm.startPrank(owner);
        app.scheduleComposeHash(COMPOSE_HASH_2, later);
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH_2), "not yet active");
        vm.expectEmit(address(app));
        emit AppAuth.ComposeHashAdded(COMPOSE_HASH_2, uint64(block.timestamp));
        app.addComposeHash(COMPOSE_HASH_2);
        vm.stopPrank();
        assertTrue(app.allowedComposeHashes(COMPOSE_HASH_2), "active now");
    }

    function test_ScheduleComposeHash_EmitsEventAndActivatesLater() public {
        uint64 later = uint64(block.timestamp + 7 days);
        vm.expectEmit(address(app));
        emit AppAuth.ComposeHashAdded(COMPOSE_HASH_2, later);
        vm.prank(owner);
        app.scheduleComposeHash(COMPOSE_HASH_2, later);

        (bool listed, uint64 activation) = app.composeHashActivation(COMPOSE_HASH_2);
        assertTrue(listed, "listed");
        assertEq(activation, later, "activatesAt");
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH_2), "inactive before");
        _assertVerdictOf(
            app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH_2, DEVICE_ID), false, "Compose hash not yet active"
        );

        vm.warp(later - 1);
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH_2), "inactive one second before");
        vm.warp(later);
        assertTrue(app.allowedComposeHashes(COMPOSE_HASH_2), "active at activatesAt");
        _assertVerdictOf(app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH_2, DEVICE_ID), true, "");
    }

    function test_ScheduleComposeHash_ReschedulesListedHash() public {
        uint64 later = uint64(block.timestamp + 1 days);
        vm.startPrank(owner);
        app.scheduleComposeHash(COMPOSE_HASH, later);
        vm.stopPrank();
        (, uint64 activation) = app.composeHashActivation(COMPOSE_HASH);
        assertEq(activation, later, "rescheduled");
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH), "paused until later");
    }

    function test_RevertIf_ScheduleComposeHash_InPast() public {
        uint64 past = uint64(block.timestamp - 1);
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthActivationInPast.selector, past, uint64(block.timestamp)));
        vm.prank(owner);
        app.scheduleComposeHash(COMPOSE_HASH_2, past);
    }

    function test_RevertIf_ScheduleComposeHash_NoOp() public {
        uint64 later = uint64(block.timestamp + 1 days);
        vm.startPrank(owner);
        app.scheduleComposeHash(COMPOSE_HASH_2, later);
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthComposeHashAlreadyAllowed.selector, COMPOSE_HASH_2));
        app.scheduleComposeHash(COMPOSE_HASH_2, later);
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthComposeHashAlreadyAllowed.selector, COMPOSE_HASH));
        app.scheduleComposeHash(COMPOSE_HASH, uint64(block.timestamp));
        vm.stopPrank();
    }

    function test_RevertIf_ScheduleComposeHash_Zero() public {
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthZeroComposeHash.selector));
        vm.prank(owner);
        app.scheduleComposeHash(bytes32(0), uint64(block.timestamp + 1));
    }

    function test_RemoveComposeHash_EmitsEvent() public {
        vm.expectEmit(address(app));
        emit AppAuth.ComposeHashRemoved(COMPOSE_HASH);
        vm.prank(owner);
        app.removeComposeHash(COMPOSE_HASH);
        (bool listed, uint64 activation) = app.composeHashActivation(COMPOSE_HASH);
        assertFalse(listed, "unlisted");
        assertEq(activation, 0, "activation cleared");
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH), "not allowed");
    }

    function test_RemoveComposeHash_RemovesScheduledHash() public {
        vm.startPrank(owner);
        app.scheduleComposeHash(COMPOSE_HASH_2, uint64(block.timestamp + 1 days));
        app.removeComposeHash(COMPOSE_HASH_2);
        vm.stopPrank();
        vm.warp(block.timestamp + 2 days);
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH_2), "never activates");
    }

    function test_RevertIf_RemoveComposeHash_NotListed() public {
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthComposeHashNotListed.selector, COMPOSE_HASH_2));
        vm.prank(owner);
        app.removeComposeHash(COMPOSE_HASH_2);
    }

    // ------------------------------------------------------------------ devices

    function _devices() internal view returns (Allowlist memory) {
        return Allowlist({
            name: "devices",
            owner: owner,
            add: app.addDevice,
            remove: app.removeDevice,
            isListed: app.allowedDeviceIds,
            added: AppAuth.DeviceAdded.selector,
            removed: AppAuth.DeviceRemoved.selector,
            alreadyListed: AppAuth.AppAuthDeviceAlreadyAllowed.selector,
            notListed: AppAuth.AppAuthDeviceNotAllowed.selector
        });
    }

    function test_AddDevice_EmitsEvent() public {
        _assertAllowlist(_devices(), DEVICE_ID_2, ListCase.Add);
    }

    function test_RevertIf_AddDevice_AlreadyAllowed() public {
        _assertAllowlist(_devices(), DEVICE_ID, ListCase.AddListed);
    }

    function test_RemoveDevice_EmitsEvent() public {
        _assertAllowlist(_devices(), DEVICE_ID, ListCase.Remove);
    }

    function test_RevertIf_RemoveDevice_NotAllowed() public {
        _assertAllowlist(_devices(), DEVICE_ID_2, ListCase.RemoveUnlisted);
    }

    function test_RevertIf_AddDevice_Zero() public {
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthZeroDeviceId.selector));
        vm.prank(owner);
        app.addDevice(bytes32(0));
    }

    function _allowAnyDevice() internal view returns (Flag memory) {
        return Flag({
            name: "allowAnyDevice",
            owner: owner,
            set: app.setAllowAnyDevice,
            get: app.allowAnyDevice,
            changed: AppAuth.AllowAnyDeviceSet.selector,
            unchanged: AppAuth.AppAuthAllowAnyDeviceUnchanged.selector
        });
    }

    function _requireTcbUpToDate() internal view returns (Flag memory) {
        return Flag({
            name: "requireTcbUpToDate",
            owner: owner,
            set: app.setRequireTcbUpToDate,
            get: app.requireTcbUpToDate,
            changed: AppAuth.RequireTcbUpToDateSet.selector,
            unchanged: AppAuth.AppAuthRequireTcbUpToDateUnchanged.selector
        });
    }

    function test_SetAllowAnyDevice_EmitsEvent() public {
        _assertFlag(_allowAnyDevice(), FlagCase.SetAndClear);
    }

    function test_RevertIf_SetAllowAnyDevice_Unchanged() public {
        _assertFlag(_allowAnyDevice(), FlagCase.Unchanged);
    }

    function test_SetRequireTcbUpToDate_EmitsEvent() public {
        _assertFlag(_requireTcbUpToDate(), FlagCase.SetAndClear);
    }

    function test_RevertIf_SetRequireTcbUpToDate_Unchanged() public {
        _assertFlag(_requireTcbUpToDate(), FlagCase.Unchanged);
    }

    // ------------------------------------------------------------------ upgrades switch

    function test_DisableUpgrades_EmitsEvent() public {
        vm.expectEmit(address(app));
        emit AppAuth.UpgradesDisabled();
        vm.prank(owner);
        app.disableUpgrades();
        assertTrue(app.upgradesDisabled(), "disabled");
    }

    function test_RevertIf_DisableUpgrades_AlreadyDisabled() public {
        vm.startPrank(owner);
        app.disableUpgrades();
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthUpgradesDisabled.selector));
        app.disableUpgrades();
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ isAppAllowed

    function test_IsAppAllowed_AllowsListedHashAndDevice() public view {
        _assertVerdictOf(app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID), true, "");
    }

    function test_IsAppAllowed_DeniesUnlistedHash() public view {
        _assertVerdictOf(
            app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH_2, DEVICE_ID), false, "Compose hash not allowed"
        );
    }

    function test_IsAppAllowed_ChecksHashBeforeDevice() public view {
        _assertVerdictOf(
            app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH_2, DEVICE_ID_2), false, "Compose hash not allowed"
        );
    }

    function test_IsAppAllowed_DeniesUnlistedDevice() public view {
        _assertVerdictOf(
            app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID_2), false, "Device not allowed"
        );
    }

    function test_IsAppAllowed_AllowAnyDeviceSkipsDeviceCheck() public {
        vm.prank(owner);
        app.setAllowAnyDevice(true);
        _assertVerdictOf(app.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID_2), true, "");
    }

    function test_IsAppAllowed_RequireTcbUpToDate() public {
        vm.prank(owner);
        app.setRequireTcbUpToDate(true);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        _assertVerdictOf(app.isAppAllowed, b, true, "");
        b.tcbStatus = "SWHardeningNeeded";
        _assertVerdictOf(app.isAppAllowed, b, false, "TCB status is not UpToDate");
        // The device check comes before the TCB check.
        b.deviceId = DEVICE_ID_2;
        _assertVerdictOf(app.isAppAllowed, b, false, "Device not allowed");
    }

    function test_IsAppAllowed_IgnoresTcbWhenNotRequired() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.tcbStatus = "OutOfDate";
        _assertVerdictOf(app.isAppAllowed, b, true, "");
    }

    // ------------------------------------------------------------------ ERC-165

    function test_InterfaceId_IsDstackValue() public pure {
        assertEq(type(IAppAuth).interfaceId, bytes4(0x1e079198), "IAppAuth interface id");
        assertEq(IAppAuth.isAppAllowed.selector, bytes4(0x1e079198), "selector");
    }

    function test_SupportsInterface() public view {
        assertTrue(app.supportsInterface(0x1e079198), "IAppAuth");
        assertTrue(app.supportsInterface(type(IERC165).interfaceId), "IERC165");
        assertFalse(app.supportsInterface(0xffffffff), "0xffffffff");
        assertFalse(app.supportsInterface(0x12345678), "random");
    }

    // ------------------------------------------------------------------ ownership

    function test_TransferOwnership_IsTwoStep() public {
        address next = makeAddr("Next");
        vm.expectEmit(address(app));
        emit Ownable2StepUpgradeable.OwnershipTransferStarted(owner, next);
        vm.prank(owner);
        app.transferOwnership(next);
        assertEq(app.owner(), owner, "still owner until accepted");
        assertEq(app.pendingOwner(), next, "pending");
        vm.prank(next);
        app.acceptOwnership();
        assertEq(app.owner(), next, "accepted");
    }

    function testFuzz_RevertIf_CallerNotOwner(address caller) public {
        vm.assume(caller != owner);
        bytes[] memory calls = new bytes[](9);
        calls[0] = abi.encodeCall(AppAuth.addComposeHash, (COMPOSE_HASH_2));
        calls[1] = abi.encodeCall(AppAuth.scheduleComposeHash, (COMPOSE_HASH_2, uint64(block.timestamp + 1)));
        calls[2] = abi.encodeCall(AppAuth.removeComposeHash, (COMPOSE_HASH));
        calls[3] = abi.encodeCall(AppAuth.addDevice, (DEVICE_ID_2));
        calls[4] = abi.encodeCall(AppAuth.removeDevice, (DEVICE_ID));
        calls[5] = abi.encodeCall(AppAuth.setAllowAnyDevice, (true));
        calls[6] = abi.encodeCall(AppAuth.setRequireTcbUpToDate, (true));
        calls[7] = abi.encodeCall(AppAuth.disableUpgrades, ());
        calls[8] = abi.encodeCall(OwnableUpgradeable.transferOwnership, (caller));
        for (uint256 i = 0; i < calls.length; ++i) {
            vm.prank(caller);
            vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, caller));
            (bool ok,) = address(app).call(calls[i]);
            assertTrue(ok, "expectRevert consumed the revert");
        }
        assertTrue(app.allowedComposeHashes(COMPOSE_HASH), "state unchanged");
        assertFalse(app.allowedComposeHashes(COMPOSE_HASH_2), "state unchanged");
    }

    // ------------------------------------------------------------------ fuzzing the allowlists

    function testFuzz_ComposeHashAllowlist(bytes32 hash, uint32 delay) public {
        vm.assume(hash != bytes32(0) && hash != COMPOSE_HASH);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), hash, DEVICE_ID);
        _assertVerdictOf(app.isAppAllowed, b, false, "Compose hash not allowed");

        uint64 activation = uint64(block.timestamp) + delay;
        vm.prank(owner);
        app.scheduleComposeHash(hash, activation);
        _assertVerdictOf(app.isAppAllowed, b, delay == 0, delay == 0 ? "" : "Compose hash not yet active");

        vm.warp(activation);
        _assertVerdictOf(app.isAppAllowed, b, true, "");

        vm.prank(owner);
        app.removeComposeHash(hash);
        _assertVerdictOf(app.isAppAllowed, b, false, "Compose hash not allowed");
    }

    function testFuzz_DeviceAllowlist(bytes32 device) public {
        vm.assume(device != bytes32(0) && device != DEVICE_ID);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, device);
        _assertVerdictOf(app.isAppAllowed, b, false, "Device not allowed");
        vm.prank(owner);
        app.addDevice(device);
        _assertVerdictOf(app.isAppAllowed, b, true, "");
        vm.prank(owner);
        app.removeDevice(device);
        _assertVerdictOf(app.isAppAllowed, b, false, "Device not allowed");
    }

    function testFuzz_TcbStatusOnlyUpToDatePasses(string calldata status) public {
        vm.prank(owner);
        app.setRequireTcbUpToDate(true);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.tcbStatus = status;
        bool upToDate = keccak256(bytes(status)) == keccak256("UpToDate");
        _assertVerdictOf(app.isAppAllowed, b, upToDate, upToDate ? "" : "TCB status is not UpToDate");
    }
}
