#!/usr/bin/env python3
"""An independent implementation of Weft's cryptography, written from
docs/crypto.md alone (no Weft code), to check that the document is enough to
interoperate.

Library: purpose hash (§2), fingerprints (§3), Ed25519 signatures over a
purpose hash (§4), view seal/open and subview seeds (§5), ECIES seed wrap (§6),
seeds sealed under a session key (§6.1).

CLI, used by Tests/WeftCryptoTests/CrossImplementationTests.swift:

    python3 weft_crypto.py check IN.json OUT.json

checks the fingerprints, signatures and sealed views Weft wrote to IN.json,
does the `python_tasks` (seals a view for a Weft key, signs with a fresh key)
and writes the results to OUT.json. Exit status 0 when every check passed; the
last line says how many did.
"""
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# weft.v1.HashPurpose / KeyScheme / SignatureScheme / KeyWrapScheme numbers (§2, §3, §4, §6).
PURPOSE_PUBLIC_KEY_FINGERPRINT = 1
SCHEME_ED25519 = 1
SCHEME_X25519 = 2
SIGNATURE_SCHEME_ED25519 = 1
KEY_WRAP_ECIES = 1

VIEW_KEY_INFO = b"weft/view-key/v1"
SUBVIEW_SEED_INFO = b"weft/subview-seed/v1"
ECIES_INFO = b"weft/ecies-wrap/v1"
SESSION_KEY_INFO = b"weft/session-key/v1"
NONCE_BYTES = 12
TAG_BYTES = 16
SEED_BYTES = 32

RAW = serialization.Encoding.Raw
RAW_PUBLIC = serialization.PublicFormat.Raw


def u32be(n):
    return struct.pack(">I", n)


def u64be(n):
    return struct.pack(">Q", n)


# §2 ------------------------------------------------------------------------

def field_bytes(field):
    """A field's encoding: bytes as is, str as UTF-8, int as u64be (two's complement if negative)."""
    if isinstance(field, (bytes, bytearray)):
        return bytes(field)
    if isinstance(field, str):
        return field.encode("utf-8")
    if isinstance(field, int):
        return u64be(field & 0xFFFFFFFFFFFFFFFF)
    raise TypeError(f"cannot hash a {type(field).__name__}")


def purpose_hash(purpose, *fields):
    """SHA-256(u32be(purpose) ‖ u32be(len(f1)) ‖ f1 ‖ … ‖ u32be(len(fn)) ‖ fn), 32 bytes."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(u32be(purpose))
    for field in fields:
        data = field_bytes(field)
        digest.update(u32be(len(data)))
        digest.update(data)
    return digest.finalize()


# §3 ------------------------------------------------------------------------

def fingerprint(scheme, raw_public_key):
    """"1220" + hex(PurposeHash(1, u64be(scheme), raw_key)), 68 characters."""
    if len(raw_public_key) != 32:
        raise ValueError("a raw public key has 32 bytes")
    return "1220" + purpose_hash(PURPOSE_PUBLIC_KEY_FINGERPRINT, u64be(scheme), raw_public_key).hex()


def parse_fingerprint(text):
    """The 32 digest bytes of a fingerprint; strict: 68 characters, 1220, then only 0-9a-f."""
    if len(text) != 68 or not text.startswith("1220") or any(c not in "0123456789abcdef" for c in text[4:]):
        raise ValueError(f"malformed fingerprint {text!r}")
    return bytes.fromhex(text[4:])


def raw_public(key):
    return key.public_key().public_bytes(RAW, RAW_PUBLIC)


# §4 ------------------------------------------------------------------------

def sign(private_key, purpose, *fields):
    """A weft.v1.Signature as a dict: Ed25519 over the 32 digest bytes of the purpose hash."""
    digest = purpose_hash(purpose, *fields)
    return {
        "scheme": SIGNATURE_SCHEME_ED25519,
        "signed_by": fingerprint(SCHEME_ED25519, raw_public(private_key)),
        "signature": private_key.sign(digest),
    }


def verify(raw_public_key, signature, purpose, *fields):
    """True if `signature` (dict as from `sign`) is by this key over this purpose hash."""
    if signature.get("scheme", SIGNATURE_SCHEME_ED25519) != SIGNATURE_SCHEME_ED25519:
        return False
    if signature["signed_by"] != fingerprint(SCHEME_ED25519, raw_public_key):
        return False
    if len(signature["signature"]) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(raw_public_key).verify(signature["signature"], purpose_hash(purpose, *fields))
        return True
    except InvalidSignature:
        return False


# §5 ------------------------------------------------------------------------

def hkdf_sha256(ikm, salt, info, length):
    # salt=b"" and an absent salt are the same under RFC 5869 (HMAC pads the key with zeros).
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def view_key(seed):
    return hkdf_sha256(seed, b"", VIEW_KEY_INFO, 32)


def subview_seed(seed, index):
    return hkdf_sha256(seed, b"", SUBVIEW_SEED_INFO + u32be(index), 32)


def seal_view(view, view_hash, seed):
    """nonce ‖ AES-256-GCM(view_key, nonce, view, aad=view_hash) ‖ tag."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(view_key(seed)).encrypt(nonce, view, view_hash)


