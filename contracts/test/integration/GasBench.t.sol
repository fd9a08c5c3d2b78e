// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";

/// @dev Gas of the hot paths, one call each, through the proxies. Reproduce with
/// `forge test --match-contract GasBenchTest --gas-report` (or `-vv` for the logged numbers).
/// The bounds are regression guards, far above the measured values.
contract GasBenchTest is CairnTestBase {
    address internal owner = makeAddr("Owner");
    address internal developer = makeAddr("Developer");
    address internal node = makeAddr("KmsNode");
    KmsAuth internal kms;
    AppAuth internal app;

    function setUp() public {
        vm.warp(1_700_000_000);
        kms = _deployKmsAuth(owner, address(new AppAuth()));
        vm.startPrank(owner);
        kms.addOsImageHash(OS_IMAGE);
        kms.addKmsNode(node);
        kms.setAdvisoryTolerated("INTEL-SA-00837", true);
        kms.setAdvisoryTolerated("INTEL-SA-00615", true);
        vm.stopPrank();
        vm.prank(developer);
        app = AppAuth(kms.deployAndRegisterApp(developer, false, false, DEVICE_ID, COMPOSE_HASH));
    }

    function test_Gas_KmsIsAppAllowed() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        uint256 g = gasleft();
        (bool ok,) = kms.isAppAllowed(b);
        g -= gasleft();
        assertTrue(ok, "allowed");
        console2.log("KmsAuth.isAppAllowed (allowed, 0 advisories):", g);
        assertLt(g, 60_000, "regression bound");
    }

    function test_Gas_KmsIsAppAllowedWithAdvisories() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.advisoryIds = new string[](2);
        b.advisoryIds[0] = "INTEL-SA-00837";
        b.advisoryIds[1] = "INTEL-SA-00615";
        uint256 g = gasleft();
        (bool ok,) = kms.isAppAllowed(b);
        g -= gasleft();
        assertTrue(ok, "allowed");
        console2.log("KmsAuth.isAppAllowed (allowed, 2 advisories):", g);
        assertLt(g, 70_000, "regression bound");
    }

    function test_Gas_KmsIsAppAllowedUnregistered() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(0xBEEF), COMPOSE_HASH, DEVICE_ID);
        uint256 g = gasleft();
        (bool ok,) = kms.isAppAllowed(b);
        g -= gasleft();
        assertFalse(ok, "denied");
        console2.log("KmsAuth.isAppAllowed (unregistered):", g);
        assertLt(g, 20_000, "regression bound");
    }

    function test_Gas_AddComposeHash() public {
        vm.prank(developer);
        uint256 g = gasleft();
        app.addComposeHash(COMPOSE_HASH_2);
        g -= gasleft();
        console2.log("AppAuth.addComposeHash (new hash):", g);
        assertLt(g, 60_000, "regression bound");
    }

    function test_Gas_ScheduleComposeHash() public {
        vm.prank(developer);
        uint256 g = gasleft();
        app.scheduleComposeHash(COMPOSE_HASH_2, uint64(block.timestamp + 7 days));
        g -= gasleft();
        console2.log("AppAuth.scheduleComposeHash (new hash):", g);
        assertLt(g, 60_000, "regression bound");
    }

    function test_Gas_AnchorCheckpoint() public {
        vm.prank(node);
        kms.anchorCheckpoint(1, keccak256("r1"));
        vm.roll(block.number + 1);
        vm.prank(node);
        uint256 g = gasleft();
        kms.anchorCheckpoint(2, keccak256("r2"));
        g -= gasleft();
        console2.log("KmsAuth.anchorCheckpoint (subsequent):", g);
        assertLt(g, 40_000, "regression bound");
    }

    function test_Gas_DeployAndRegisterApp() public {
        vm.prank(developer);
        uint256 g = gasleft();
        kms.deployAndRegisterApp(developer, false, true, bytes32(0), COMPOSE_HASH);
        g -= gasleft();
        console2.log("KmsAuth.deployAndRegisterApp:", g);
        assertLt(g, 400_000, "regression bound");
    }
}
