// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1967} from "@openzeppelin/contracts/interfaces/IERC1967.sol";
import {ERC1967Utils} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Utils.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";

import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {CairnTestBase} from "../utils/CairnTestBase.sol";
import {AppAuthV2} from "../mocks/AppAuthV2.sol";
import {KmsAuthV2} from "../mocks/KmsAuthV2.sol";

contract UpgradeTest is CairnTestBase {
    address internal owner = makeAddr("Owner");
    AppAuth internal app;
    KmsAuth internal kms;

    function setUp() public {
        app = _deployAppAuth(owner, false, false, DEVICE_ID, COMPOSE_HASH);
        kms = _deployKmsAuth(owner, address(new AppAuth()));
        vm.prank(owner);
        kms.addOsImageHash(OS_IMAGE);
    }

    /// @dev `caller` (not the owner) cannot upgrade `proxy` to `impl`.
    function _assertUpgradeRefused(address proxy, address impl, address caller) internal {
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, caller));
        vm.prank(caller);
        UUPSUpgradeable(proxy).upgradeToAndCall(impl, "");
    }

    function _implementation(address proxy) internal view returns (address) {
        return address(uint160(uint256(vm.load(proxy, ERC1967Utils.IMPLEMENTATION_SLOT))));
    }

    function test_UpgradeAppAuth_ByOwnerKeepsState() public {
        AppAuthV2 v2 = new AppAuthV2();
        vm.expectEmit(address(app));
        emit IERC1967.Upgraded(address(v2));
        vm.prank(owner);
        app.upgradeToAndCall(address(v2), "");
        assertEq(_implementation(address(app)), address(v2), "implementation");
        assertEq(AppAuthV2(address(app)).version(), 2, "v2 code");
        assertEq(app.owner(), owner, "owner kept");
        assertTrue(app.allowedComposeHashes(COMPOSE_HASH), "hash kept");
        assertTrue(app.allowedDeviceIds(DEVICE_ID), "device kept");
    }

    function testFuzz_RevertIf_UpgradeAppAuth_CallerNotOwner(address caller) public {
        vm.assume(caller != owner);
        _assertUpgradeRefused(address(app), address(new AppAuthV2()), caller);
    }

    function test_RevertIf_UpgradeAppAuth_AfterDisableUpgrades() public {
        AppAuthV2 v2 = new AppAuthV2();
        address before = _implementation(address(app));
        vm.startPrank(owner);
        app.disableUpgrades();
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthUpgradesDisabled.selector));
        app.upgradeToAndCall(address(v2), "");
        vm.stopPrank();
        assertEq(_implementation(address(app)), before, "implementation unchanged");
    }

    function test_RevertIf_UpgradeAppAuth_InitializedWithUpgradesDisabled() public {
        AppAuth locked = _deployAppAuth(owner, true, true, bytes32(0), COMPOSE_HASH);
        AppAuthV2 v2 = new AppAuthV2();
        vm.expectRevert(abi.encodeWithSelector(AppAuth.AppAuthUpgradesDisabled.selector));
        vm.prank(owner);
        locked.upgradeToAndCall(address(v2), "");
    }

    function test_RevertIf_UpgradeAppAuth_ToNonUups() public {
        address notUups = address(new NotUups());
        vm.expectRevert(abi.encodeWithSelector(ERC1967Utils.ERC1967InvalidImplementation.selector, notUups));
        vm.prank(owner);
        app.upgradeToAndCall(notUups, "");
    }

    function test_RevertIf_UpgradeCalledOnImplementation() public {
        AppAuth impl = new AppAuth();
        AppAuthV2 v2 = new AppAuthV2();
        vm.expectRevert(abi.encodeWithSelector(UUPSUpgradeable.UUPSUnauthorizedCallContext.selector));
        impl.upgradeToAndCall(address(v2), "");
    }

    function test_FactoryAppIsUpgradeableByItsOwner() public {
        address dev = makeAddr("Developer");
        vm.prank(dev);
        AppAuth a = AppAuth(kms.deployAndRegisterApp(dev, false, true, bytes32(0), COMPOSE_HASH));
        AppAuthV2 v2 = new AppAuthV2();
        vm.prank(dev);
        a.upgradeToAndCall(address(v2), "");
        assertEq(AppAuthV2(address(a)).version(), 2, "v2");
        (bool ok, string memory reason) = kms.isAppAllowed(_bootInfo(address(a), COMPOSE_HASH, DEVICE_ID));
        _assertVerdict(ok, reason, true, "");
    }

    function test_UpgradeKmsAuth_ByOwnerKeepsState() public {
        KmsAuthV2 v2 = new KmsAuthV2();
        vm.prank(owner);
        kms.upgradeToAndCall(address(v2), "");
        assertEq(KmsAuthV2(address(kms)).version(), 2, "v2 code");
        assertTrue(kms.allowedOsImages(OS_IMAGE), "state kept");
        assertTrue(kms.isTcbStatusAcceptable("UpToDate"), "state kept");
    }

    function testFuzz_RevertIf_UpgradeKmsAuth_CallerNotOwner(address caller) public {
        vm.assume(caller != owner);
        _assertUpgradeRefused(address(kms), address(new KmsAuthV2()), caller);
    }
}

/// @dev Has code but no `proxiableUUID`, so a UUPS upgrade to it must fail.
contract NotUups {
    function hello() external pure returns (uint256) {
        return 1;
    }
}
