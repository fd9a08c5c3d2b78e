// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";

import {IAppAuth} from "../../src/interfaces/IAppAuth.sol";
import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";
import {KmsAppTestBase} from "../utils/CairnTestBase.sol";

contract KmsAuthTest is KmsAppTestBase {
    address internal owner = makeAddr("Owner");
    address internal node = makeAddr("KmsNode");
    AppAuth internal appImpl;

    bytes internal constant K256 = hex"02aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
    bytes internal constant CA = hex"3059301306072a8648ce3d020106082a8648ce3d03010703420004";

    function setUp() public {
        vm.roll(100);
        _deployKmsWithApp(owner);
        appImpl = AppAuth(kms.appAuthImplementation());
    }

    // ------------------------------------------------------------------ initialize

    function test_Initialize_SetsState() public view {
        assertEq(kms.owner(), owner, "owner");
        assertEq(kms.appAuthImplementation(), address(appImpl), "impl");
        assertTrue(kms.isTcbStatusAcceptable("UpToDate"), "UpToDate acceptable");
        assertFalse(kms.isTcbStatusAcceptable("OutOfDate"), "OutOfDate not acceptable");
        assertEq(kms.keyGeneration(), 0, "no keys");
        assertEq(kms.gatewayAppId(), address(0), "no gateway");
        assertEq(kms.kmsNodes().length, 0, "no nodes");
        assertEq(kms.APP_CALL_GAS(), 200_000, "APP_CALL_GAS");
    }

    function test_Initialize_EmitsEvents() public {
        KmsAuth impl = new KmsAuth();
        vm.expectEmit();
        emit KmsAuth.AppAuthImplementationSet(address(appImpl));
        vm.expectEmit();
        emit KmsAuth.TcbStatusAcceptabilitySet("UpToDate", true);
        _proxyKms(address(impl), owner, address(appImpl));
    }

    function test_Initialize_WithoutImplementationLeavesFactoryOff() public {
        KmsAuth k = _deployKmsAuth(owner, address(0));
        assertEq(k.appAuthImplementation(), address(0), "no impl");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNoAppAuthImplementation.selector));
        k.deployAndRegisterApp(developer, false, true, bytes32(0), COMPOSE_HASH);
    }

    function test_RevertIf_Initialize_ImplementationWithoutCode() public {
        KmsAuth impl = new KmsAuth();
        address eoa = makeAddr("NotAContract");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidAppAuthImplementation.selector, eoa));
        _proxyKms(address(impl), owner, eoa);
    }

    function test_RevertIf_InitializeTwice() public {
        vm.expectRevert(abi.encodeWithSelector(Initializable.InvalidInitialization.selector));
        kms.initialize(owner, address(appImpl));
    }

    function test_RevertIf_InitializeImplementation() public {
        KmsAuth impl = new KmsAuth();
        vm.expectRevert(abi.encodeWithSelector(Initializable.InvalidInitialization.selector));
        impl.initialize(owner, address(appImpl));
    }

    function _proxyKms(address impl, address owner_, address appImpl_) internal returns (KmsAuth) {
        bytes memory init = abi.encodeCall(KmsAuth.initialize, (owner_, appImpl_));
        return KmsAuth(address(new ERC1967Proxy(impl, init)));
    }

    // ------------------------------------------------------------------ root keys

    function test_SetKmsRootKeys_EmitsEvent() public {
        vm.expectEmit(address(kms));
        emit KmsAuth.KmsRootKeysSet(1, K256, CA);
        vm.prank(owner);
        kms.setKmsRootKeys(1, K256, CA);
        assertEq(kms.keyGeneration(), 1, "generation");
        (bytes memory k, bytes memory c) = kms.rootKeys(1);
        assertEq(k, K256, "k256");
        assertEq(c, CA, "ca");
        (k, c) = kms.rootKeys(2);
        assertEq(k.length + c.length, 0, "unknown generation is empty");
    }

    function test_SetKmsRootKeys_NewGenerationKeepsOldKeys() public {
        bytes memory k2 = K256;
        k2[0] = 0x03;
        vm.startPrank(owner);
        kms.setKmsRootKeys(1, K256, CA);
        kms.setKmsRootKeys(5, k2, CA);
        vm.stopPrank();
        assertEq(kms.keyGeneration(), 5, "generation");
        (bytes memory k,) = kms.rootKeys(1);
        assertEq(k, K256, "old keys kept");
        (k,) = kms.rootKeys(5);
        assertEq(k, k2, "new keys");
    }

    function test_RevertIf_SetKmsRootKeys_GenerationNotIncreasing() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthGenerationNotIncreasing.selector, uint32(0), uint32(0)));
        kms.setKmsRootKeys(0, K256, CA);
        kms.setKmsRootKeys(3, K256, CA);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthGenerationNotIncreasing.selector, uint32(3), uint32(3)));
        kms.setKmsRootKeys(3, K256, CA);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthGenerationNotIncreasing.selector, uint32(3), uint32(2)));
        kms.setKmsRootKeys(2, K256, CA);
        vm.stopPrank();
    }

    function test_RevertIf_SetKmsRootKeys_BadK256() public {
        bytes memory uncompressed = new bytes(65);
        uncompressed[0] = 0x04;
        bytes memory badPrefix = K256;
        badPrefix[0] = 0x04;
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidK256Pubkey.selector, uncompressed));
        kms.setKmsRootKeys(1, uncompressed, CA);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidK256Pubkey.selector, badPrefix));
        kms.setKmsRootKeys(1, badPrefix, CA);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidK256Pubkey.selector, bytes("")));
        kms.setKmsRootKeys(1, "", CA);
        vm.stopPrank();
    }

    function test_RevertIf_SetKmsRootKeys_BadCa() public {
        bytes memory tooLong = new bytes(1025);
        tooLong[0] = 0x30;
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidCaPubkey.selector, bytes("")));
        kms.setKmsRootKeys(1, K256, "");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidCaPubkey.selector, hex"3101"));
        kms.setKmsRootKeys(1, K256, hex"3101");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidCaPubkey.selector, tooLong));
        kms.setKmsRootKeys(1, K256, tooLong);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ allowlists

    function _osImages() internal view returns (Allowlist memory) {
        return Allowlist({
            name: "OS images",
            owner: owner,
            add: kms.addOsImageHash,
            remove: kms.removeOsImageHash,
            isListed: kms.allowedOsImages,
            added: KmsAuth.OsImageHashAdded.selector,
            removed: KmsAuth.OsImageHashRemoved.selector,
            alreadyListed: KmsAuth.KmsAuthOsImageAlreadyAllowed.selector,
            notListed: KmsAuth.KmsAuthOsImageNotAllowed.selector
        });
    }

    function _kmsMrs() internal view returns (Allowlist memory) {
        return Allowlist({
            name: "KMS MRs",
            owner: owner,
            add: kms.addKmsAggregatedMr,
            remove: kms.removeKmsAggregatedMr,
            isListed: kms.kmsAllowedAggregatedMrs,
            added: KmsAuth.KmsAggregatedMrAdded.selector,
            removed: KmsAuth.KmsAggregatedMrRemoved.selector,
            alreadyListed: KmsAuth.KmsAuthKmsAggregatedMrAlreadyAllowed.selector,
            notListed: KmsAuth.KmsAuthKmsAggregatedMrNotAllowed.selector
        });
    }

    function _kmsDevices() internal view returns (Allowlist memory) {
        return Allowlist({
            name: "KMS devices",
            owner: owner,
            add: kms.addKmsDevice,
            remove: kms.removeKmsDevice,
            isListed: kms.kmsAllowedDeviceIds,
            added: KmsAuth.KmsDeviceAdded.selector,
            removed: KmsAuth.KmsDeviceRemoved.selector,
            alreadyListed: KmsAuth.KmsAuthKmsDeviceAlreadyAllowed.selector,
            notListed: KmsAuth.KmsAuthKmsDeviceNotAllowed.selector
        });
    }

    function test_AddOsImageHash_EmitsEvent() public {
        _assertAllowlist(_osImages(), keccak256("os-2"), ListCase.Add);
    }

    function test_RemoveOsImageHash_EmitsEvent() public {
        _assertAllowlist(_osImages(), OS_IMAGE, ListCase.Remove);
    }

    function test_RevertIf_OsImageHash_NoOp() public {
        _assertAllowlist(_osImages(), OS_IMAGE, ListCase.AddListed);
        _assertAllowlist(_osImages(), keccak256("os-2"), ListCase.RemoveUnlisted);
    }

    function test_AddKmsAggregatedMr_EmitsEvent() public {
        _assertAllowlist(_kmsMrs(), KMS_MR, ListCase.Add);
        _assertAllowlist(_kmsMrs(), KMS_MR, ListCase.Remove);
    }

    function test_RevertIf_KmsAggregatedMr_NoOp() public {
        _assertAllowlist(_kmsMrs(), KMS_MR, ListCase.RemoveUnlisted);
        _assertAllowlist(_kmsMrs(), KMS_MR, ListCase.Add);
        _assertAllowlist(_kmsMrs(), KMS_MR, ListCase.AddListed);
    }

    function test_AddKmsDevice_EmitsEvent() public {
        _assertAllowlist(_kmsDevices(), KMS_DEVICE, ListCase.Add);
        _assertAllowlist(_kmsDevices(), KMS_DEVICE, ListCase.Remove);
    }

    function test_RevertIf_KmsDevice_NoOp() public {
        _assertAllowlist(_kmsDevices(), KMS_DEVICE, ListCase.RemoveUnlisted);
        _assertAllowlist(_kmsDevices(), KMS_DEVICE, ListCase.Add);
        _assertAllowlist(_kmsDevices(), KMS_DEVICE, ListCase.AddListed);
    }

    // ------------------------------------------------------------------ nodes and gateway

    function test_AddKmsNode_EmitsEvent() public {
        vm.expectEmit(address(kms));
        emit KmsAuth.KmsNodeAdded(node);
        vm.prank(owner);
        kms.addKmsNode(node);
        assertTrue(kms.isKmsNode(node), "node");
        address[] memory nodes = kms.kmsNodes();
        assertEq(nodes.length, 1, "one node");
        assertEq(nodes[0], node, "listed");
    }

    function test_RemoveKmsNode_EmitsEvent() public {
        vm.startPrank(owner);
        kms.addKmsNode(node);
        vm.expectEmit(address(kms));
        emit KmsAuth.KmsNodeRemoved(node);
        kms.removeKmsNode(node);
        vm.stopPrank();
        assertFalse(kms.isKmsNode(node), "removed");
        assertEq(kms.kmsNodes().length, 0, "empty");
    }

    function test_RevertIf_KmsNode_NoOpOrZero() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthZeroAddress.selector));
        kms.addKmsNode(address(0));
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNotKmsNode.selector, node));
        kms.removeKmsNode(node);
        kms.addKmsNode(node);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthKmsNodeAlreadyAdded.selector, node));
        kms.addKmsNode(node);
        vm.stopPrank();
    }

    function test_SetGatewayAppId_EmitsEvent() public {
        address gw = makeAddr("Gateway");
        vm.expectEmit(address(kms));
        emit KmsAuth.GatewayAppIdSet(gw);
        vm.prank(owner);
        kms.setGatewayAppId(gw);
        assertEq(kms.gatewayAppId(), gw, "gateway");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthGatewayAppIdUnchanged.selector, gw));
        vm.prank(owner);
        kms.setGatewayAppId(gw);
    }

    // ------------------------------------------------------------------ TCB policy

    /// @dev An owner-managed set of strings (acceptable TCB statuses, tolerated advisories): its
    /// setter and getter, the selector of its `(string, bool)` event and of its errors.
    struct StringSet {
        string name;
        function(string memory, bool) external set;
        function(string memory) external view returns (bool) isIn;
        bytes32 changed;
        bytes4 unchanged;
        bytes4 invalid;
    }

    /// @dev A case of a string set's life (see `_assertStringSet`).
    enum SetCase {
        PutInAndTakeOut,
        NoOpOrInvalid
    }

    /// @dev One case of `strings` by the owner, on `key`. `PutInAndTakeOut` (`key` not in
    /// `strings`): it is put in and taken out, each time with its event, and each time again is a
    /// no-op that reverts with `unchanged`. `NoOpOrInvalid`: setting `key` to what it is reverts
    /// with `unchanged`, and an empty or 129-byte key reverts with `invalid`.
    function _assertStringSet(StringSet memory strings, string memory key, SetCase which) internal {
        vm.startPrank(owner);
        if (which == SetCase.PutInAndTakeOut) {
            bool[2] memory values = [true, false];
            for (uint256 i = 0; i < values.length; ++i) {
                vm.recordLogs();
                strings.set(key, values[i]);
                _assertOneLog(strings.name, address(kms), _topics(strings.changed), abi.encode(key, values[i]));
                assertEq(strings.isIn(key), values[i], string.concat(strings.name, ": ", key));
                vm.expectRevert(abi.encodeWithSelector(strings.unchanged, key, values[i]));
                strings.set(key, values[i]);
            }
        } else {
            bool current = strings.isIn(key);
            vm.expectRevert(abi.encodeWithSelector(strings.unchanged, key, current));
            strings.set(key, current);
            string memory tooLong = string(new bytes(129));
            vm.expectRevert(abi.encodeWithSelector(strings.invalid, ""));
            strings.set("", true);
            vm.expectRevert(abi.encodeWithSelector(strings.invalid, tooLong));
            strings.set(tooLong, true);
        }
        vm.stopPrank();
    }

    function _acceptableTcbStatuses() internal view returns (StringSet memory) {
        return StringSet({
            name: "acceptable TCB statuses",
            set: kms.setTcbStatusAcceptable,
            isIn: kms.isTcbStatusAcceptable,
            changed: KmsAuth.TcbStatusAcceptabilitySet.selector,
            unchanged: KmsAuth.KmsAuthTcbStatusUnchanged.selector,
            invalid: KmsAuth.KmsAuthInvalidTcbStatus.selector
        });
    }

    function _toleratedAdvisories() internal view returns (StringSet memory) {
        return StringSet({
            name: "tolerated advisories",
            set: kms.setAdvisoryTolerated,
            isIn: kms.isAdvisoryTolerated,
            changed: KmsAuth.AdvisoryToleranceSet.selector,
            unchanged: KmsAuth.KmsAuthAdvisoryUnchanged.selector,
            invalid: KmsAuth.KmsAuthInvalidAdvisoryId.selector
        });
    }

    function test_SetTcbStatusAcceptable_EmitsEvent() public {
        _assertStringSet(_acceptableTcbStatuses(), "SWHardeningNeeded", SetCase.PutInAndTakeOut);
        // The initial `UpToDate` is taken out like any other.
        vm.prank(owner);
        kms.setTcbStatusAcceptable("UpToDate", false);
        assertFalse(kms.isTcbStatusAcceptable("UpToDate"), "UpToDate no longer acceptable");
    }

    function test_RevertIf_SetTcbStatusAcceptable_NoOpOrInvalid() public {
        _assertStringSet(_acceptableTcbStatuses(), "UpToDate", SetCase.NoOpOrInvalid);
    }

    function test_SetAdvisoryTolerated_EmitsEvent() public {
        _assertStringSet(_toleratedAdvisories(), "INTEL-SA-00837", SetCase.PutInAndTakeOut);
    }

    function test_RevertIf_SetAdvisoryTolerated_NoOpOrInvalid() public {
        _assertStringSet(_toleratedAdvisories(), "INTEL-SA-1", SetCase.NoOpOrInvalid);
    }

    // ------------------------------------------------------------------ registry and factory

    function test_DeployAndRegisterApp_EmitsEvents() public {
        address predicted = vm.computeCreateAddress(address(kms), vm.getNonce(address(kms)));
        vm.expectEmit(predicted);
        emit AppAuth.ComposeHashAdded(COMPOSE_HASH_2, uint64(block.timestamp));
        vm.expectEmit(address(kms));
        emit KmsAuth.AppDeployedViaFactory(predicted, developer);
        vm.expectEmit(address(kms));
        emit KmsAuth.AppRegistered(predicted);
        vm.prank(developer);
        address appId = kms.deployAndRegisterApp(developer, false, true, bytes32(0), COMPOSE_HASH_2);
        assertEq(appId, predicted, "address");
        assertTrue(kms.isAppRegistered(appId), "registered");
        AppAuth a = AppAuth(appId);
        assertEq(a.owner(), developer, "owner");
        assertTrue(a.allowAnyDevice(), "allowAnyDevice");
        assertTrue(a.allowedComposeHashes(COMPOSE_HASH_2), "hash");
    }

    function test_RevertIf_DeployAndRegisterApp_ZeroOwner() public {
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableInvalidOwner.selector, address(0)));
        kms.deployAndRegisterApp(address(0), false, true, bytes32(0), COMPOSE_HASH);
    }

    function test_RegisterApp_EmitsEvent() public {
        AppAuth a = _deployAppAuth(developer, false, true, bytes32(0), COMPOSE_HASH);
        vm.expectEmit(address(kms));
        emit KmsAuth.AppRegistered(address(a));
        vm.prank(makeAddr("Anyone"));
        kms.registerApp(address(a));
        assertTrue(kms.isAppRegistered(address(a)), "registered");
    }

    function test_RevertIf_RegisterApp_AlreadyRegistered() public {
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthAppAlreadyRegistered.selector, address(app)));
        kms.registerApp(address(app));
    }

    function test_RevertIf_RegisterApp_NotAppAuth() public {
        address eoa = makeAddr("Eoa");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNotAppAuth.selector, eoa));
        kms.registerApp(eoa);
        // A contract without ERC-165 (the KmsAuth proxy itself) is refused too.
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNotAppAuth.selector, address(kms)));
        kms.registerApp(address(kms));
    }

    function test_DeregisterApp_EmitsEvent() public {
        vm.expectEmit(address(kms));
        emit KmsAuth.AppDeregistered(address(app));
        vm.prank(owner);
        kms.deregisterApp(address(app));
        assertFalse(kms.isAppRegistered(address(app)), "deregistered");
        _assertVerdictOf(
            kms.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID), false, "App not registered"
        );
    }

    function test_RevertIf_DeregisterApp_NotRegistered() public {
        address eoa = makeAddr("Eoa");
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthAppNotRegistered.selector, eoa));
        vm.prank(owner);
        kms.deregisterApp(eoa);
    }

    function test_RevertIf_RegisterApp_DeregisteredByOwner() public {
        vm.prank(owner);
        kms.deregisterApp(address(app));
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthAppDeregistered.selector, address(app)));
        vm.prank(developer);
        kms.registerApp(address(app));
        // The owner may lift the ban.
        vm.expectEmit(address(kms));
        emit KmsAuth.AppRegistered(address(app));
        vm.prank(owner);
        kms.registerApp(address(app));
        assertTrue(kms.isAppRegistered(address(app)), "registered again");
    }

    function test_SetAppAuthImplementation_EmitsEvent() public {
        AppAuth impl2 = new AppAuth();
        vm.expectEmit(address(kms));
        emit KmsAuth.AppAuthImplementationSet(address(impl2));
        vm.prank(owner);
        kms.setAppAuthImplementation(address(impl2));
        assertEq(kms.appAuthImplementation(), address(impl2), "impl");
    }

    function test_RevertIf_SetAppAuthImplementation_InvalidOrUnchanged() public {
        address eoa = makeAddr("Eoa");
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidAppAuthImplementation.selector, eoa));
        kms.setAppAuthImplementation(eoa);
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthInvalidAppAuthImplementation.selector, address(appImpl)));
        kms.setAppAuthImplementation(address(appImpl));
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ isAppAllowed

    function test_IsAppAllowed_AllowsWhenEveryCheckPasses() public view {
        _assertVerdictOf(kms.isAppAllowed, _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID), true, "");
    }

    function test_IsAppAllowed_ChecksInOrder() public {
        IAppAuth.AppBootInfo memory b = _bootInfo(makeAddr("Unregistered"), COMPOSE_HASH_2, DEVICE_ID_2);
        b.osImageHash = keccak256("bad-os");
        b.tcbStatus = "OutOfDate";
        b.advisoryIds = new string[](1);
        b.advisoryIds[0] = "INTEL-SA-00001";
        _assertVerdictOf(kms.isAppAllowed, b, false, "App not registered");
        b.appId = address(app);
        _assertVerdictOf(kms.isAppAllowed, b, false, "OS image is not allowed");
        b.osImageHash = OS_IMAGE;
        _assertVerdictOf(kms.isAppAllowed, b, false, "TCB status not acceptable");
        b.tcbStatus = "UpToDate";
        _assertVerdictOf(kms.isAppAllowed, b, false, "Advisory not tolerated");
        vm.prank(owner);
        kms.setAdvisoryTolerated("INTEL-SA-00001", true);
        _assertVerdictOf(kms.isAppAllowed, b, false, "Compose hash not allowed");
        b.composeHash = COMPOSE_HASH;
        _assertVerdictOf(kms.isAppAllowed, b, false, "Device not allowed");
        b.deviceId = DEVICE_ID;
        _assertVerdictOf(kms.isAppAllowed, b, true, "");
    }

    function test_IsAppAllowed_EveryAdvisoryMustBeTolerated() public {
        vm.prank(owner);
        kms.setAdvisoryTolerated("INTEL-SA-A", true);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.advisoryIds = new string[](2);
        b.advisoryIds[0] = "INTEL-SA-A";
        b.advisoryIds[1] = "INTEL-SA-B";
        _assertVerdictOf(kms.isAppAllowed, b, false, "Advisory not tolerated");
        vm.prank(owner);
        kms.setAdvisoryTolerated("INTEL-SA-B", true);
        _assertVerdictOf(kms.isAppAllowed, b, true, "");
    }

    function test_IsAppAllowed_AcceptsConfiguredTcbStatus() public {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.tcbStatus = "SWHardeningNeeded";
        _assertVerdictOf(kms.isAppAllowed, b, false, "TCB status not acceptable");
        vm.prank(owner);
        kms.setTcbStatusAcceptable("SWHardeningNeeded", true);
        _assertVerdictOf(kms.isAppAllowed, b, true, "");
    }

    function test_IsAppAllowed_PassesAppReasonThrough() public {
        vm.prank(developer);
        app.setRequireTcbUpToDate(true);
        vm.prank(owner);
        kms.setTcbStatusAcceptable("SWHardeningNeeded", true);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.tcbStatus = "SWHardeningNeeded";
        _assertVerdictOf(kms.isAppAllowed, b, false, "TCB status is not UpToDate");
    }

    // ------------------------------------------------------------------ isKmsAllowed

    function test_IsKmsAllowed_ChecksInOrder() public {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(0), bytes32(0), KMS_DEVICE);
        b.osImageHash = keccak256("bad-os");
        b.tcbStatus = "OutOfDate";
        b.advisoryIds = new string[](1);
        b.advisoryIds[0] = "INTEL-SA-00001";
        _assertVerdictOf(kms.isKmsAllowed, b, false, "KMS aggregated MR not allowed");
        vm.prank(owner);
        kms.addKmsAggregatedMr(KMS_MR);
        _assertVerdictOf(kms.isKmsAllowed, b, false, "KMS device not allowed");
        vm.prank(owner);
        kms.addKmsDevice(KMS_DEVICE);
        _assertVerdictOf(kms.isKmsAllowed, b, false, "OS image is not allowed");
        b.osImageHash = OS_IMAGE;
        _assertVerdictOf(kms.isKmsAllowed, b, false, "TCB status not acceptable");
        b.tcbStatus = "UpToDate";
        _assertVerdictOf(kms.isKmsAllowed, b, false, "Advisory not tolerated");
        b.advisoryIds = new string[](0);
        _assertVerdictOf(kms.isKmsAllowed, b, true, "");
    }

    // ------------------------------------------------------------------ anchoring

    function test_AnchorCheckpoint_EmitsEvent() public {
        vm.prank(owner);
        kms.addKmsNode(node);
        bytes32 root = keccak256("root-10");
        vm.expectEmit(address(kms));
        emit KmsAuth.CheckpointAnchored(node, 10, root);
        vm.prank(node);
        kms.anchorCheckpoint(10, root);
        (uint64 size, bytes32 r, uint64 blockNumber) = kms.latestAnchor(node);
        assertEq(size, 10, "size");
        assertEq(r, root, "root");
        assertEq(blockNumber, uint64(block.number), "block");
    }

    function test_AnchorCheckpoint_SizesGrowAndSameRootRepeats() public {
        vm.prank(owner);
        kms.addKmsNode(node);
        vm.startPrank(node);
        kms.anchorCheckpoint(0, keccak256("empty"));
        kms.anchorCheckpoint(5, keccak256("r5"));
        vm.roll(block.number + 3);
        kms.anchorCheckpoint(5, keccak256("r5"));
        (,, uint64 blockNumber) = kms.latestAnchor(node);
        assertEq(blockNumber, uint64(block.number), "re-anchor refreshes the block");
        kms.anchorCheckpoint(6, keccak256("r6"));
        vm.stopPrank();
        (uint64 size,,) = kms.latestAnchor(node);
        assertEq(size, 6, "grew");
    }

    function test_RevertIf_AnchorCheckpoint_NotKmsNode() public {
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthNotKmsNode.selector, developer));
        vm.prank(developer);
        kms.anchorCheckpoint(1, keccak256("r1"));
    }

    function test_RevertIf_AnchorCheckpoint_Shrinks() public {
        vm.prank(owner);
        kms.addKmsNode(node);
        vm.startPrank(node);
        kms.anchorCheckpoint(10, keccak256("r10"));
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthCheckpointShrinks.selector, uint64(10), uint64(9)));
        kms.anchorCheckpoint(9, keccak256("r9"));
        vm.stopPrank();
    }

    function test_RevertIf_AnchorCheckpoint_Conflict() public {
        vm.prank(owner);
        kms.addKmsNode(node);
        vm.startPrank(node);
        kms.anchorCheckpoint(10, keccak256("r10"));
        vm.expectRevert(
            abi.encodeWithSelector(
                KmsAuth.KmsAuthCheckpointConflict.selector, uint64(10), keccak256("r10"), keccak256("other")
            )
        );
        kms.anchorCheckpoint(10, keccak256("other"));
        vm.stopPrank();
    }

    function test_RevertIf_AnchorCheckpoint_ReaddedNodeShrinks() public {
        vm.prank(owner);
        kms.addKmsNode(node);
        vm.prank(node);
        kms.anchorCheckpoint(10, keccak256("r10"));
        vm.startPrank(owner);
        kms.removeKmsNode(node);
        kms.addKmsNode(node);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthCheckpointShrinks.selector, uint64(10), uint64(1)));
        vm.prank(node);
        kms.anchorCheckpoint(1, keccak256("r1"));
    }

    // ------------------------------------------------------------------ access control

    function testFuzz_RevertIf_CallerNotOwner(address caller) public {
        vm.assume(caller != owner);
        bytes[] memory calls = new bytes[](19);
        calls[0] = abi.encodeCall(KmsAuth.setKmsRootKeys, (1, K256, CA));
        calls[1] = abi.encodeCall(KmsAuth.addOsImageHash, (keccak256("x")));
        calls[2] = abi.encodeCall(KmsAuth.removeOsImageHash, (OS_IMAGE));
        calls[3] = abi.encodeCall(KmsAuth.addKmsAggregatedMr, (KMS_MR));
        calls[4] = abi.encodeCall(KmsAuth.removeKmsAggregatedMr, (KMS_MR));
        calls[5] = abi.encodeCall(KmsAuth.addKmsDevice, (KMS_DEVICE));
        calls[6] = abi.encodeCall(KmsAuth.removeKmsDevice, (KMS_DEVICE));
        calls[7] = abi.encodeCall(KmsAuth.addKmsNode, (node));
        calls[8] = abi.encodeCall(KmsAuth.removeKmsNode, (node));
        calls[9] = abi.encodeCall(KmsAuth.setGatewayAppId, (node));
        calls[10] = abi.encodeCall(KmsAuth.setTcbStatusAcceptable, ("OutOfDate", true));
        calls[11] = abi.encodeCall(KmsAuth.setAdvisoryTolerated, ("INTEL-SA-1", true));
        calls[12] = abi.encodeCall(KmsAuth.deregisterApp, (address(app)));
        calls[13] = abi.encodeCall(KmsAuth.setAppAuthImplementation, (address(this)));
        calls[14] = abi.encodeCall(OwnableUpgradeable.transferOwnership, (caller));
        calls[15] = abi.encodeCall(OwnableUpgradeable.renounceOwnership, ());
        calls[16] = abi.encodeWithSignature("upgradeToAndCall(address,bytes)", address(appImpl), "");
        calls[17] = abi.encodeCall(KmsAuth.setTcbStatusAcceptable, ("UpToDate", false));
        calls[18] = abi.encodeCall(KmsAuth.setAdvisoryTolerated, ("INTEL-SA-1", false));
        for (uint256 i = 0; i < calls.length; ++i) {
            vm.prank(caller);
            vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, caller));
            (bool ok,) = address(kms).call(calls[i]);
            assertTrue(ok, "expectRevert consumed the revert");
        }
        assertEq(kms.owner(), owner, "owner unchanged");
        assertTrue(kms.isAppRegistered(address(app)), "app still registered");
    }

    // ------------------------------------------------------------------ fuzzing the allowlists

    function testFuzz_OsImageAllowlist(bytes32 image) public {
        vm.assume(image != OS_IMAGE);
        IAppAuth.AppBootInfo memory b = _bootInfo(address(app), COMPOSE_HASH, DEVICE_ID);
        b.osImageHash = image;
        _assertVerdictOf(kms.isAppAllowed, b, false, "OS image is not allowed");
        vm.prank(owner);
        kms.addOsImageHash(image);
        _assertVerdictOf(kms.isAppAllowed, b, true, "");
        vm.prank(owner);
        kms.removeOsImageHash(image);
        _assertVerdictOf(kms.isAppAllowed, b, false, "OS image is not allowed");
    }

    function testFuzz_UnregisteredAppNeverAllowed(address appId, bytes32 hash, bytes32 device) public view {
        vm.assume(appId != address(app));
        _assertVerdictOf(kms.isAppAllowed, _bootInfo(appId, hash, device), false, "App not registered");
    }

    function testFuzz_KmsAllowlists(bytes32 mr, bytes32 device) public {
        IAppAuth.AppBootInfo memory b = _bootInfo(address(0), bytes32(0), device);
        b.mrAggregated = mr;
        vm.startPrank(owner);
        kms.addKmsAggregatedMr(mr);
        kms.addKmsDevice(device);
        vm.stopPrank();
        _assertVerdictOf(kms.isKmsAllowed, b, true, "");
        vm.prank(owner);
        kms.removeKmsDevice(device);
        _assertVerdictOf(kms.isKmsAllowed, b, false, "KMS device not allowed");
    }

    function testFuzz_AnchorSizesOnlyGrow(uint64 first, uint64 second, bytes32 r1, bytes32 r2) public {
        vm.prank(owner);
        kms.addKmsNode(node);
        vm.prank(node);
        kms.anchorCheckpoint(first, r1);
        vm.prank(node);
        if (second < first) {
            vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthCheckpointShrinks.selector, first, second));
        } else if (second == first && r1 != r2) {
            vm.expectRevert(abi.encodeWithSelector(KmsAuth.KmsAuthCheckpointConflict.selector, first, r1, r2));
        }
        kms.anchorCheckpoint(second, r2);
        (uint64 size,,) = kms.latestAnchor(node);
        assertEq(size, second < first ? first : second, "anchored size");
    }
}

