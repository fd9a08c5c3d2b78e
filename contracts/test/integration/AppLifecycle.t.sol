// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";

/// @dev An app's life through KmsAuth: factory deployment, a notice-period upgrade, a device
/// move, a TCB downgrade, deregistration.
contract AppLifecycleTest is CairnTestBase {
    address internal governance = makeAddr("Governance");
    address internal developer = makeAddr("Developer");
    KmsAuth internal kms;
    AppAuth internal app;

    function setUp() public {
        vm.warp(1_700_000_000);
        kms = _deployKmsAuth(governance, address(new AppAuth()));
        vm.prank(governance);
        kms.addOsImageHash(OS_IMAGE);
        vm.prank(developer);
        app = AppAuth(kms.deployAndRegisterApp(developer, false, false, DEVICE_ID, COMPOSE_HASH));
    }

    function _verdict(bytes32 hash, bytes32 device) internal view returns (bool, string memory) {
        return kms.isAppAllowed(_bootInfo(address(app), hash, device));
    }

    function test_NoticePeriodUpgradeThroughKms() public {
        uint64 activation = uint64(block.timestamp + 3 days);
        vm.prank(developer);
        app.scheduleComposeHash(COMPOSE_HASH_2, activation);

        (bool ok, string memory reason) = _verdict(COMPOSE_HASH_2, DEVICE_ID);
        _assertVerdict(ok, reason, false, "Compose hash not yet active");
        (ok, reason) = _verdict(COMPOSE_HASH, DEVICE_ID);
        _assertVerdict(ok, reason, true, "");

        vm.warp(activation);
        (ok, reason) = _verdict(COMPOSE_HASH_2, DEVICE_ID);
        _assertVerdict(ok, reason, true, "");

        vm.prank(developer);
        app.removeComposeHash(COMPOSE_HASH);
        (ok, reason) = _verdict(COMPOSE_HASH, DEVICE_ID);
        _assertVerdict(ok, reason, false, "Compose hash not allowed");
    }

    function test_DeviceMoveAndOsImageRetirement() public {
        vm.startPrank(developer);
        app.addDevice(DEVICE_ID_2);
        app.removeDevice(DEVICE_ID);
        vm.stopPrank();
        (bool ok, string memory reason) = _verdict(COMPOSE_HASH, DEVICE_ID);
        _assertVerdict(ok, reason, false, "Device not allowed");
        (ok, reason) = _verdict(COMPOSE_HASH, DEVICE_ID_2);
        _assertVerdict(ok, reason, true, "");

        vm.prank(governance);
        kms.removeOsImageHash(OS_IMAGE);
        (ok, reason) = _verdict(COMPOSE_HASH, DEVICE_ID_2);
        _assertVerdict(ok, reason, false, "OS image is not allowed");
    }

    function test_DeregisteredAppIsDenied() public {
        vm.prank(governance);
        kms.deregisterApp(address(app));
        (bool ok, string memory reason) = _verdict(COMPOSE_HASH, DEVICE_ID);
        _assertVerdict(ok, reason, false, "App not registered");
        // The app's own policy still says yes: only the KMS registry denies.
        (ok, reason) = app.isAppAllowed(_bootInfo(address(app), COMPOSE_HASH, DEVICE_ID));
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