def open_view(ciphertext, view_hash, seed):
    """The plaintext view; raises InvalidTag if anything was altered or the seed is wrong."""
    if len(ciphertext) < NONCE_BYTES + TAG_BYTES:
        raise InvalidTag()
    return AESGCM(view_key(seed)).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], view_hash)


# §6 ------------------------------------------------------------------------

def _ecies_key_nonce(shared, ephemeral_public, recipient_public):
    if shared == bytes(32):
        raise ValueError("X25519 agreement gave the all-zero secret")
    okm = hkdf_sha256(shared, ephemeral_public + recipient_public, ECIES_INFO, 44)
    return okm[:32], okm[32:44]


def wrap(secret, recipient_public, ephemeral=None):
    """A weft.v1.WrappedKey as a dict, for a recipient's raw X25519 public key."""
    ephemeral = X25519PrivateKey.generate() if ephemeral is None else ephemeral
    ephemeral_public = raw_public(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    key, nonce = _ecies_key_nonce(shared, ephemeral_public, recipient_public)
    return {
        "scheme": KEY_WRAP_ECIES,
        "recipient_key": fingerprint(SCHEME_X25519, recipient_public),
        "ephemeral_public_key": ephemeral_public,
        "ciphertext": AESGCM(key).encrypt(nonce, secret, b""),
    }


def unwrap(wrapped, recipient_private):
    recipient_public = raw_public(recipient_private)
    if wrapped.get("scheme", KEY_WRAP_ECIES) != KEY_WRAP_ECIES:
        raise ValueError("unknown key-wrap scheme")
    if wrapped["recipient_key"] != fingerprint(SCHEME_X25519, recipient_public):
        raise ValueError("wrapped for another key")
    ephemeral_public = wrapped["ephemeral_public_key"]
    shared = recipient_private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key, nonce = _ecies_key_nonce(shared, ephemeral_public, recipient_public)
    return AESGCM(key).decrypt(nonce, wrapped["ciphertext"], b"")


def seal_view_for(view, view_hash, recipients_public, seed=None):
    """An EncryptedViewMessage's crypto fields: fresh seed, sealed view, one wrap per recipient."""
    seed = os.urandom(SEED_BYTES) if seed is None else seed
    return seed, {
        "view_hash": view_hash,
        "ciphertext": seal_view(view, view_hash, seed),
        "wrapped_seeds": [wrap(seed, r) for r in recipients_public],
    }


def seed_of(wrapped_seeds, recipient_private):
    """Finds the WrappedKey whose recipient_key is this key's fingerprint and unwraps it."""
    mine = fingerprint(SCHEME_X25519, raw_public(recipient_private))
    for wrapped in wrapped_seeds:
        if wrapped["recipient_key"] == mine:
            return unwrap(wrapped, recipient_private)
    raise ValueError(f"no seed wrapped for {mine}")


# §6.1 ----------------------------------------------------------------------

def session_key(session_randomness):
    return hkdf_sha256(session_randomness, b"", SESSION_KEY_INFO, 32)


def seal_seed(seed, view_hash, session_randomness, nonce=None):
    """seed_nonce ‖ AES-256-GCM(session_key, seed_nonce, seed, aad=view_hash) ‖ tag."""
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    return nonce + AESGCM(session_key(session_randomness)).encrypt(nonce, seed, view_hash)


def seed_of_session(session, view_hash, recipient_private):
    """The seed a SessionSealedSeed (as a dict) holds for this recipient."""
    randomness = seed_of(session["wrapped_session_keys"], recipient_private)
    if len(randomness) != SEED_BYTES:
        raise ValueError("a session key must be 32 bytes")
    sealed = session["sealed_seed"]
    if len(sealed) != NONCE_BYTES + SEED_BYTES + TAG_BYTES:
        raise InvalidTag()
    return AESGCM(session_key(randomness)).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], view_hash)


