// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {KmsAppTestBase} from "../utils/CairnTestBase.sol";

/// @dev An app's life through KmsAuth: factory deployment, a notice-period upgrade, a device
/// move, a TCB downgrade, deregistration.
contract AppLifecycleTest is KmsAppTestBase {
    address internal governance = makeAddr("Governance");

    function setUp() public {
        _deployKmsWithApp(governance);
    }

    function _verdict(bytes32 hash, bytes32 device) internal view returns (bool, string memory) {
        return kms.isAppAllowed(_bootInfo(address(app), hash, device));
    }

    /// @dev The verdict on (`composeHash`, `deviceId`) is `wantAllowed` with `wantReason`.
    function _expectVerdict(bytes32 composeHash, bytes32 deviceId, bool wantAllowed, string memory wantReason)
        internal
        view
    {
        (bool ok, string memory reason) = _verdict(composeHash, deviceId);
        _assertVerdict(ok, reason, wantAllowed, wantReason);
    }

    function test_NoticePeriodUpgradeThroughKms() public {
        uint64 activation = uint64(block.timestamp + 3 days);
        vm.prank(developer);
        app.scheduleComposeHash(COMPOSE_HASH_2, activation);

        _expectVerdict(COMPOSE_HASH_2, DEVICE_ID, false, "Compose hash not yet active");
        _expectVerdict(COMPOSE_HASH, DEVICE_ID, true, "");

        vm.warp(activation);
        _expectVerdict(COMPOSE_HASH_2, DEVICE_ID, true, "");

        vm.prank(developer);
        app.removeComposeHash(COMPOSE_HASH);
        _expectVerdict(COMPOSE_HASH, DEVICE_ID, false, "Compose hash not allowed");
    }

    function test_DeviceMoveAndOsImageRetirement() public {
        vm.startPrank(developer);
        app.addDevice(DEVICE_ID_2);
        app.removeDevice(DEVICE_ID);
        vm.stopPrank();
        _expectVerdict(COMPOSE_HASH, DEVICE_ID, false, "Device not allowed");
        _expectVerdict(COMPOSE_HASH, DEVICE_ID_2, true, "");

        vm.prank(governance);
        kms.removeOsImageHash(OS_IMAGE);
        _expectVerdict(COMPOSE_HASH, DEVICE_ID_2, false, "OS image is not allowed");
    }

    function test_DeregisteredAppIsDenied() public {
        vm.prank(governance);
        kms.deregisterApp(address(app));
        _expectVerdict(COMPOSE_HASH, DEVICE_ID, false, "App not registered");
        // The app's own policy still says yes: only the KMS registry denies.
        (bool ok, string memory reason) = app.isAppAllowed(_bootInfo(address(app), COMPOSE_HASH, DEVICE_ID));
        _assertVerdict(ok, reason, true, "");
    }

    function test_SelfDeployedAppCanRegister() public {
        AppAuth own = _deployAppAuth(developer, true, true, bytes32(0), COMPOSE_HASH_2);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(own), COMPOSE_HASH_2, DEVICE_ID_2);
        (bool ok, string memory reason) = kms.isAppAllowed(b);
        _assertVerdict(ok, reason, false, "App not registered");
        kms.registerApp(address(own));
        (ok, reason) = kms.isAppAllowed(b);
        _assertVerdict(ok, reason, true, "");
    }
}
