// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test, Vm} from "forge-std/Test.sol";
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

    /// @dev `check(b)` (an `isAppAllowed` or `isKmsAllowed`) answers `wantAllowed` with `wantReason`.
    function _assertVerdictOf(
        function(IAppAuth.AppBootInfo memory) external view returns (bool, string memory) check,
        IAppAuth.AppBootInfo memory b,
        bool wantAllowed,
        string memory wantReason
    ) internal view {
        (bool allowed, string memory reason) = check(b);
        _assertVerdict(allowed, reason, wantAllowed, wantReason);
    }

    /// @dev An owner-managed allowlist of bytes32 values (KmsAuth's OS images, KMS MRs and KMS
    /// devices; AppAuth's devices): its functions, and the selectors of its events and errors.
    struct Allowlist {
        string name;
        address owner;
        function(bytes32) external add;
        function(bytes32) external remove;
        function(bytes32) external view returns (bool) isListed;
        bytes32 added;
        bytes32 removed;
        bytes4 alreadyListed;
        bytes4 notListed;
    }

    /// @dev A case of an allowlist's life (see `_assertAllowlist`).
    enum ListCase {
        Add,
        Remove,
        AddListed,
        RemoveUnlisted
    }

    /// @dev One case of `list`'s life by its owner, on `value`. `Add` (`value` not listed): adding it
    /// emits `added` and lists it, and adding it again reverts with `alreadyListed`. `Remove` (`value`
    /// listed): removing it emits `removed` and unlists it, and removing it again reverts with
    /// `notListed`. `AddListed`: adding a listed `value` reverts with `alreadyListed`.
    /// `RemoveUnlisted`: removing an unlisted `value` reverts with `notListed`.
    function _assertAllowlist(Allowlist memory list, bytes32 value, ListCase which) internal {
        vm.startPrank(list.owner);
        if (which == ListCase.Add) {
            _assertAllowlistStep(list, list.add, list.added, list.alreadyListed, value, true);
        } else if (which == ListCase.Remove) {
            _assertAllowlistStep(list, list.remove, list.removed, list.notListed, value, false);
        } else if (which == ListCase.AddListed) {
            vm.expectRevert(abi.encodeWithSelector(list.alreadyListed, value));
            list.add(value);
        } else {
            vm.expectRevert(abi.encodeWithSelector(list.notListed, value));
            list.remove(value);
        }
        vm.stopPrank();
    }

    /// @dev `step(value)` emits `eventSelector` and leaves `value` listed or not; doing it again is a
    /// no-op that reverts with `repeatError`.
    function _assertAllowlistStep(
        Allowlist memory list,
        function(bytes32) external step,
        bytes32 eventSelector,
        bytes4 repeatError,
        bytes32 value,
        bool listed
    ) internal {
        vm.recordLogs();
        step(value);
        _assertOneLog(list.name, step.address, _topics(eventSelector, value), "");
        assertEq(list.isListed(value), listed, string.concat(list.name, ": listed"));
        vm.expectRevert(abi.encodeWithSelector(repeatError, value));
        step(value);
    }

    /// @dev An owner-managed boolean setting (AppAuth's allow-any-device and require-TCB-up-to-date):
    /// its setter and getter, the selector of its event (`(bool)`, not indexed) and of its no-op error.
    struct Flag {
        string name;
        address owner;
        function(bool) external set;
        function() external view returns (bool) get;
        bytes32 changed;
        bytes4 unchanged;
    }

    /// @dev A case of a flag's life (see `_assertFlag`).
    enum FlagCase {
        SetAndClear,
        Unchanged
    }

    /// @dev One case of `flag` (false) by its owner. `SetAndClear`: it is set and cleared, each time
    /// with its event, and each time again is a no-op that reverts with `unchanged`. `Unchanged`:
    /// clearing it as it is reverts with `unchanged`.
    function _assertFlag(Flag memory flag, FlagCase which) internal {
        address target = flag.set.address;
        vm.startPrank(flag.owner);
        if (which == FlagCase.Unchanged) {
            vm.expectRevert(abi.encodeWithSelector(flag.unchanged, false));
            flag.set(false);
        } else {
            bool[2] memory values = [true, false];
            for (uint256 i = 0; i < values.length; ++i) {
                vm.recordLogs();
                flag.set(values[i]);
                _assertOneLog(flag.name, target, _topics(flag.changed), abi.encode(values[i]));
                assertEq(flag.get(), values[i], string.concat(flag.name, ": value"));
                vm.expectRevert(abi.encodeWithSelector(flag.unchanged, values[i]));
                flag.set(values[i]);
            }
        }
        vm.stopPrank();
    }

    /// @dev The logs since `vm.recordLogs()` are one, from `emitter`, with `topics` and `data`.
    function _assertOneLog(string memory name, address emitter, bytes32[] memory topics, bytes memory data) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, 1, string.concat(name, ": one event"));
        assertEq(logs[0].emitter, emitter, string.concat(name, ": emitter"));
        assertEq(logs[0].topics, topics, string.concat(name, ": event and indexed value"));
        assertEq(logs[0].data, data, string.concat(name, ": event data"));
    }

    function _topics(bytes32 selector) internal pure returns (bytes32[] memory topics) {
        topics = new bytes32[](1);
        topics[0] = selector;
    }

    function _topics(bytes32 selector, bytes32 indexed0) internal pure returns (bytes32[] memory topics) {
        topics = new bytes32[](2);
        topics[0] = selector;
        topics[1] = indexed0;
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
