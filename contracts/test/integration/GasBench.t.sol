// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {console2} from "forge-std/console2.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {KmsAppTestBase} from "../utils/CairnTestBase.sol";

/// @dev Gas of the hot paths, one call each, through the proxies. Reproduce with
/// `forge test --match-contract GasBenchTest --gas-report` (or `-vv` for the logged numbers).
/// The bounds are regression guards, far above the measured values.
contract GasBenchTest is KmsAppTestBase {
    address internal owner = makeAddr("Owner");
    address internal node = makeAddr("KmsNode");

    function setUp() public {
        _deployKmsWithApp(owner);
        vm.startPrank(owner);
        kms.addKmsNode(node);
        kms.setAdvisoryTolerated("INTEL-SA-00837", true);
        kms.setAdvisoryTolerated("INTEL-SA-00615", true);
        vm.stopPrank();
    }

    /// @dev `kms.isAppAllowed(b)` must answer `allowed`; logs its gas under `label` and bounds it.
    function _assertIsAppAllowedGas(IAppAuth.AppBootInfo memory b, bool allowed, string memory label, uint256 bound)
        internal
        view
    {
        uint256 g = gasleft();
        (bool ok,) = kms.isAppAllowed(b);
        g -= gasleft();
        assertEq(ok, allowed, "verdict");
        console2.log(label, g);
        assertLt(g, bound, "regression bound");
    }

    /// @dev Sends `data` to `target` as `from` (it must succeed); logs its gas under `label` and
    /// bounds it.
    function _assertCallGas(address from, address target, bytes memory data, string memory label, uint256 bound)
        internal
    {
        vm.prank(from);
        uint256 g = gasleft();
        (bool ok,) = target.call(data);
        g -= gasleft();
        assertTrue(ok, "call succeeded");
        console2.log(label, g);
        assertLt(g, bound, "regression bound");
    }

    function test_Gas_KmsIsAppAllowed() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        _assertIsAppAllowedGas(b, true, "KmsAuth.isAppAllowed (allowed, 0 advisories):", 60_000);
    }

    function test_Gas_KmsIsAppAllowedWithAdvisories() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.advisoryIds = new string[](2);
        b.advisoryIds[0] = "INTEL-SA-00837";
        b.advisoryIds[1] = "INTEL-SA-00615";
        _assertIsAppAllowedGas(b, true, "KmsAuth.isAppAllowed (allowed, 2 advisories):", 70_000);
    }

    function test_Gas_KmsIsAppAllowedUnregistered() public view {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(0xBEEF), COMPOSE_HASH, DEVICE_ID);
        _assertIsAppAllowedGas(b, false, "KmsAuth.isAppAllowed (unregistered):", 20_000);
    }

    function test_Gas_AddComposeHash() public {
        bytes memory call = abi.encodeCall(AppAuth.addComposeHash, (COMPOSE_HASH_2));
        _assertCallGas(developer, address(app), call, "AppAuth.addComposeHash (new hash):", 60_000);
    }

    function test_Gas_ScheduleComposeHash() public {
        bytes memory call =
            abi.encodeCall(AppAuth.scheduleComposeHash, (COMPOSE_HASH_2, uint64(block.timestamp + 7 days)));
        _assertCallGas(developer, address(app), call, "AppAuth.scheduleComposeHash (new hash):", 60_000);
    }

    function test_Gas_AnchorCheckpoint() public {
        vm.prank(node);
        kms.anchorCheckpoint(1, keccak256("r1"));
        vm.roll(block.number + 1);
        bytes memory call = abi.encodeCall(KmsAuth.anchorCheckpoint, (2, keccak256("r2")));
        _assertCallGas(node, address(kms), call, "KmsAuth.anchorCheckpoint (subsequent):", 40_000);
    }

    function test_Gas_DeployAndRegisterApp() public {
        bytes memory call =
            abi.encodeCall(KmsAuth.deployAndRegisterApp, (developer, false, true, bytes32(0), COMPOSE_HASH));
        _assertCallGas(developer, address(kms), call, "KmsAuth.deployAndRegisterApp:", 400_000);
    }
}