def seal_view_in_session(view, view_hash, recipients_public):
    """An EncryptedViewMessage's crypto fields with the seed sealed under a fresh session key."""
    seed = os.urandom(SEED_BYTES)
    randomness = os.urandom(SEED_BYTES)
    return seed, {
        "view_hash": view_hash,
        "ciphertext": seal_view(view, view_hash, seed),
        "session_sealed_seed": {
            "wrapped_session_keys": [wrap(randomness, r) for r in recipients_public],
            "sealed_seed": seal_seed(seed, view_hash, randomness),
        },
    }


# CLI -------------------------------------------------------------------------

def _wrapped_from_json(items):
    return [{
        "scheme": w.get("scheme", KEY_WRAP_ECIES), "recipient_key": w["recipient_key"],
        "ephemeral_public_key": bytes.fromhex(w["ephemeral_public_key"]),
        "ciphertext": bytes.fromhex(w["ciphertext"]),
    } for w in items]


def _wrapped_to_json(items):
    return [{
        "scheme": w["scheme"], "recipient_key": w["recipient_key"],
        "ephemeral_public_key": w["ephemeral_public_key"].hex(), "ciphertext": w["ciphertext"].hex(),
    } for w in items]


def check(in_path, out_path):
    cases = json.load(open(in_path))
    passed, failed = 0, 0
    out = {"fingerprints": [], "signatures": [], "views": []}

    def record(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {what}")
        return ok

    for n, case in enumerate(cases.get("fingerprints", [])):
        ours = fingerprint(case["scheme"], bytes.fromhex(case["public_key"]))
        ok = record(ours == case["fingerprint"], f"fingerprint {n}: weft {case['fingerprint']} python {ours}")
        out["fingerprints"].append({"ok": ok, "fingerprint": ours})

    for n, case in enumerate(cases.get("signatures", [])):
        key = bytes.fromhex(case["public_key"])
        fields = [bytes.fromhex(f) for f in case["fields"]]
        ours = fingerprint(SCHEME_ED25519, key)
        signed_by_ok = record(case["signed_by"] == ours, f"signature {n}: signed_by {case['signed_by']} is not {ours}")
        signature = {"signed_by": case["signed_by"], "signature": bytes.fromhex(case["signature"])}
        valid = record(verify(key, signature, case["purpose"], *fields), f"signature {n}: does not verify")
        out["signatures"].append({
            "signed_by_ok": signed_by_ok, "valid": valid,
            "purpose_hash": purpose_hash(case["purpose"], *fields).hex(),
        })

    for n, case in enumerate(cases.get("views", [])):
        result = {"ok": False}
        try:
            private = X25519PrivateKey.from_private_bytes(bytes.fromhex(case["recipient_private_key"]))
            if "session" in case:
                session = {
                    "wrapped_session_keys": _wrapped_from_json(case["session"]["wrapped"]),
                    "sealed_seed": bytes.fromhex(case["session"]["sealed_seed"]),
                }
                seed = seed_of_session(session, bytes.fromhex(case["view_hash"]), private)
            else:
                seed = seed_of(_wrapped_from_json(case["wrapped"]), private)
            plaintext = open_view(bytes.fromhex(case["ciphertext"]), bytes.fromhex(case["view_hash"]), seed)
            result["plaintext"] = plaintext.hex()
            result["subview_seed_1"] = subview_seed(seed, 1).hex()
            result["ok"] = record(plaintext.hex() == case["plaintext"], f"view {n}: plaintext differs")
        except Exception as error:  # noqa: BLE001 - any failure is a failed check, reported
            record(False, f"view {n}: {type(error).__name__}: {error}")
            result["error"] = f"{type(error).__name__}: {error}"
        out["views"].append(result)

    task = cases.get("python_tasks")
    if task is not None:
        view_hash = bytes.fromhex(task["view_hash"])
        _, sealed = seal_view_for(bytes.fromhex(task["plaintext"]), view_hash, [bytes.fromhex(task["recipient_public_key"])])
        signing_key = Ed25519PrivateKey.generate()
        signature = sign(signing_key, task["purpose"], *[bytes.fromhex(f) for f in task["fields"]])
        public = raw_public(signing_key)
        out["python"] = {
            "view_hash": view_hash.hex(),
            "ciphertext": sealed["ciphertext"].hex(),
            "wrapped": _wrapped_to_json(sealed["wrapped_seeds"]),
            "signature": {"scheme": signature["scheme"], "signed_by": signature["signed_by"],
                          "signature": signature["signature"].hex()},
            "public_key": public.hex(),
            "fingerprint": fingerprint(SCHEME_ED25519, public),
        }
        _, in_session = seal_view_in_session(
            bytes.fromhex(task["plaintext"]), view_hash, [bytes.fromhex(task["recipient_public_key"])])
        out["python"]["session"] = {
            "ciphertext": in_session["ciphertext"].hex(),
            "wrapped": _wrapped_to_json(in_session["session_sealed_seed"]["wrapped_session_keys"]),
            "sealed_seed": in_session["session_sealed_seed"]["sealed_seed"].hex(),
        }

    out["passed"], out["failed"] = passed, failed
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"crypto interop: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def session_vectors():
    """The §6.1 lines of docs/crypto.md §9, from their fixed inputs."""
    recipient = X25519PrivateKey.from_private_bytes(bytes(range(0x20, 0x40)))
    ephemeral_private = bytes(range(0x60, 0x80))
    randomness, seed, view_hash, nonce = b"\x5a" * 32, b"\x5e" * 32, b"\xaa" * 32, bytes(range(0x0c, 0x18))
    wrapped = wrap(randomness, raw_public(recipient), ephemeral=X25519PrivateKey.from_private_bytes(ephemeral_private))
    sealed = seal_seed(seed, view_hash, randomness, nonce)
    assert seed_of_session({"wrapped_session_keys": [wrapped], "sealed_seed": sealed}, view_hash, recipient) == seed
    for name, value in [
        ("session-randomness", randomness), ("session-key", session_key(randomness)),
        ("session-ephemeral-private", ephemeral_private), ("session-ephemeral-public", wrapped["ephemeral_public_key"]),
        ("wrapped-session-key", wrapped["ciphertext"]), ("seed-nonce", nonce), ("sealed-seed", sealed),
    ]:
        print(f"{name}: {value.hex()}")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "vectors":
        return session_vectors()
    if len(argv) != 4 or argv[1] != "check":
        print("usage: weft_crypto.py check IN.json OUT.json | weft_crypto.py vectors", file=sys.stderr)
        return 2
    return check(argv[2], argv[3])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
