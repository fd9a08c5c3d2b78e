// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {ERC165Checker} from "@openzeppelin/contracts/utils/introspection/ERC165Checker.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";

import {IAppAuth} from "./interfaces/IAppAuth.sol";
import {AppAuth} from "./AppAuth.sol";

/// @title KmsAuth
/// @notice The policy of one KMS cluster: which OS images, TCB statuses and advisories are
/// acceptable, which apps are registered (each with its own {IAppAuth} policy contract), which
/// machines may run KMS nodes, the cluster's root public keys per key generation (with a
/// transition window during which the generation before the current one is still served), and
/// the anchors of every KMS node's key-release transparency log.
/// @dev UUPS behind an `ERC1967Proxy`; the owner is governance. {isAppAllowed} never reverts
/// because of an app contract: the call is gas-capped, its returndata size-bounded and its
/// ABI layout validated before decoding.
contract KmsAuth is Initializable, Ownable2StepUpgradeable, UUPSUpgradeable {
    using EnumerableSet for EnumerableSet.AddressSet;

    /// @notice Gas given to an app contract's `isAppAllowed`.
    uint256 public constant APP_CALL_GAS = 200_000;
    /// @notice Largest app-contract returndata that is decoded; anything longer is a failure.
    uint256 public constant MAX_APP_RETURN_BYTES = 4096;
    /// @notice Largest accepted root CA public key (DER SubjectPublicKeyInfo), in bytes.
    uint256 public constant MAX_CA_PUBKEY_BYTES = 1024;
    /// @notice Largest accepted TCB status / advisory id string, in bytes.
    uint256 public constant MAX_POLICY_STRING_BYTES = 128;
    /// @notice Longest transition window a rotation may give the previous key generation.
    uint64 public constant MAX_TRANSITION_WINDOW = 365 days;

    /// @dev The root public keys of one key generation.
    struct RootKeys {
        bytes k256Pubkey;
        bytes caPubkey;
    }

    /// @dev The latest checkpoint a KMS node anchored.
    struct Anchor {
        uint64 treeSize;
        uint64 blockNumber;
        bytes32 rootHash;
    }

    /// @custom:storage-location erc7201:cairn.storage.KmsAuth
    struct KmsAuthStorage {
        address appAuthImplementation;
        address gatewayAppId;
        uint32 keyGeneration;
        mapping(uint32 generation => RootKeys) rootKeys;
        mapping(bytes32 osImageHash => bool) osImages;
        mapping(bytes32 mrAggregated => bool) kmsMrs;
        mapping(bytes32 deviceId => bool) kmsDevices;
        EnumerableSet.AddressSet kmsNodes;
        mapping(bytes32 statusHash => bool) acceptableTcbStatuses;
        mapping(bytes32 advisoryHash => bool) toleratedAdvisories;
        mapping(address appId => bool) registeredApps;
        mapping(address appId => bool) deregisteredApps;
        mapping(address node => Anchor) anchors;
        // Appended (upgrade-safe): the key generation before the current one and the end of
        // its transition window (block timestamp, exclusive; 0 = no window).
        uint32 previousGeneration;
        uint64 previousGenerationValidUntil;
    }

    // keccak256(abi.encode(uint256(keccak256("cairn.storage.KmsAuth")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant KMS_AUTH_STORAGE_LOCATION =
        0x29ab2cf7a22092bde2cf56ec1199d313710b30d60a691a1b9a1123b118ca6f00;

    string private constant REASON_APP_CALL_FAILED = "App contract call failed";

    /// @dev `given` is not greater than the current key generation `current`.
    error KmsAuthGenerationNotIncreasing(uint32 current, uint32 given);
    /// @dev The k256 root key is not a 33-byte compressed SEC1 point (prefix 0x02/0x03).
    error KmsAuthInvalidK256Pubkey(bytes k256Pubkey);
    /// @dev The CA root key is not a plausible DER SubjectPublicKeyInfo (a SEQUENCE of bounded size).
    error KmsAuthInvalidCaPubkey(bytes caPubkey);
    /// @dev A rotation needs a current key generation to rotate from (use {setKmsRootKeys} first).
    error KmsAuthNoGenerationToRotate();
    /// @dev A transition window must end after `earliest` (now) and at the latest at `latest`
    /// (now + {MAX_TRANSITION_WINDOW}); `validUntil` does not.
    error KmsAuthInvalidTransitionWindow(uint64 validUntil, uint64 earliest, uint64 latest);
    /// @dev No transition window is open (none was set, or it already ended): it cannot be moved.
    error KmsAuthNoTransitionWindow();
    /// @dev The transition window already ends at `validUntil`.
    error KmsAuthTransitionWindowUnchanged(uint64 validUntil);
    /// @dev `osImageHash` is already allowed.
    error KmsAuthOsImageAlreadyAllowed(bytes32 osImageHash);
    /// @dev `osImageHash` is not allowed.
    error KmsAuthOsImageNotAllowed(bytes32 osImageHash);
    /// @dev `mrAggregated` is already allowed for KMS nodes.
    error KmsAuthKmsAggregatedMrAlreadyAllowed(bytes32 mrAggregated);
    /// @dev `mrAggregated` is not allowed for KMS nodes.
    error KmsAuthKmsAggregatedMrNotAllowed(bytes32 mrAggregated);
    /// @dev `deviceId` is already allowed for KMS nodes.
    error KmsAuthKmsDeviceAlreadyAllowed(bytes32 deviceId);
    /// @dev `deviceId` is not allowed for KMS nodes.
    error KmsAuthKmsDeviceNotAllowed(bytes32 deviceId);
    /// @dev `node` is already a KMS node.
    error KmsAuthKmsNodeAlreadyAdded(address node);
    /// @dev `node` is not a KMS node (also the anchoring error for a non-node sender).
    error KmsAuthNotKmsNode(address node);
    /// @dev The zero address is not a valid KMS node.
    error KmsAuthZeroAddress();
    /// @dev The gateway app id is already `gatewayAppId`.
    error KmsAuthGatewayAppIdUnchanged(address gatewayAppId);
    /// @dev The TCB status string is empty or longer than {MAX_POLICY_STRING_BYTES}.
    error KmsAuthInvalidTcbStatus(string status);
    /// @dev The TCB status `status` already has acceptability `acceptable`.
    error KmsAuthTcbStatusUnchanged(string status, bool acceptable);
    /// @dev The advisory id is empty or longer than {MAX_POLICY_STRING_BYTES}.
    error KmsAuthInvalidAdvisoryId(string advisoryId);
    /// @dev The advisory `advisoryId` already has tolerance `tolerated`.
    error KmsAuthAdvisoryUnchanged(string advisoryId, bool tolerated);
    /// @dev `appId` is not a contract answering ERC-165 for IAppAuth (`0x1e079198`).
    error KmsAuthNotAppAuth(address appId);
    /// @dev `appId` is already registered.
    error KmsAuthAppAlreadyRegistered(address appId);
    /// @dev `appId` is not registered.
    error KmsAuthAppNotRegistered(address appId);
    /// @dev `appId` was deregistered by the owner; only the owner may register it again.
    error KmsAuthAppDeregistered(address appId);
    /// @dev The factory has no AppAuth implementation set.
    error KmsAuthNoAppAuthImplementation();
    /// @dev `implementation` is not a contract (or is the current implementation).
    error KmsAuthInvalidAppAuthImplementation(address implementation);
    /// @dev The caller gave too little gas to call the app contract with {APP_CALL_GAS}.
    error KmsAuthInsufficientGas(uint256 gasLeft, uint256 needed);
    /// @dev An anchored checkpoint would shrink the node's log from `anchored` to `given`.
    error KmsAuthCheckpointShrinks(uint64 anchored, uint64 given);
    /// @dev The node anchored `anchoredRoot` for `treeSize` before and now gives `givenRoot`.
    error KmsAuthCheckpointConflict(uint64 treeSize, bytes32 anchoredRoot, bytes32 givenRoot);

    /// @notice The root keys of key generation `generation` were set.
    event KmsRootKeysSet(uint32 indexed generation, bytes k256Pubkey, bytes caPubkey);
    /// @notice Key generation `previousGeneration` is served until `validUntil` (block timestamp,
    /// exclusive) beside the current one; `validUntil` 0 means it is refused from now on.
    event TransitionWindowSet(uint32 indexed previousGeneration, uint64 validUntil);
    /// @notice `osImageHash` was allowed.
    event OsImageHashAdded(bytes32 indexed osImageHash);
    /// @notice `osImageHash` was disallowed.
    event OsImageHashRemoved(bytes32 indexed osImageHash);
    /// @notice `mrAggregated` was allowed for KMS nodes.
    event KmsAggregatedMrAdded(bytes32 indexed mrAggregated);
    /// @notice `mrAggregated` was disallowed for KMS nodes.
    event KmsAggregatedMrRemoved(bytes32 indexed mrAggregated);
    /// @notice `deviceId` was allowed for KMS nodes.
    event KmsDeviceAdded(bytes32 indexed deviceId);
    /// @notice `deviceId` was disallowed for KMS nodes.
    event KmsDeviceRemoved(bytes32 indexed deviceId);
    /// @notice `node` became a KMS node.
    event KmsNodeAdded(address indexed node);
    /// @notice `node` is no longer a KMS node (its anchors stay).
    event KmsNodeRemoved(address indexed node);
    /// @notice The gateway app id was set to `gatewayAppId`.
    event GatewayAppIdSet(address indexed gatewayAppId);
    /// @notice TCB status `status` was made acceptable (`acceptable`) or not.
    event TcbStatusAcceptabilitySet(string status, bool acceptable);
    /// @notice Advisory `advisoryId` was made tolerated (`tolerated`) or not.
    event AdvisoryToleranceSet(string advisoryId, bool tolerated);
    /// @notice `appId` was registered.
    event AppRegistered(address indexed appId);
    /// @notice `appId` was deregistered.
    event AppDeregistered(address indexed appId);
    /// @notice The factory deployed the AppAuth proxy `appId` for `deployer`.
    event AppDeployedViaFactory(address indexed appId, address indexed deployer);
    /// @notice The factory's AppAuth implementation was set to `implementation`.
    event AppAuthImplementationSet(address indexed implementation);
    /// @notice KMS node `node` anchored its log at (`treeSize`, `rootHash`).
    event CheckpointAnchored(address indexed node, uint64 treeSize, bytes32 rootHash);

    /// @custom:oz-upgrades-unsafe-allow constructor
    constructor() {
        _disableInitializers();
    }

    /// @notice Initializes the proxy. `UpToDate` is an acceptable TCB status from the start.
    /// @param initialOwner The owner (governance); must not be zero.
    /// @param appAuthImplementation_ The AppAuth implementation for {deployAndRegisterApp}, or
    /// zero to leave the factory off until {setAppAuthImplementation}.
    function initialize(address initialOwner, address appAuthImplementation_) external initializer {
        __Ownable_init(initialOwner);
        __Ownable2Step_init();
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (appAuthImplementation_ != address(0)) {
            if (appAuthImplementation_.code.length == 0) {
                revert KmsAuthInvalidAppAuthImplementation(appAuthImplementation_);
            }
            $.appAuthImplementation = appAuthImplementation_;
            emit AppAuthImplementationSet(appAuthImplementation_);
        }
        $.acceptableTcbStatuses[keccak256(bytes("UpToDate"))] = true;
        emit TcbStatusAcceptabilitySet("UpToDate", true);
    }

    // ----------------------------------------------------------------------------------------
    // KMS identity
    // ----------------------------------------------------------------------------------------

    /// @notice Publishes the root public keys of a new key generation and makes it current; the
    /// generation before it is refused from now on (no transition window: the first generation,
    /// or an emergency rotation away from a leaked master). See {rotateKmsRootKeys} for a
    /// rotation with a window.
    /// @dev Emits {KmsRootKeysSet}, and {TransitionWindowSet} with `validUntil` 0 when it closes a
    /// window that was set. `generation` must be strictly greater than {keyGeneration}.
    /// @param generation The new key generation (> the current one).
    /// @param k256Pubkey The root k256 public key, 33-byte compressed SEC1.
    /// @param caPubkey The root CA public key, DER SubjectPublicKeyInfo.
    function setKmsRootKeys(uint32 generation, bytes calldata k256Pubkey, bytes calldata caPubkey) external onlyOwner {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        _setRootKeys($, generation, k256Pubkey, caPubkey);
        if ($.previousGenerationValidUntil != 0) {
            uint32 previous = $.previousGeneration;
            $.previousGeneration = 0;
            $.previousGenerationValidUntil = 0;
            emit TransitionWindowSet(previous, 0);
        }
    }

    /// @notice Rotates the root keys: `generation` becomes current, and the generation that was
    /// current stays served beside it until `previousValidUntil` (block timestamp, exclusive), so
    /// apps can fetch their old keys and re-encrypt what they sealed. After the window KMS nodes
    /// refuse the old generation and erase its master. A window still open from an earlier
    /// rotation ends now (only one previous generation is served).
    /// @dev Emits {KmsRootKeysSet} and {TransitionWindowSet}. Reverts with
    /// {KmsAuthNoGenerationToRotate} when no generation is current,
    /// {KmsAuthGenerationNotIncreasing}, {KmsAuthInvalidK256Pubkey}, {KmsAuthInvalidCaPubkey}, or
    /// {KmsAuthInvalidTransitionWindow} unless `now < previousValidUntil <= now +
    /// MAX_TRANSITION_WINDOW`.
    /// @param generation The new key generation (> the current one).
    /// @param k256Pubkey The new root k256 public key, 33-byte compressed SEC1.
    /// @param caPubkey The new root CA public key, DER SubjectPublicKeyInfo.
    /// @param previousValidUntil End of the transition window of the generation being replaced.
    function rotateKmsRootKeys(
        uint32 generation,
        bytes calldata k256Pubkey,
        bytes calldata caPubkey,
        uint64 previousValidUntil
    ) external onlyOwner {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        uint32 previous = $.keyGeneration;
        if (previous == 0) revert KmsAuthNoGenerationToRotate();
        _checkWindowEnd(previousValidUntil);
        _setRootKeys($, generation, k256Pubkey, caPubkey);
        $.previousGeneration = previous;
        $.previousGenerationValidUntil = previousValidUntil;
        emit TransitionWindowSet(previous, previousValidUntil);
    }

    /// @notice Moves the end of the open transition window: later (up to
    /// {MAX_TRANSITION_WINDOW} from now) or earlier; a time not after now ends it at once. A
    /// window that has ended cannot be reopened (nodes may have erased that master).
    /// @dev Emits {TransitionWindowSet}. Reverts with {KmsAuthNoTransitionWindow} when none is
    /// open, {KmsAuthTransitionWindowUnchanged} on a no-op, {KmsAuthInvalidTransitionWindow} beyond
    /// the maximum.
    /// @param validUntil The new end (block timestamp, exclusive).
    function setTransitionWindowEnd(uint64 validUntil) external onlyOwner {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        uint64 current = $.previousGenerationValidUntil;
        if (block.timestamp >= current) revert KmsAuthNoTransitionWindow();
        if (validUntil == current) revert KmsAuthTransitionWindowUnchanged(validUntil);
        uint64 latest = uint64(block.timestamp) + MAX_TRANSITION_WINDOW;
        if (validUntil > latest) revert KmsAuthInvalidTransitionWindow(validUntil, uint64(block.timestamp), latest);
        $.previousGenerationValidUntil = validUntil;
        emit TransitionWindowSet($.previousGeneration, validUntil);
    }

    /// @notice The transition window: the generation before the current one, when its window ends,
    /// and whether it is still served at this block.
    /// @return previousGeneration The previous generation (0 when there never was a window).
    /// @return validUntil End of its window (block timestamp, exclusive; 0 = refused).
    /// @return active True while `block.timestamp < validUntil`.
    function transitionWindow() external view returns (uint32 previousGeneration, uint64 validUntil, bool active) {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        previousGeneration = $.previousGeneration;
        validUntil = $.previousGenerationValidUntil;
        active = block.timestamp < validUntil;
    }

    /// @notice Whether KMS nodes may serve keys of `generation` at this block: the current
    /// generation, or the previous one during its transition window.
    /// @param generation A key generation.
    /// @return True when served.
    function isKeyGenerationActive(uint32 generation) external view returns (bool) {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (generation == 0) return false;
        if (generation == $.keyGeneration) return true;
        return generation == $.previousGeneration && block.timestamp < $.previousGenerationValidUntil;
    }

    /// @notice The current key generation.
    /// @return The generation of the latest {setKmsRootKeys}; 0 when none was set.
    function keyGeneration() external view returns (uint32) {
        return _getKmsAuthStorage().keyGeneration;
    }

    /// @notice The root public keys of `generation`.
    /// @param generation A key generation.
    /// @return k256Pubkey The 33-byte compressed k256 key (empty when unknown).
    /// @return caPubkey The CA key as DER SubjectPublicKeyInfo (empty when unknown).
    function rootKeys(uint32 generation) external view returns (bytes memory k256Pubkey, bytes memory caPubkey) {
        RootKeys storage k = _getKmsAuthStorage().rootKeys[generation];
        return (k.k256Pubkey, k.caPubkey);
    }

    // ----------------------------------------------------------------------------------------
    // Allowlists: OS images, KMS measurements and devices
    // ----------------------------------------------------------------------------------------

    /// @notice Allows the OS image `osImageHash` (for apps and KMS nodes).
    /// @dev Emits {OsImageHashAdded}; reverts with {KmsAuthOsImageAlreadyAllowed} on a no-op.
    /// @param osImageHash SHA-256 of the OS image's measurement manifest.
    function addOsImageHash(bytes32 osImageHash) external onlyOwner {
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().osImages;
        if (m[osImageHash]) revert KmsAuthOsImageAlreadyAllowed(osImageHash);
        m[osImageHash] = true;
        emit OsImageHashAdded(osImageHash);
    }

    /// @notice Disallows the OS image `osImageHash`.
    /// @dev Emits {OsImageHashRemoved}; reverts with {KmsAuthOsImageNotAllowed} when not allowed.
    /// @param osImageHash SHA-256 of the OS image's measurement manifest.
    function removeOsImageHash(bytes32 osImageHash) external onlyOwner {
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().osImages;
        if (!m[osImageHash]) revert KmsAuthOsImageNotAllowed(osImageHash);
        delete m[osImageHash];
        emit OsImageHashRemoved(osImageHash);
    }

    /// @notice Whether the OS image `osImageHash` is allowed.
    /// @param osImageHash SHA-256 of the OS image's measurement manifest.
    /// @return True when allowed.
    function allowedOsImages(bytes32 osImageHash) external view returns (bool) {
        return _getKmsAuthStorage().osImages[osImageHash];
    }

    /// @notice Allows KMS nodes whose aggregated measurement is `mrAggregated`.
    /// @dev Emits {KmsAggregatedMrAdded}; reverts with {KmsAuthKmsAggregatedMrAlreadyAllowed} on a no-op.
    /// @param mrAggregated SHA-256(MRTD || RTMR0..3) of a KMS node.
    function addKmsAggregatedMr(bytes32 mrAggregated) external onlyOwner {
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().kmsMrs;
        if (m[mrAggregated]) revert KmsAuthKmsAggregatedMrAlreadyAllowed(mrAggregated);
        m[mrAggregated] = true;
        emit KmsAggregatedMrAdded(mrAggregated);
    }

    /// @notice Disallows KMS nodes whose aggregated measurement is `mrAggregated`.
    /// @dev Emits {KmsAggregatedMrRemoved}; reverts with {KmsAuthKmsAggregatedMrNotAllowed} when not allowed.
    /// @param mrAggregated SHA-256(MRTD || RTMR0..3) of a KMS node.
    function removeKmsAggregatedMr(bytes32 mrAggregated) external onlyOwner {
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().kmsMrs;
        if (!m[mrAggregated]) revert KmsAuthKmsAggregatedMrNotAllowed(mrAggregated);
        delete m[mrAggregated];
        emit KmsAggregatedMrRemoved(mrAggregated);
    }

    /// @notice Whether KMS nodes with aggregated measurement `mrAggregated` are allowed.
    /// @param mrAggregated SHA-256(MRTD || RTMR0..3).
    /// @return True when allowed.
    function kmsAllowedAggregatedMrs(bytes32 mrAggregated) external view returns (bool) {
        return _getKmsAuthStorage().kmsMrs[mrAggregated];
    }

    /// @notice Allows KMS nodes on the machine `deviceId`.
    /// @dev Emits {KmsDeviceAdded}; reverts with {KmsAuthKmsDeviceAlreadyAllowed} on a no-op.
    /// @param deviceId SHA-256 of the machine's PPID.
    function addKmsDevice(bytes32 deviceId) external onlyOwner {
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().kmsDevices;
        if (m[deviceId]) revert KmsAuthKmsDeviceAlreadyAllowed(deviceId);
        m[deviceId] = true;
        emit KmsDeviceAdded(deviceId);
    }

    /// @notice Disallows KMS nodes on the machine `deviceId`.
    /// @dev Emits {KmsDeviceRemoved}; reverts with {KmsAuthKmsDeviceNotAllowed} when not allowed.
    /// @param deviceId SHA-256 of the machine's PPID.
    function removeKmsDevice(bytes32 deviceId) external onlyOwner {
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().kmsDevices;
        if (!m[deviceId]) revert KmsAuthKmsDeviceNotAllowed(deviceId);
        delete m[deviceId];
        emit KmsDeviceRemoved(deviceId);
    }

    /// @notice Whether KMS nodes may run on the machine `deviceId`.
    /// @param deviceId SHA-256 of the machine's PPID.
    /// @return True when allowed.
    function kmsAllowedDeviceIds(bytes32 deviceId) external view returns (bool) {
        return _getKmsAuthStorage().kmsDevices[deviceId];
    }

    // ----------------------------------------------------------------------------------------
    // KMS nodes and gateway
    // ----------------------------------------------------------------------------------------

    /// @notice Adds the KMS node `node` (its own k256 address: log signer and anchoring sender).
    /// @dev Emits {KmsNodeAdded}; reverts with {KmsAuthKmsNodeAlreadyAdded} on a no-op.
    /// @param node The node's address.
    function addKmsNode(address node) external onlyOwner {
        if (node == address(0)) revert KmsAuthZeroAddress();
        if (!_getKmsAuthStorage().kmsNodes.add(node)) revert KmsAuthKmsNodeAlreadyAdded(node);
        emit KmsNodeAdded(node);
    }

    /// @notice Removes the KMS node `node`. Its anchors stay, so a re-added node still cannot shrink its log.
    /// @dev Emits {KmsNodeRemoved}; reverts with {KmsAuthNotKmsNode} when `node` is not a node.
    /// @param node The node's address.
    function removeKmsNode(address node) external onlyOwner {
        if (!_getKmsAuthStorage().kmsNodes.remove(node)) revert KmsAuthNotKmsNode(node);
        emit KmsNodeRemoved(node);
    }

    /// @notice Whether `node` is a KMS node.
    /// @param node An address.
    /// @return True when `node` is a KMS node.
    function isKmsNode(address node) external view returns (bool) {
        return _getKmsAuthStorage().kmsNodes.contains(node);
    }

    /// @notice All KMS nodes (unordered).
    /// @return The node addresses.
    function kmsNodes() external view returns (address[] memory) {
        return _getKmsAuthStorage().kmsNodes.values();
    }

    /// @notice Sets the gateway's app id.
    /// @dev Emits {GatewayAppIdSet}; reverts with {KmsAuthGatewayAppIdUnchanged} on a no-op.
    /// @param gatewayAppId_ The gateway app's id (zero to unset).
    function setGatewayAppId(address gatewayAppId_) external onlyOwner {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if ($.gatewayAppId == gatewayAppId_) revert KmsAuthGatewayAppIdUnchanged(gatewayAppId_);
        $.gatewayAppId = gatewayAppId_;
        emit GatewayAppIdSet(gatewayAppId_);
    }

    /// @notice The gateway's app id.
    /// @return The gateway app id (zero when unset).
    function gatewayAppId() external view returns (address) {
        return _getKmsAuthStorage().gatewayAppId;
    }

    // ----------------------------------------------------------------------------------------
    // TCB policy
    // ----------------------------------------------------------------------------------------

    /// @notice Makes the TCB status `status` (Intel's string, e.g. `SWHardeningNeeded`) acceptable or not.
    /// @dev Emits {TcbStatusAcceptabilitySet}; reverts with {KmsAuthTcbStatusUnchanged} on a no-op.
    /// @param status The TCB status string (1..128 bytes).
    /// @param acceptable Whether a CVM with this status may receive keys.
    function setTcbStatusAcceptable(string calldata status, bool acceptable) external onlyOwner {
        uint256 len = bytes(status).length;
        if (len == 0 || len > MAX_POLICY_STRING_BYTES) revert KmsAuthInvalidTcbStatus(status);
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().acceptableTcbStatuses;
        bytes32 key = keccak256(bytes(status));
        if (m[key] == acceptable) revert KmsAuthTcbStatusUnchanged(status, acceptable);
        m[key] = acceptable;
        emit TcbStatusAcceptabilitySet(status, acceptable);
    }

    /// @notice Whether the TCB status `status` is acceptable.
    /// @param status The TCB status string.
    /// @return True when acceptable.
    function isTcbStatusAcceptable(string calldata status) external view returns (bool) {
        return _getKmsAuthStorage().acceptableTcbStatuses[keccak256(bytes(status))];
    }

    /// @notice Tolerates (or not) the Intel security advisory `advisoryId` (e.g. `INTEL-SA-00837`).
    /// @dev Emits {AdvisoryToleranceSet}; reverts with {KmsAuthAdvisoryUnchanged} on a no-op.
    /// @param advisoryId The advisory id (1..128 bytes).
    /// @param tolerated Whether a platform reporting this advisory may receive keys.
    function setAdvisoryTolerated(string calldata advisoryId, bool tolerated) external onlyOwner {
        uint256 len = bytes(advisoryId).length;
        if (len == 0 || len > MAX_POLICY_STRING_BYTES) revert KmsAuthInvalidAdvisoryId(advisoryId);
        mapping(bytes32 => bool) storage m = _getKmsAuthStorage().toleratedAdvisories;
        bytes32 key = keccak256(bytes(advisoryId));
        if (m[key] == tolerated) revert KmsAuthAdvisoryUnchanged(advisoryId, tolerated);
        m[key] = tolerated;
        emit AdvisoryToleranceSet(advisoryId, tolerated);
    }

    /// @notice Whether the advisory `advisoryId` is tolerated.
    /// @param advisoryId The advisory id.
    /// @return True when tolerated.
    function isAdvisoryTolerated(string calldata advisoryId) external view returns (bool) {
        return _getKmsAuthStorage().toleratedAdvisories[keccak256(bytes(advisoryId))];
    }

    // ----------------------------------------------------------------------------------------
    // App registry and factory
    // ----------------------------------------------------------------------------------------

    /// @notice Registers the app `appId` (anyone may). An app deregistered by the owner can only
    /// be registered again by the owner.
    /// @dev Emits {AppRegistered}. `appId` must answer ERC-165 for IAppAuth (`0x1e079198`).
    /// @param appId The app's policy contract (its address is the app id).
    function registerApp(address appId) external {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if ($.registeredApps[appId]) revert KmsAuthAppAlreadyRegistered(appId);
        if ($.deregisteredApps[appId]) {
            if (msg.sender != owner()) revert KmsAuthAppDeregistered(appId);
            delete $.deregisteredApps[appId];
        }
        if (!ERC165Checker.supportsInterface(appId, type(IAppAuth).interfaceId)) revert KmsAuthNotAppAuth(appId);
        $.registeredApps[appId] = true;
        emit AppRegistered(appId);
    }

    /// @notice Deregisters the app `appId`; from now on only the owner can register it again.
    /// @dev Emits {AppDeregistered}; reverts with {KmsAuthAppNotRegistered} when not registered.
    /// @param appId The app id.
    function deregisterApp(address appId) external onlyOwner {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (!$.registeredApps[appId]) revert KmsAuthAppNotRegistered(appId);
        delete $.registeredApps[appId];
        $.deregisteredApps[appId] = true;
        emit AppDeregistered(appId);
    }

    /// @notice Whether `appId` is registered.
    /// @param appId The app id.
    /// @return True when registered.
    function isAppRegistered(address appId) external view returns (bool) {
        return _getKmsAuthStorage().registeredApps[appId];
    }

    /// @notice Deploys an `ERC1967Proxy` of the AppAuth implementation, initializes it with the
    /// arguments and registers it, in one transaction (anyone may).
    /// @dev Emits {AppDeployedViaFactory} and {AppRegistered} (plus the AppAuth's own events).
    /// @param initialOwner The app's owner; must not be zero.
    /// @param upgradesDisabled When true, the AppAuth can never be upgraded.
    /// @param allowAnyDevice When true, any device may run the app.
    /// @param initialDeviceId A device to allow, or zero for none.
    /// @param initialComposeHash A compose hash to allow at once, or zero for none.
    /// @return appId The new app's id (the proxy's address).
    function deployAndRegisterApp(
        address initialOwner,
        bool upgradesDisabled,
        bool allowAnyDevice,
        bytes32 initialDeviceId,
        bytes32 initialComposeHash
    ) external returns (address appId) {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        address impl = $.appAuthImplementation;
        if (impl == address(0)) revert KmsAuthNoAppAuthImplementation();
        bytes memory init = abi.encodeCall(
            AppAuth.initialize, (initialOwner, upgradesDisabled, allowAnyDevice, initialDeviceId, initialComposeHash)
        );
        appId = address(new ERC1967Proxy(impl, init));
        $.registeredApps[appId] = true;
        emit AppDeployedViaFactory(appId, msg.sender);
        emit AppRegistered(appId);
    }

    /// @notice Sets the AppAuth implementation the factory deploys proxies of.
    /// @dev Emits {AppAuthImplementationSet}; reverts with {KmsAuthInvalidAppAuthImplementation}
    /// when `implementation` has no code or is already set.
    /// @param implementation The AppAuth implementation contract.
    function setAppAuthImplementation(address implementation) external onlyOwner {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (implementation.code.length == 0 || implementation == $.appAuthImplementation) {
            revert KmsAuthInvalidAppAuthImplementation(implementation);
        }
        $.appAuthImplementation = implementation;
        emit AppAuthImplementationSet(implementation);
    }

    /// @notice The AppAuth implementation the factory deploys proxies of.
    /// @return The implementation (zero when the factory is off).
    function appAuthImplementation() external view returns (address) {
        return _getKmsAuthStorage().appAuthImplementation;
    }

    // ----------------------------------------------------------------------------------------
    // Policy
    // ----------------------------------------------------------------------------------------

    /// @notice Decides whether an app CVM may receive keys. Checks, in order: app registered,
    /// OS image, TCB status, advisories, then the app's own {IAppAuth} contract.
    /// @dev Never reverts because of the app contract: it gets {APP_CALL_GAS} gas, returndata over
    /// {MAX_APP_RETURN_BYTES} or not ABI-encoding `(bool, string)` yields
    /// `(false, "App contract call failed")`. Reverts with {KmsAuthInsufficientGas} only when the
    /// caller itself did not give enough gas to make the capped call.
    /// @param bootInfo The verified boot information of the CVM.
    /// @return isAllowed True when the release is allowed.
    /// @return reason Empty when allowed, otherwise the reason (see docs/contracts.md).
    function isAppAllowed(IAppAuth.AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (!$.registeredApps[bootInfo.appId]) return (false, "App not registered");
        (isAllowed, reason) = _checkPlatform($, bootInfo);
        if (!isAllowed) return (isAllowed, reason);
        return _callApp(bootInfo);
    }

    /// @notice Decides whether a KMS node's CVM is allowed. Checks, in order: aggregated MR,
    /// device, OS image, TCB status, advisories.
    /// @param bootInfo The verified boot information of the KMS node's CVM.
    /// @return isAllowed True when allowed.
    /// @return reason Empty when allowed, otherwise the reason (see docs/contracts.md).
    function isKmsAllowed(IAppAuth.AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (!$.kmsMrs[bootInfo.mrAggregated]) return (false, "KMS aggregated MR not allowed");
        if (!$.kmsDevices[bootInfo.deviceId]) return (false, "KMS device not allowed");
        return _checkPlatform($, bootInfo);
    }

    // ----------------------------------------------------------------------------------------
    // Log anchoring
    // ----------------------------------------------------------------------------------------

    /// @notice Anchors the caller's transparency-log checkpoint. Sizes only grow; re-anchoring the
    /// same size must carry the same root.
    /// @dev Emits {CheckpointAnchored}. Reverts with {KmsAuthNotKmsNode}, {KmsAuthCheckpointShrinks}
    /// or {KmsAuthCheckpointConflict}.
    /// @param treeSize The log's size (number of leaves).
    /// @param rootHash The log's Merkle root at `treeSize`.
    function anchorCheckpoint(uint64 treeSize, bytes32 rootHash) external {
        KmsAuthStorage storage $ = _getKmsAuthStorage();
        if (!$.kmsNodes.contains(msg.sender)) revert KmsAuthNotKmsNode(msg.sender);
        Anchor storage a = $.anchors[msg.sender];
        if (a.blockNumber != 0) {
            if (treeSize < a.treeSize) revert KmsAuthCheckpointShrinks(a.treeSize, treeSize);
            if (treeSize == a.treeSize && rootHash != a.rootHash) {
                revert KmsAuthCheckpointConflict(treeSize, a.rootHash, rootHash);
            }
        }
        a.treeSize = treeSize;
        a.rootHash = rootHash;
        a.blockNumber = uint64(block.number);
        emit CheckpointAnchored(msg.sender, treeSize, rootHash);
    }

    /// @notice The latest checkpoint `node` anchored.
    /// @param node A KMS node address.
    /// @return treeSize The anchored size (0 when none).
    /// @return rootHash The anchored root (zero when none).
    /// @return blockNumber The block of the latest anchoring (0 when none).
    function latestAnchor(address node) external view returns (uint64 treeSize, bytes32 rootHash, uint64 blockNumber) {
        Anchor storage a = _getKmsAuthStorage().anchors[node];
        return (a.treeSize, a.rootHash, a.blockNumber);
    }

    // ----------------------------------------------------------------------------------------
    // Internal
    // ----------------------------------------------------------------------------------------

    /// @dev OS image, TCB status and advisories: the checks apps and KMS nodes share.
    function _checkPlatform(KmsAuthStorage storage $, IAppAuth.AppBootInfo calldata bootInfo)
        private
        view
        returns (bool, string memory)
    {
        if (!$.osImages[bootInfo.osImageHash]) return (false, "OS image is not allowed");
        if (!$.acceptableTcbStatuses[keccak256(bytes(bootInfo.tcbStatus))]) {
            return (false, "TCB status not acceptable");
        }
        uint256 n = bootInfo.advisoryIds.length;
        for (uint256 i = 0; i < n; ++i) {
            if (!$.toleratedAdvisories[keccak256(bytes(bootInfo.advisoryIds[i]))]) {
                return (false, "Advisory not tolerated");
            }
        }
        return (true, "");
    }

    /// @dev Calls `bootInfo.appId.isAppAllowed(bootInfo)` with a gas cap and bounded, validated returndata.
    function _callApp(IAppAuth.AppBootInfo calldata bootInfo) private view returns (bool, string memory) {
        bytes memory data = abi.encodeCall(IAppAuth.isAppAllowed, (bootInfo));
        address app = bootInfo.appId;
        // EIP-150: a call receives at most 63/64 of the gas left; make sure the cap is really
        // available, so an "App contract call failed" always blames the app, never the caller.
        uint256 needed = APP_CALL_GAS + APP_CALL_GAS / 63 + 10_000;
        if (gasleft() < needed) revert KmsAuthInsufficientGas(gasleft(), needed);
        bool ok;
        uint256 size;
        assembly ("memory-safe") {
            ok := staticcall(APP_CALL_GAS, app, add(data, 0x20), mload(data), 0, 0)
            size := returndatasize()
        }
        if (!ok || size > MAX_APP_RETURN_BYTES) return (false, REASON_APP_CALL_FAILED);
        bytes memory ret = new bytes(size);
        assembly ("memory-safe") {
            returndatacopy(add(ret, 0x20), 0, size)
        }
        (bool valid, bool allowed, string memory reason) = _decodeBoolString(ret);
        if (!valid) return (false, REASON_APP_CALL_FAILED);
        return (allowed, reason);
    }

    /// @dev Decodes `abi.encode(bool, string)` without reverting: `valid` is false when the bool
    /// word is not 0/1 or the string's offset or length points outside `ret`.
    function _decodeBoolString(bytes memory ret) private pure returns (bool valid, bool allowed, string memory reason) {
        uint256 len = ret.length;
        if (len < 96) return (false, false, "");
        uint256 flag;
        uint256 offset;
        assembly ("memory-safe") {
            flag := mload(add(ret, 0x20))
            offset := mload(add(ret, 0x40))
        }
        // len >= 96, so `len - 32` cannot underflow; offset <= len - 32 keeps the length word inside.
        if (flag > 1 || offset < 0x40 || offset > len - 32) return (false, false, "");
        uint256 strLen;
        assembly ("memory-safe") {
            strLen := mload(add(add(ret, 0x20), offset))
        }
        // offset <= len - 32, so `len - 32 - offset` cannot underflow.
        if (strLen > len - 32 - offset) return (false, false, "");
        reason = new string(strLen);
        assembly ("memory-safe") {
            mcopy(add(reason, 0x20), add(add(ret, 0x40), offset), strLen)
        }
        return (true, flag == 1, reason);
    }

    /// @dev Validates and stores the root keys of a new, strictly greater generation and makes it current.
    function _setRootKeys(
        KmsAuthStorage storage $,
        uint32 generation,
        bytes calldata k256Pubkey,
        bytes calldata caPubkey
    ) private {
        if (generation <= $.keyGeneration) {
            revert KmsAuthGenerationNotIncreasing($.keyGeneration, generation);
        }
        if (k256Pubkey.length != 33 || (k256Pubkey[0] != 0x02 && k256Pubkey[0] != 0x03)) {
            revert KmsAuthInvalidK256Pubkey(k256Pubkey);
        }
        if (caPubkey.length < 2 || caPubkey.length > MAX_CA_PUBKEY_BYTES || caPubkey[0] != 0x30) {
            revert KmsAuthInvalidCaPubkey(caPubkey);
        }
        $.keyGeneration = generation;
        $.rootKeys[generation] = RootKeys({k256Pubkey: k256Pubkey, caPubkey: caPubkey});
        emit KmsRootKeysSet(generation, k256Pubkey, caPubkey);
    }

    /// @dev A new window must end after now and at most {MAX_TRANSITION_WINDOW} from now.
    function _checkWindowEnd(uint64 validUntil) private view {
        uint64 nowTs = uint64(block.timestamp);
        uint64 latest = nowTs + MAX_TRANSITION_WINDOW;
        if (validUntil <= nowTs || validUntil > latest) {
            revert KmsAuthInvalidTransitionWindow(validUntil, nowTs, latest);
        }
    }

    /// @dev Only the owner may upgrade.
    function _authorizeUpgrade(address) internal view override onlyOwner {}

    function _getKmsAuthStorage() private pure returns (KmsAuthStorage storage $) {
        assembly {
            $.slot := KMS_AUTH_STORAGE_LOCATION
        }
    }
}
