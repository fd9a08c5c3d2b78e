"""Calls the Cairn guest agent with the public dstack SDK, unchanged, and prints what it got.

Usage: python sdk_client.py <agent unix socket>
"""
import importlib.metadata
import json
import sys

from dstack_sdk import DstackClient

client = DstackClient(sys.argv[1])
key = client.get_key("wallet/0", "eth")
quote = client.get_quote(b"dstack-sdk test")
info = client.info()
tls = client.get_tls_key(subject="demo.example", alt_names=["demo.example"], usage_ra_tls=True)
version = client.version()
signed = client.sign("secp256k1", b"hello cairn")
verified = client.verify("secp256k1", b"hello cairn", signed.decode_signature(), signed.decode_public_key())
tampered = client.verify("secp256k1", b"hello cairm", signed.decode_signature(), signed.decode_public_key())
print(json.dumps({
    "sdk_version": importlib.metadata.version("dstack-sdk"),
    "key": key.key,
    "signature_chain": key.signature_chain,
    "quote": quote.quote,
    "event_log": quote.event_log,
    "report_data": quote.report_data,
    "replayed_rtmr3": quote.replay_rtmrs()[3],
    "app_id": info.app_id,
    "compose_hash": info.compose_hash,
    "tcb_rtmr3": info.tcb_info.rtmr3,
    "tcb_event_count": len(info.tcb_info.event_log),
    "tls_key": tls.key,
    "tls_chain": tls.certificate_chain,
    "agent_version": version.version,
    "sign_valid": verified.valid,
    "tampered_valid": tampered.valid,
    "sign_chain_len": len(signed.signature_chain),
}))
