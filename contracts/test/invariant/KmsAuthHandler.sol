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
