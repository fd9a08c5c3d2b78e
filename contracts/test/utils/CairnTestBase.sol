// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "forge-std/Test.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";

/// @dev Shared fixtures: deploy helpers and boot-info builders.
abstract contract CairnTestBase is Test {
    bytes32 internal constant COMPOSE_HASH = keccak256("compose-v1");
    bytes32 internal constant COMPOSE_HASH_2 = keccak256("compose-v2");
    bytes32 internal constant DEVICE_ID = keccak256("device-1");
    bytes32 internal constant DEVICE_ID_2 = keccak256("device-2");
    bytes32 internal constant OS_IMAGE = keccak256("os-image-1");
    bytes32 internal constant KMS_MR = keccak256("kms-mr-aggregated");
    bytes32 internal constant KMS_DEVICE = keccak256("kms-device");

    function _deployAppAuth(address owner_, bool upgradesDisabled, bool anyDevice, bytes32 device, bytes32 hash)
        internal
        returns (AppAuth)
    {
        AppAuth impl = new AppAuth();
        return _proxyAppAuth(address(impl), owner_, upgradesDisabled, anyDevice, device, hash);
    }

    function _proxyAppAuth(
        address impl,
        address owner_,
        bool upgradesDisabled,
        bool anyDevice,
        bytes32 device,
        bytes32 hash
    ) internal returns (AppAuth) {
        bytes memory init = abi.encodeCall(AppAuth.initialize, (owner_, upgradesDisabled, anyDevice, device, hash));
        return AppAuth(address(new ERC1967Proxy(impl, init)));
    }

    function _deployKmsAuth(address owner_, address appImpl) internal returns (KmsAuth) {
        KmsAuth impl = new KmsAuth();
        bytes memory init = abi.encodeCall(KmsAuth.initialize, (owner_, appImpl));
        return KmsAuth(address(new ERC1967Proxy(address(impl), init)));
    }

    function _bootInfo(address appId, bytes32 composeHash, bytes32 deviceId)
        internal
        pure
        returns (IAppAuth.AppBootInfo memory b)
    {
        b.appId = appId;
        b.composeHash = composeHash;
        b.instanceId = address(0x1234);
        b.deviceId = deviceId;
        b.mrAggregated = KMS_MR;
        b.mrSystem = keccak256("mr-system");
        b.osImageHash = OS_IMAGE;
        b.tcbStatus = "UpToDate";
        b.advisoryIds = new string[](0);
    }

    function _assertVerdict(bool allowed, string memory reason, bool wantAllowed, string memory wantReason)
        internal
        pure
    {
        assertEq(allowed, wantAllowed, "isAllowed");
        assertEq(reason, wantReason, "reason");
    }
}

/// @dev A KmsAuth with one factory-deployed app: the fixture of the integration tests.
abstract contract KmsAppTestBase is CairnTestBase {
    address internal developer = makeAddr("Developer");
    KmsAuth internal kms;
    AppAuth internal app;

    /// @dev At a fixed time, `kms` owned by `owner_` that allows `OS_IMAGE`, and `app` of
    /// `developer` deployed through its factory (device `DEVICE_ID`, compose `COMPOSE_HASH`).
    function _deployKmsWithApp(address owner_) internal {
        vm.warp(1_700_000_000);
        kms = _deployKmsAuth(owner_, address(new AppAuth()));
        vm.prank(owner_);
        kms.addOsImageHash(OS_IMAGE);
        vm.prank(developer);
        app = AppAuth(kms.deployAndRegisterApp(developer, false, false, DEVICE_ID, COMPOSE_HASH));
    }
}
