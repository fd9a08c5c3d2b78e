// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";

import {AppAuth} from "../../src/AppAuth.sol";
import {KmsAuth} from "../../src/KmsAuth.sol";

/// @dev Drives a KmsAuth and a few AppAuths (all owned by this handler) through random, bounded
/// sequences of owner and node actions. Every action pre-checks its preconditions, so nothing
/// reverts (the invariant profile runs with fail_on_revert) and ghost state stays exact.
contract KmsAuthHandler is CommonBase, StdCheats, StdUtils {
    uint256 internal constant N_APPS = 4;
    uint256 internal constant N_HASHES = 4;
    uint256 internal constant N_NODES = 3;
    bytes32 public constant OS_IMAGE = keccak256("os-image-1");
    bytes internal constant K256 = hex"02aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";
    bytes internal constant CA = hex"3059301306072a8648ce3d020106082a8648ce3d03010703420004";

    KmsAuth public kms;
    AppAuth[N_APPS] public apps;
    bytes32[N_HASHES] public hashes;
    address[N_NODES] public nodes;

    /// Ghost: the hash was removed from the app and not listed again since.
    mapping(address app => mapping(bytes32 hash => bool)) public ghostRemoved;
    /// Ghost: the largest size each node anchored successfully.
    mapping(address node => uint64) public ghostMaxAnchored;
    /// Ghost: a shrinking or conflicting anchor was accepted (must stay false).
    bool public ghostBadAnchorAccepted;
    /// Ghost: a generation that was the previous one and whose window was seen ended (or that
    /// was dropped by a later rotation): it must never be served again.
    mapping(uint32 generation => bool) public ghostRetired;
    /// Ghost: an ended transition window was moved (must stay false).
    bool public ghostReopened;
    /// Ghost: the highest generation retired so far (the invariant checks 1..this).
    uint32 public ghostMaxRetired;
    /// Ghost: how many calls each action made (for the run summary).
    mapping(bytes32 action => uint256) public calls;

    constructor() {
        AppAuth impl = new AppAuth();
        KmsAuth kmsImpl = new KmsAuth();
        kms = KmsAuth(
            address(
                new ERC1967Proxy(address(kmsImpl), abi.encodeCall(KmsAuth.initialize, (address(this), address(impl))))
            )
        );
        kms.addOsImageHash(OS_IMAGE);
        kms.setKmsRootKeys(1, K256, CA);
        for (uint256 i = 0; i < N_HASHES; ++i) {
            hashes[i] = keccak256(abi.encode("compose", i));
        }
        // Apps 0 and 1 come from the factory (registered); 2 and 3 are deployed directly (not).
        for (uint256 i = 0; i < N_APPS; ++i) {
            if (i < 2) {
                apps[i] = AppAuth(kms.deployAndRegisterApp(address(this), false, true, bytes32(0), hashes[0]));
            } else {
                bytes memory init =
                    abi.encodeCall(AppAuth.initialize, (address(this), false, true, bytes32(0), hashes[0]));
                apps[i] = AppAuth(address(new ERC1967Proxy(address(impl), init)));
            }
        }
        for (uint256 i = 0; i < N_NODES; ++i) {
            nodes[i] = makeAddr(string(abi.encodePacked("node", vm.toString(i))));
        }
    }

    // ------------------------------------------------------------------ registry

    function registerApp(uint256 appSeed) external {
        address a = address(apps[bound(appSeed, 0, N_APPS - 1)]);
        if (kms.isAppRegistered(a)) return;
        calls["registerApp"]++;
        kms.registerApp(a);
    }

    function deregisterApp(uint256 appSeed) external {
        address a = address(apps[bound(appSeed, 0, N_APPS - 1)]);
        if (!kms.isAppRegistered(a)) return;
        calls["deregisterApp"]++;
        kms.deregisterApp(a);
    }

    // ------------------------------------------------------------------ compose hashes

    function addComposeHash(uint256 appSeed, uint256 hashSeed) external {
        AppAuth a = apps[bound(appSeed, 0, N_APPS - 1)];
        bytes32 h = hashes[bound(hashSeed, 0, N_HASHES - 1)];
        if (a.allowedComposeHashes(h)) return;
        calls["addComposeHash"]++;
        a.addComposeHash(h);
        ghostRemoved[address(a)][h] = false;
    }

    function scheduleComposeHash(uint256 appSeed, uint256 hashSeed, uint256 delay) external {
        AppAuth a = apps[bound(appSeed, 0, N_APPS - 1)];
        bytes32 h = hashes[bound(hashSeed, 0, N_HASHES - 1)];
        uint64 activation = uint64(block.timestamp + bound(delay, 1, 10 days));
        (bool listed, uint64 current) = a.composeHashActivation(h);
        if (listed && current == activation) return;
        calls["scheduleComposeHash"]++;
        a.scheduleComposeHash(h, activation);
        ghostRemoved[address(a)][h] = false;
    }

    function removeComposeHash(uint256 appSeed, uint256 hashSeed) external {
        AppAuth a = apps[bound(appSeed, 0, N_APPS - 1)];
        bytes32 h = hashes[bound(hashSeed, 0, N_HASHES - 1)];
        (bool listed,) = a.composeHashActivation(h);
        if (!listed) return;
        calls["removeComposeHash"]++;
        a.removeComposeHash(h);
        ghostRemoved[address(a)][h] = true;
    }

    function warp(uint256 secondsSeed) external {
        calls["warp"]++;
        vm.warp(block.timestamp + bound(secondsSeed, 1, 5 days));
        vm.roll(block.number + 1);
    }

    // ------------------------------------------------------------------ nodes and anchoring

    function addKmsNode(uint256 nodeSeed) external {
        address n = nodes[bound(nodeSeed, 0, N_NODES - 1)];
        if (kms.isKmsNode(n)) return;
        calls["addKmsNode"]++;
        kms.addKmsNode(n);
    }

    function removeKmsNode(uint256 nodeSeed) external {
        address n = nodes[bound(nodeSeed, 0, N_NODES - 1)];
        if (!kms.isKmsNode(n)) return;
        calls["removeKmsNode"]++;
        kms.removeKmsNode(n);
    }

    function anchorCheckpoint(uint256 nodeSeed, uint256 sizeSeed, bytes32 root) external {
        address n = nodes[bound(nodeSeed, 0, N_NODES - 1)];
        if (!kms.isKmsNode(n)) return;
        (uint64 anchored, bytes32 anchoredRoot, uint64 anchoredAt) = kms.latestAnchor(n);
        uint64 size = uint64(bound(sizeSeed, 0, 1_000_000));
        bool shrinks = anchoredAt != 0 && size < anchored;
        bool conflicts = anchoredAt != 0 && size == anchored && root != anchoredRoot;
        // forge-lint: disable-next-line(unsafe-typecast) -- short literals fit in 32 bytes
        calls[shrinks || conflicts ? bytes32("badAnchor") : bytes32("anchorCheckpoint")]++;
        vm.prank(n);
        try kms.anchorCheckpoint(size, root) {
            if (shrinks || conflicts) ghostBadAnchorAccepted = true;
            if (size > ghostMaxAnchored[n]) ghostMaxAnchored[n] = size;
        } catch {
            if (!shrinks && !conflicts) ghostBadAnchorAccepted = true; // a good anchor was refused
        }
    }

    // ------------------------------------------------------------------ key generations

    /// Marks the previous generation retired once its window is over (called before each
    /// key-generation action and by the invariant through {observe}).
    function _observe() internal {
        (uint32 previous,, bool active) = kms.transitionWindow();
        if (previous != 0 && !active) _retire(previous);
    }

    function _retire(uint32 generation) internal {
        ghostRetired[generation] = true;
        if (generation > ghostMaxRetired) ghostMaxRetired = generation;
    }

    function rotateKmsRootKeys(uint256 windowSeed) external {
        _observe();
        (uint32 previous,, bool active) = kms.transitionWindow();
        uint32 current = kms.keyGeneration();
        uint64 validUntil = uint64(block.timestamp + bound(windowSeed, 1, 20 days));
        calls["rotateKmsRootKeys"]++;
        kms.rotateKmsRootKeys(current + 1, K256, CA, validUntil);
        // A window still open for an older generation ends with this rotation.
        if (previous != 0 && active) _retire(previous);
    }

    function setKmsRootKeys() external {
        _observe();
        (uint32 previous,,) = kms.transitionWindow();
        uint32 current = kms.keyGeneration();
        calls["setKmsRootKeys"]++;
        kms.setKmsRootKeys(current + 1, K256, CA);
        if (previous != 0) _retire(previous);
        _retire(current); // replaced without a window
    }

    function setTransitionWindowEnd(uint256 endSeed) external {
        _observe();
        (uint32 previous, uint64 validUntil, bool active) = kms.transitionWindow();
        // Anywhere from "already over" to 20 days ahead.
        uint64 end = uint64(bound(endSeed, block.timestamp - 1, block.timestamp + 20 days));
        if (!active) {
            // An ended (or never opened) window cannot be moved, let alone reopened.
            // forge-lint: disable-next-line(unsafe-typecast) -- short literals fit in 32 bytes
            calls[bytes32("reopenWindow")]++;
            try kms.setTransitionWindowEnd(end) {
                ghostReopened = true;
            } catch {}
            return;
        }
        if (end == validUntil) return;
        calls["setTransitionWindowEnd"]++;
        kms.setTransitionWindowEnd(end);
        if (end <= block.timestamp) _retire(previous);
    }

    // ------------------------------------------------------------------ views for the test

    function appAt(uint256 i) external view returns (AppAuth) {
        return apps[i];
    }

    function hashAt(uint256 i) external view returns (bytes32) {
        return hashes[i];
    }

    function nodeAt(uint256 i) external view returns (address) {
        return nodes[i];
    }
}
