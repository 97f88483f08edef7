#!/usr/bin/env python3
"""A decoder of edgesync envelopes written from FORMAT.md alone.

Envelope: a sealed batch of records, one Kafka message centrally. This script
reads them as the central team would, and checks the test vectors:

  decode_envelope.py --check-vector tests/vectors/*.txt
  decode_envelope.py [--private-key PEM]... [--dict-dir DIR] [--require-encryption]
                     [--device-keys DIR [--allow-unsigned]] FILE...

The second form prints one JSON line per record, or {"gap": {...}} per gap
record; each says `verified` (true: its signature was checked against
--device-keys) and, for format version 2, `signer` (the key id, hex).
Without --device-keys a version 2 envelope decodes with its signature NOT
checked: its device id is taken on its word. Needs Debian's
python3-cryptography and python3-zstandard: run it with /usr/bin/python3.
"""

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

try:
    import zstandard
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.exceptions import InvalidSignature, InvalidTag
except ImportError as e:
    sys.exit(f"decode_envelope.py: {e} (interpreter {sys.executable}). Run script/bootstrap: "
             "this script needs Debian's python3-cryptography and python3-zstandard, "
             "run with /usr/bin/python3.")


class Refused(Exception):
    """The envelope is refused; the message says why, `reason` names it as
    edgesync-unpack counts it (malformed, checksum, unknown_version, ...,
    unsigned, unknown_device, wrong_key, revoked_key, bad_signature)."""

    def __init__(self, message: str, reason: str = "malformed"):
        super().__init__(message)
        self.reason = reason
        # Set when it came after the identity check (step 6): from the size
        # limit, decryption, decompression or the records.
        self.after_identity = False


# ---------------------------------------------------------------- CRC-32C
# Castagnoli, reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF.

def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


# ---------------------------------------------------------------- constants

MAGIC = b"EDGS"
VERSION_UNSIGNED = 1         # read during the transition only
VERSION_SIGNED = 2           # signed by the device's own Ed25519 key
SIGNER_KEY_ID_LEN = 8
SIGNATURE_LEN = 64
SIGNATURE_BLOCK = SIGNER_KEY_ID_LEN + SIGNATURE_LEN  # version 2: between body and CRC
FLAG_ENCRYPTED = 0x01
FLAG_GAP = 0x02
KNOWN_FLAGS = FLAG_ENCRYPTED | FLAG_GAP
FIXED_HEADER = 59            # offsets 0..58: everything up to device_id_len included
MAX_RAW_LEN = 64 << 20       # this reader's limit, the most FORMAT.md allows
SEAL_OVERHEAD = 32 + 32 + 16 + 12 + 16  # ephemeral_public, wrapped_key, wrap_tag, nonce, tag
HKDF_INFO = b"edgesync envelope v1 key wrap"
ZSTD_DICT_MAGIC = b"\x37\xa4\x30\xec"
ENROLMENT_PREFIX = b"edgesync-device: "


# ---------------------------------------------------------------- decoded values

@dataclasses.dataclass
class Header:
    version: int
    flags: int
    header_len: int
    batch_seq: int
    event_count: int
    first_event_at: int
    last_event_at: int
    codec: int
    dict_id: int
    key_id: bytes
    body_len: int
    raw_len: int
    device_id: bytes
    stream: bytes
    # Version 2 only: the signature block.
    signer_key_id: bytes | None = None
    signature: bytes | None = None

    def signed_part(self, env: bytes) -> bytes:
        """What the signature covers: every byte up to and including signer_key_id."""
        return env[:self.header_len + self.body_len + SIGNER_KEY_ID_LEN]


@dataclasses.dataclass
class Record:
    topic: bytes
    received_at: int
    qos: int
    content_type: bytes
    properties: list  # [(key bytes, value bytes)] in order; keys may repeat
    payload: bytes


@dataclasses.dataclass
class Gap:
    first_seq: int
    last_seq: int
    events: int
    bytes: int
    recorded_at: int
    reason: bytes


@dataclasses.dataclass
class Envelope:
    header: Header
    raw_body: bytes
    records: list  # of Record (empty for a gap record)
    gap: Gap | None
    # Intermediate values of "Encryption" (for the test vectors), else empty.
    trace: dict
    # True when the signature was checked against enrolled device keys.
    verified: bool = False


class Reader:
    """Reads bytes front to back; running past the end is a refusal."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Refused(f"{self.what}: truncated at byte {self.pos} (wants {n} more)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        values = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))
        return values[0] if len(values) == 1 else values

    def rest(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------- keys, dictionaries

def key_id_of(public_raw: bytes) -> bytes:
    """First 8 bytes of SHA-256 of a raw 32-byte public key (X25519 or Ed25519)."""
    return hashlib.sha256(public_raw).digest()[:8]


def public_raw(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)


class Keyring:
    """Private keys by key_id."""

    def __init__(self):
        self.keys = {}

    def add(self, private: X25519PrivateKey):
        self.keys[key_id_of(public_raw(private))] = private

    def add_pem_file(self, path: str):
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        if not isinstance(key, X25519PrivateKey):
            raise ValueError(f"{path}: not an X25519 private key")
        self.add(key)


def load_dictionaries(directory: str) -> dict:
    """zstd dictionaries of a directory by their id (bytes 4..7, little-endian)."""
    dicts = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 8 or data[:4] != ZSTD_DICT_MAGIC:
            continue  # not a zstd dictionary
        dicts[struct.unpack_from("<I", data, 4)[0]] = data
    return dicts


# ---------------------------------------------------------------- device keys

def printable(text: bytes) -> bool:
    """UTF-8 without control characters, backslashes or invisible direction marks."""
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for ch in s:
        cp = ord(ch)
        if (cp < 0x20 or cp == 0x7F or 0x80 <= cp <= 0x9F or ch == "\\" or cp in (0x2028, 0x2029)
                or 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069):
            return False
    return True


def shown(device_id: bytes) -> str:
    return device_id.decode("utf-8", errors="backslashreplace")


def ed25519_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_enrolment(data: bytes, origin: str):
    """An enrolment file: `edgesync-device: <device id>`, a newline, then the
    Ed25519 public key as PEM (SubjectPublicKeyInfo). Returns (device id,
    public key); ValueError says what is wrong."""
    eol = data.find(b"\n")
    if not data.startswith(ENROLMENT_PREFIX) or eol < 0:
        raise ValueError(f"{origin}: not an enrolment file (its first line must be "
                         f"\"edgesync-device: <device id>\")")
    device_id = data[len(ENROLMENT_PREFIX):eol].removesuffix(b"\r")
    if not 1 <= len(device_id) <= 255 or not printable(device_id):
        raise ValueError(f"{origin}: the device id must be 1 to 255 bytes of printable UTF-8, "
                         f"not {device_id!r}")
    try:
        key = serialization.load_pem_public_key(data[eol + 1:])
    except ValueError as e:
        raise ValueError(f"{origin}: no PEM public key after the first line ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{origin}: not an Ed25519 public key")
    return device_id, key


class DeviceKeys:
    """The device keys a reader trusts, by key id: enrolled and revoked ones."""

    def __init__(self):
        self.keys = {}  # key id -> (device id, Ed25519PublicKey, revoked)
        self.conflicted = set()  # key ids enrolled for more than one device

    def enrol(self, device_id: bytes, key: Ed25519PublicKey, revoked: bool = False):
        kid = key_id_of(ed25519_raw(key))
        old = self.keys.get(kid)
        if old is not None and old[2]:
            return  # revoked for good
        if old is not None and not revoked and (old[0] != device_id or
                                                ed25519_raw(old[1]) != ed25519_raw(key)):
            self.conflicted.add(kid)  # one key for two devices: refused for both
            return
        self.keys[kid] = (device_id, key, revoked)

    def load_dir(self, directory: str) -> list:
        """DIR/*.pub enrolled, DIR/revoked/*.pub revoked (a revoked key stays
        revoked even while a copy is still enrolled). Returns the problems of
        files that were skipped; OSError when DIR cannot be listed."""
        problems = []
        for sub, revoked in ((directory, False), (os.path.join(directory, "revoked"), True)):
            try:
                names = sorted(os.listdir(sub))
            except FileNotFoundError:
                if revoked:
                    continue  # revoked/ is optional
                raise
            for name in names:
                if not name.endswith(".pub") or len(name) <= 4 or name.startswith("."):
                    continue
                path = os.path.join(sub, name)
                try:
                    if not os.path.isfile(path):
                        raise ValueError(f"{path}: not a regular file")
                    with open(path, "rb") as f:
                        device_id, key = parse_enrolment(f.read(), path)
                except (OSError, ValueError) as e:
                    problems.append(str(e))
                    continue
                self.enrol(device_id, key, revoked)
        return problems

    def knows(self, device_id: bytes) -> bool:
        """Whether some key is enrolled (and not revoked) for the device."""
        return any(d == device_id and not revoked for d, _, revoked in self.keys.values())

    def check(self, device_id: bytes, signer: bytes, message: bytes, signature: bytes):
        """The identity rules of "What a reader does"; raises Refused."""
        entry = self.keys.get(signer)
        named = f' (the batch names device "{shown(device_id)}")'
        if entry is None:
            if self.knows(device_id):
                raise Refused(f"wrong_key: signed by key {signer.hex()}, which is not enrolled "
                              f'for device "{shown(device_id)}"', "wrong_key")
            raise Refused(f"unknown_device: signed by key {signer.hex()}, which is not "
                          f"enrolled{named}", "unknown_device")
        enrolled_for, key, revoked = entry
        # The signature first: only the key's holder can cause the refusals after it.
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise Refused(f"bad_signature: the signature of key {signer.hex()} does not verify "
                          "(changed bytes or a forgery)", "bad_signature") from None
        if revoked:
            raise Refused(f"revoked_key: signed by key {signer.hex()}, which was revoked for "
                          f'device "{shown(enrolled_for)}"', "revoked_key")
        if signer in self.conflicted:
            raise Refused(f"wrong_key: key {signer.hex()} is enrolled for more than one device",
                          "wrong_key")
        if enrolled_for != device_id:
            raise Refused(f"wrong_key: signed by key {signer.hex()} of device "
                          f'"{shown(enrolled_for)}"{named}', "wrong_key")


# ---------------------------------------------------------------- envelope

def parse_header(env: bytes) -> Header:
    """Steps 1 to 5 of "What a reader does", in that order: a refusal names
    the first step that fails."""
    if len(env) < 4 or env[:4] != MAGIC:
        raise Refused("not an edgesync envelope (bad magic)")
    if len(env) < 5:
        raise Refused("corrupt: truncated before the version")
    if env[4] not in (VERSION_UNSIGNED, VERSION_SIGNED):
        raise Refused(f"envelope version {env[4]} (a newer writer?); this reader knows "
                      "versions 1 and 2", "unknown_version")
    if len(env) < 6:
        raise Refused("corrupt: truncated before the flags")
    if env[5] & ~KNOWN_FLAGS:
        raise Refused(f"unknown flag bits 0x{env[5] & ~KNOWN_FLAGS:02x} in flags 0x{env[5]:02x}",
                      "unknown_flags")
    if len(env) < FIXED_HEADER:
        raise Refused(f"corrupt: {len(env)} bytes, shorter than a header")
    r = Reader(env, "header")
    r.take(4)
    version, flags, header_len, batch_seq, event_count, first_at, last_at, codec, reserved, \
        dict_id = r.unpack("BBHQIqqBBI")
    key_id = r.take(8)
    body_len, raw_len = r.unpack("II")
    # Step 4: the fields this page lists end within header_len; bytes after
    # them are later fields (skipped).
    device_id = r.take(r.unpack("B"))
    stream = r.take(r.unpack("B"))
    if r.pos > header_len:
        raise Refused(f"corrupt: header_len {header_len}, but its fields end at byte {r.pos}")
    if not device_id or not stream:
        raise Refused("corrupt: empty device_id or stream")
    # Step 5: the length, then the CRC, before anything else is believed.
    block = SIGNATURE_BLOCK if version == VERSION_SIGNED else 0
    if len(env) != header_len + body_len + block + 4:
        raise Refused(f"corrupt: {len(env)} bytes, header_len {header_len} + body_len "
                      f"{body_len} + {f'{block} (signature block) + ' if block else ''}4 expected")
    (crc,) = struct.unpack_from("<I", env, len(env) - 4)
    if crc32c(env[:-4]) != crc:
        raise Refused("corrupt: CRC-32C mismatch", "checksum")
    signer_key_id = signature = None
    if version == VERSION_SIGNED:
        at = header_len + body_len
        signer_key_id = env[at:at + SIGNER_KEY_ID_LEN]
        signature = env[at + SIGNER_KEY_ID_LEN:at + SIGNATURE_BLOCK]
    return Header(version, flags, header_len, batch_seq, event_count, first_at, last_at, codec,
                  dict_id, key_id, body_len, raw_len, device_id, stream, signer_key_id, signature)


def check_identity(env: bytes, header: Header, device_keys: DeviceKeys | None,
                   allow_unsigned: bool) -> bool:
    """Step 6 of "What a reader does": who wrote it, before anything the writer
    says is believed. True when the signature was checked; without device
    keys nothing is (the device id is taken on its word)."""
    if device_keys is None:
        return False
    if header.version == VERSION_UNSIGNED:
        if allow_unsigned and not (header.flags & FLAG_GAP and device_keys.knows(header.device_id)):
            return False  # the transition: version 1 read unchecked (never a gap record of an enrolled device)
        raise Refused("unsigned: envelope version 1 is not signed, and this reader requires "
                      "signed envelopes (version 2)", "unsigned")
    device_keys.check(header.device_id, header.signer_key_id, header.signed_part(env),
                      header.signature)
    return True


def open_sealed(header: Header, aad: bytes, body: bytes, keys: Keyring, trace: dict) -> bytes:
    """Step 8, "Encryption": the codec's output from a sealed body."""
    private = keys.keys.get(header.key_id)
    if private is None:
        raise Refused(f"unknown key (key_id {header.key_id.hex()})", "unknown_key")
    if len(body) < SEAL_OVERHEAD:
        raise Refused(f"corrupt: sealed body of {len(body)} bytes, at least {SEAL_OVERHEAD} needed",
                      "decrypt_failed")
    ephemeral_public = body[0:32]
    wrapped = body[32:80]  # wrapped_key (32) then wrap_tag (16): AESGCM wants them together
    nonce = body[80:92]
    sealed = body[92:]     # ciphertext then tag
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:  # OpenSSL refuses an all-zero result
        shared = bytes(32)
    if shared == bytes(32):
        raise Refused("refused: all-zero X25519 shared secret", "decrypt_failed")
    recipient_public = public_raw(private)
    wrap_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public,
                    info=HKDF_INFO).derive(shared)
    try:
        data_key = AESGCM(wrap_key).decrypt(bytes(12), wrapped, aad)
    except InvalidTag:
        raise Refused("refused: the wrapped data key fails its tag (wrong key or forgery)",
                      "decrypt_failed") from None
    try:
        plain = AESGCM(data_key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise Refused("refused: the sealed body fails its tag (forgery)", "decrypt_failed") from None
    trace.update(recipient_public=recipient_public, ephemeral_public=ephemeral_public,
                 shared=shared, wrap_key=wrap_key, data_key=data_key, nonce=nonce)
    return plain


def decompress(header: Header, data: bytes, dicts: dict) -> bytes:
    """Step 9: the raw body, exactly raw_len bytes."""
    if header.codec == 0:
        if header.dict_id != 0:
            raise Refused(f"corrupt: codec 0 with dict_id {header.dict_id}")
        if len(data) != header.raw_len:
            raise Refused(f"corrupt: raw body of {len(data)} bytes, raw_len {header.raw_len}")
        return data
    if header.codec == 1:
        zdict = None
        if header.dict_id != 0:
            if header.dict_id not in dicts:
                raise Refused(f"no zstd dictionary with id {header.dict_id}", "unknown_dictionary")
            zdict = zstandard.ZstdCompressionDict(dicts[header.dict_id])
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as e:
            raise Refused(f"corrupt: not a zstd frame ({e})", "bad_codec") from None
        if params.dict_id not in (0, header.dict_id):
            raise Refused(f"corrupt: zstd frame names dictionary {params.dict_id}, "
                          f"header {header.dict_id}", "bad_codec")
        # The frame states its content size, raw_len: checked before
        # decompressing, so a frame never makes this reader allocate more.
        if params.content_size != header.raw_len:
            raise Refused(f"corrupt: zstd frame of {params.content_size} bytes, "
                          f"raw_len {header.raw_len}", "bad_codec")
        try:
            d = zstandard.ZstdDecompressor(dict_data=zdict)
            raw = d.decompress(data, max_output_size=header.raw_len, allow_extra_data=False)
        except zstandard.ZstdError as e:
            raise Refused(f"corrupt: zstd: {e}", "bad_codec") from None
        if len(raw) != header.raw_len:
            raise Refused(f"corrupt: zstd frame decompressed to {len(raw)} bytes, raw_len "
                          f"{header.raw_len}", "bad_codec")
        return raw
    raise Refused(f"unknown codec {header.codec}", "bad_codec")


def parse_record(data: bytes) -> Record:
    """One record; it must use exactly all of its bytes."""
    r = Reader(data, "record")
    topic = r.take(r.unpack("H"))
    received_at, qos = r.unpack("qB")
    if qos > 2:
        raise Refused(f"corrupt: record QoS {qos}")
    content_type = r.take(r.unpack("H"))
    properties = []
    for _ in range(r.unpack("H")):
        key = r.take(r.unpack("H"))
        properties.append((key, r.take(r.unpack("H"))))
    payload = r.take(r.unpack("I"))
    if r.rest():
        raise Refused(f"corrupt: {r.rest()} bytes after the end of a record")
    return Record(topic, received_at, qos, content_type, properties, payload)


def parse_records(raw: bytes, event_count: int) -> list:
    r = Reader(raw, "raw body")
    records = []
    while r.rest():
        records.append(parse_record(r.take(r.unpack("I"))))
    if len(records) != event_count:
        raise Refused(f"corrupt: {len(records)} records, event_count {event_count}")
    return records


def parse_gap(header: Header, raw: bytes) -> Gap:
    r = Reader(raw, "gap record")
    first, last, events, nbytes, recorded_at = r.unpack("QQQQq")
    reason = r.take(r.unpack("B"))
    if r.rest():
        raise Refused(f"corrupt: {r.rest()} bytes after the gap record")
    if not reason:
        raise Refused("corrupt: gap record without a reason")
    if header.event_count != 0 or first != header.batch_seq or last < first or last > 2**63 - 1:
        raise Refused(f"corrupt: gap record of sequences {first}..{last}, batch_seq "
                      f"{header.batch_seq}, event_count {header.event_count}")
    return Gap(first, last, events, nbytes, recorded_at, reason)


def decode(env: bytes, keys: Keyring | None = None, dicts: dict | None = None,
           require_encryption: bool = False, device_keys: DeviceKeys | None = None,
           allow_unsigned: bool = False) -> Envelope:
    """Steps 1 to 9 of "What a reader does" for one envelope; raises Refused.
    `device_keys` None: a version 2 signature is not checked (step 6 skipped)."""
    header = parse_header(env)
    verified = check_identity(env, header, device_keys, allow_unsigned)
    try:
        return decode_body(env, header, keys, dicts, require_encryption, verified)
    except Refused as e:
        e.after_identity = True
        raise


def decode_body(env: bytes, header: Header, keys: Keyring | None, dicts: dict | None,
                require_encryption: bool, verified: bool) -> Envelope:
    """Steps 7 to 9, once the envelope is whole and its writer known."""
    if not 1 <= header.batch_seq <= 2**63 - 1:  # step 7
        raise Refused(f"corrupt: batch_seq {header.batch_seq} outside 1..2^63-1")
    if header.raw_len > MAX_RAW_LEN:  # step 7: before decompressing anything
        raise Refused(f"raw_len {header.raw_len} above this reader's limit of {MAX_RAW_LEN}",
                      "too_large")
    body = env[header.header_len:header.header_len + header.body_len]
    trace = {}
    if header.flags & FLAG_ENCRYPTED:
        body = open_sealed(header, env[:header.header_len], body, keys or Keyring(), trace)
    elif require_encryption and not header.flags & FLAG_GAP:
        # (key_id, zero when not encrypted, is ignored: step 4.)
        raise Refused("refused: not encrypted, and this reader requires encryption",
                      "not_encrypted")
    raw = decompress(header, body, dicts or {})
    if header.flags & FLAG_GAP:
        return Envelope(header, raw, [], parse_gap(header, raw), trace, verified)
    return Envelope(header, raw, parse_records(raw, header.event_count), None, trace, verified)


# ---------------------------------------------------------------- de-duplication (step 10, 11)

class Seen:
    """Which sequences of each (device, stream) were received or given up."""

    def __init__(self):
        self.ranges = {}  # (device, stream) -> [(first, last)] received or in a gap

    def covered(self, key, first, last) -> bool:
        at = first
        for lo, hi in sorted(self.ranges.get(key, [])):
            if lo > at:
                break
            at = max(at, hi + 1)
        return at > last

    def add(self, key, first, last):
        self.ranges.setdefault(key, []).append((first, last))


# ---------------------------------------------------------------- JSON output

def text_field(out: dict, name: str, value: bytes):
    """`name` as UTF-8 text, or `name_b64` when it is not valid UTF-8."""
    try:
        out[name] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[name + "_b64"] = base64.b64encode(value).decode()


def text_value(value: bytes):
    """UTF-8 text as a string, other bytes as {"b64": ...}."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode()}


def lane_json(out: dict, lane: bytes):
    """The header's `stream` names a lane: `stream`, or `stream@topic@priority`
    for events a plugin routed (the topic between the first and the last '@')."""
    first, last = lane.find(b"@"), lane.rfind(b"@")
    text_field(out, "stream", lane if first < 0 else lane[:first])
    if first >= 0:
        text_field(out, "route_topic", lane[first + 1:last] if last > first else b"")
        text_field(out, "route_priority", lane[last + 1:])


def identity_json(out: dict, env: Envelope):
    """`verified`: the signature was checked against --device-keys;
    `signer`: the version 2 signer's key id."""
    out["verified"] = env.verified
    if env.header.signer_key_id is not None:
        out["signer"] = env.header.signer_key_id.hex()


def record_json(env: Envelope, rec: Record) -> dict:
    h = env.header
    out = {}
    text_field(out, "device", h.device_id)
    lane_json(out, h.stream)
    out["batch"] = h.batch_seq
    identity_json(out, env)
    text_field(out, "topic", rec.topic)
    out["received_at"] = rec.received_at
    out["qos"] = rec.qos
    if rec.content_type:
        text_field(out, "content_type", rec.content_type)
    if rec.properties:
        out["properties"] = [[text_value(k), text_value(v)] for k, v in rec.properties]
    out["payload_b64"] = base64.b64encode(rec.payload).decode()
    return out


def gap_json(env: Envelope, gap: Gap) -> dict:
    h = env.header
    out = {}
    text_field(out, "device", h.device_id)
    lane_json(out, h.stream)
    identity_json(out, env)
    out.update(first_seq=gap.first_seq, last_seq=gap.last_seq, events=gap.events,
               bytes=gap.bytes, first_event_at=h.first_event_at, last_event_at=h.last_event_at,
               recorded_at=gap.recorded_at)
    text_field(out, "reason", gap.reason)
    return {"gap": out}


def decode_files(args) -> int:
    keys = Keyring()
    for path in args.private_key:
        keys.add_pem_file(path)
    dicts = load_dictionaries(args.dict_dir) if args.dict_dir else {}
    device_keys = None
    if args.device_keys:
        device_keys = DeviceKeys()
        try:
            problems = device_keys.load_dir(args.device_keys)
        except OSError as e:
            sys.exit(f"decode_envelope.py: --device-keys {args.device_keys}: {e}")
        for problem in problems:
            print(f"device keys: {problem}; skipped", file=sys.stderr)
    seen, failed = Seen(), False
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        try:
            env = decode(data, keys, dicts, args.require_encryption, device_keys,
                         args.allow_unsigned)
        except Refused as e:
            print(f"{path}: {e}", file=sys.stderr)
            failed = True
            continue
        h = env.header
        key = (h.device_id, h.stream)
        first, last = (env.gap.first_seq, env.gap.last_seq) if env.gap else (h.batch_seq,) * 2
        if seen.covered(key, first, last):
            print(f"{path}: duplicate of sequences {first}..{last}, skipped", file=sys.stderr)
            continue
        seen.add(key, first, last)
        lines = [gap_json(env, env.gap)] if env.gap else [record_json(env, r) for r in env.records]
        for line in lines:
            print(json.dumps(line, separators=(",", ":")))
    return 1 if failed else 0


# ---------------------------------------------------------------- test vectors

def read_vector(path: str):
    """`name = value` lines (a line starting with '#' is a comment): the single
    fields as a dict, the record.* lines as a list of dicts."""
    fields, records = {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, value = line.partition(" = ")
            if not sep:
                raise ValueError(f"{path}:{n}: not `name = value`")
            name = name.strip()
            if name.startswith("record."):
                field = name[len("record."):]
                if field == "topic":
                    records.append({"property": []})
                if not records:
                    raise ValueError(f"{path}:{n}: {name} before the first record.topic")
                if field == "property":
                    k, eq, v = value.partition("=")
                    if not eq:
                        raise ValueError(f"{path}:{n}: record.property is not key=value")
                    records[-1]["property"].append((k.encode(), v.encode()))
                elif field in records[-1]:
                    raise ValueError(f"{path}:{n}: {name} twice in one record")
                else:
                    records[-1][field] = value
            elif name in fields:
                raise ValueError(f"{path}:{n}: {name} twice")
            else:
                fields[name] = value
    return fields, records


def check_vector(path: str) -> list:
    """Everything that differs between the vector and what decoding gives."""
    errors = []

    def expect(what, got, want):
        if got == want:
            return
        if isinstance(got, str) and isinstance(want, str) and max(len(got), len(want)) > 100:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                      min(len(got), len(want)))
            errors.append(f"{what}: decoded and vector differ from character {at} on: "
                          f"decoded ...{got[at:at + 40]!r}, vector ...{want[at:at + 40]!r}")
        else:
            errors.append(f"{what}: decoded {got!r}, vector says {want!r}")

    fields, want_records = read_vector(path)
    take = fields.pop  # every field is consumed; leftovers are reported as unchecked
    expect("name", take("name", None), os.path.basename(path).removesuffix(".txt"))
    envelope = bytes.fromhex(take("envelope_hex"))
    private_hex = take("recipient_private_key_hex", None)
    keys = Keyring()
    if private_hex:
        keys.add(X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex)))
    # Signed (version 2): read as the central side does, with the signer's
    # public key enrolled for the device the vector names. Version 1: the
    # same reader, during the transition (unsigned envelopes allowed).
    signer_public_hex = take("signer_public_key_hex", None)
    device_keys = DeviceKeys()
    signer_public = None
    if signer_public_hex:
        signer_public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(signer_public_hex))
        device_keys.enrol(fields["device_id"].encode(), signer_public)
    try:
        env = decode(envelope, keys, require_encryption=private_hex is not None,
                     device_keys=device_keys, allow_unsigned=signer_public is None)
    except Refused as e:
        return errors + [f"envelope_hex refused: {e}"]

    h = env.header
    expect("version", h.version, VERSION_SIGNED if signer_public else VERSION_UNSIGNED)
    expect("verified", env.verified, signer_public is not None)
    expect("flags", h.flags, FLAG_ENCRYPTED if private_hex else 0)
    expect("device_id", h.device_id.decode(), take("device_id"))
    expect("stream", h.stream.decode(), take("stream"))
    for name in ("batch_seq", "event_count", "first_event_at", "last_event_at", "codec"):
        expect(name, getattr(h, name), int(take(name)))
    expect("dict_id", h.dict_id, int(take("dict_id", "0")))
    expect("raw_len", h.raw_len, len(env.raw_body))
    expect("raw_body_hex", env.raw_body.hex(), take("raw_body_hex"))
    # Informational: zstd's output may differ between versions, its format does not.
    take("zstd_level", None)
    take("zstd_version", None)

    expect("record count", len(env.records), len(want_records))
    for i, (got, want) in enumerate(zip(env.records, want_records)):
        w = dict(want)
        expect(f"record {i} topic", got.topic.decode(), w.pop("topic"))
        expect(f"record {i} received_at", got.received_at, int(w.pop("received_at")))
        expect(f"record {i} qos", got.qos, int(w.pop("qos")))
        expect(f"record {i} content_type", got.content_type.decode(), w.pop("content_type", ""))
        expect(f"record {i} properties", got.properties, w.pop("property"))
        if "payload_hex" in w:
            expect(f"record {i} payload", got.payload.hex(), w.pop("payload_hex"))
        else:
            expect(f"record {i} payload", got.payload.decode(), w.pop("payload"))
        errors += [f"record {i}: record.{k} not checked by this script" for k in w]

    if private_hex:
        # Recompute every intermediate value of "Encryption" from the vector's inputs.
        t = env.trace
        recipient = X25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex))
        ephemeral = X25519PrivateKey.from_private_bytes(bytes.fromhex(take("ephemeral_private_key_hex")))
        recipient_pub, ephemeral_pub = public_raw(recipient), public_raw(ephemeral)
        expect("recipient_public_key_hex", recipient_pub.hex(), take("recipient_public_key_hex"))
        expect("key_id_hex (recomputed)", key_id_of(recipient_pub).hex(), fields["key_id_hex"])
        expect("key_id_hex (header)", h.key_id.hex(), take("key_id_hex"))
        expect("ephemeral_public_key_hex (recomputed)", ephemeral_pub.hex(),
               fields["ephemeral_public_key_hex"])
        expect("ephemeral_public_key_hex (body)", t["ephemeral_public"].hex(),
               take("ephemeral_public_key_hex"))
        shared = bytes.fromhex(take("shared_secret_hex"))
        expect("shared_secret_hex (recipient side)", t["shared"], shared)
        expect("shared_secret_hex (ephemeral side)",
               ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_pub)), shared)
        wrap_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_pub + recipient_pub,
                        info=HKDF_INFO).derive(shared)
        expect("wrap_key_hex (recomputed)", wrap_key.hex(), fields["wrap_key_hex"])
        expect("wrap_key_hex (decoder)", t["wrap_key"].hex(), take("wrap_key_hex"))
        expect("data_key_hex", t["data_key"].hex(), take("data_key_hex"))
        expect("nonce_hex", t["nonce"].hex(), take("nonce_hex"))
        errors += check_tamper_sealed(envelope, h, keys)
        # Another key pair's reader cannot open it.
        other = Keyring()
        other.add(X25519PrivateKey.from_private_bytes(bytes(range(32))))
        errors += expect_refused("decoding with another key", envelope, other, "unknown key")
    else:
        expect("key_id", h.key_id, bytes(8))
        errors += expect_refused("requiring encryption", envelope, keys, "requires encryption",
                                 require_encryption=True)

    if signer_public:
        # Every value of the signature block, recomputed from the signer's
        # private key: Ed25519 (RFC 8032) is deterministic.
        signer = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(take("signer_private_key_hex")))
        expect("signer_public_key_hex (from the private key)",
               ed25519_raw(signer.public_key()).hex(), signer_public_hex)
        key_id = take("signer_key_id_hex")
        expect("signer_key_id_hex (recomputed)", key_id_of(bytes.fromhex(signer_public_hex)).hex(),
               key_id)
        expect("signer_key_id_hex (envelope)", h.signer_key_id.hex(), key_id)
        signature = take("signature_hex")
        expect("signature_hex (envelope)", h.signature.hex(), signature)
        expect("signature_hex (recomputed)", signer.sign(h.signed_part(envelope)).hex(), signature)
        errors += check_identity_refusals(envelope, h, keys, signer_public)
        errors += check_tamper_signed(envelope, h, keys, device_keys)
    else:
        errors += expect_refused("reading version 1 with device keys", envelope, keys, "unsigned",
                                 device_keys=device_keys)

    errors += check_bit_flips(envelope, keys, device_keys, signer_public is None)
    errors += [f"field {k} not checked by this script" for k in fields]
    return errors


def expect_refused(what, env, keys, reason, require_encryption=False, device_keys=None,
                   allow_unsigned=False) -> list:
    try:
        decode(env, keys, require_encryption=require_encryption, device_keys=device_keys,
               allow_unsigned=allow_unsigned)
    except Refused as e:
        if e.reason == reason or reason in str(e):
            return []
        return [f"{what}: refused for {e} ({e.reason}), expected {reason!r}"]
    return [f"{what}: decoded, expected a refusal ({reason})"]


def first_steps(env: bytes) -> str:
    """The reason steps 1 to 5 give an envelope that had a valid CRC before
    one of its bytes changed: only magic, version, flags and the lengths are
    read before the CRC, so any other change is the CRC's to find."""
    if env[:4] != MAGIC:
        return "malformed"
    if env[4] not in (VERSION_UNSIGNED, VERSION_SIGNED):
        return "unknown_version"
    if env[5] & ~KNOWN_FLAGS:
        return "unknown_flags"
    header_len, body_len = struct.unpack_from("<H", env, 6)[0], struct.unpack_from("<I", env, 50)[0]
    device_len = env[58]
    if 59 + device_len >= len(env):
        return "malformed"
    stream_len = env[59 + device_len]
    if not device_len or not stream_len or 60 + device_len + stream_len > header_len:
        return "malformed"
    block = SIGNATURE_BLOCK if env[4] == VERSION_SIGNED else 0
    if len(env) != header_len + body_len + block + 4:
        return "malformed"
    return "checksum"


def check_bit_flips(env: bytes, keys: Keyring, device_keys: DeviceKeys,
                    allow_unsigned: bool) -> list:
    """Every single-bit change is refused for the first step that catches it
    (the order of "What a reader does"), and every cut is refused."""
    errors = []
    for bit in range(len(env) * 8):
        bad = bytearray(env)
        bad[bit // 8] ^= 1 << (bit % 8)
        want = first_steps(bytes(bad))
        try:
            decode(bytes(bad), keys, device_keys=device_keys, allow_unsigned=allow_unsigned)
            errors.append(f"flipping bit {bit % 8} of byte {bit // 8} still decodes")
        except Refused as e:
            if e.reason != want:
                errors.append(f"flipping bit {bit % 8} of byte {bit // 8}: refused for {e} "
                              f"({e.reason}), expected {want}")
    for n in range(len(env)):
        try:
            decode(env[:n], keys, device_keys=device_keys, allow_unsigned=allow_unsigned)
            errors.append(f"the first {n} bytes alone decode")
        except Refused:
            pass
    return errors


def with_crc(data: bytes) -> bytes:
    """`data` with its CRC-32C appended: a forgery, not damage."""
    return bytes(data) + struct.pack("<I", crc32c(data))


def check_tamper_sealed(env: bytes, h: Header, keys: Keyring) -> list:
    """Sealed: every single-bit change of the header or the body with the CRC
    fixed up is still refused, by the header checks or a GCM tag, even by a
    reader that checks no signature."""
    errors = []
    for bit in range((h.header_len + h.body_len) * 8):
        bad = bytearray(env[:-4])
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            decode(with_crc(bad), keys)
            errors.append(f"forgery: flipping bit {bit % 8} of byte {bit // 8} "
                          "(CRC fixed) still decodes")
        except Refused:
            pass
    return errors


def check_tamper_signed(env: bytes, h: Header, keys: Keyring, device_keys: DeviceKeys) -> list:
    """Signed: every single-bit change of the signed part or of the signature,
    with the CRC fixed up, is refused no later than the identity check (step
    6): by the header checks before it, or else as bad_signature (wrong_key
    for a changed signer_key_id: the device has another key enrolled)."""
    errors = []
    key_id_at = h.header_len + h.body_len
    signature_at = key_id_at + SIGNER_KEY_ID_LEN
    for bit in range((len(env) - 4) * 8):
        at = bit // 8
        bad = bytearray(env[:-4])
        bad[at] ^= 1 << (bit % 8)
        where = f"bit {bit % 8} of byte {at}"
        try:
            decode(with_crc(bad), keys, device_keys=device_keys)
        except Refused as e:
            if e.after_identity:
                errors.append(f"forgery: flipping {where} (CRC fixed) passed the identity "
                              f"check; refused later for {e}")
            else:
                want = first_steps(with_crc(bad))
                if want == "checksum":  # steps 1 to 5 pass: only the signature tells
                    want = "wrong_key" if key_id_at <= at < signature_at else "bad_signature"
                if e.reason != want:
                    errors.append(f"forgery: flipping {where} (CRC fixed) refused for {e} "
                                  f"({e.reason}), expected {want}")
            continue
        errors.append(f"forgery: flipping {where} (CRC fixed) still decodes")
    return errors


def check_identity_refusals(env: bytes, h: Header, keys: Keyring,
                            signer: Ed25519PublicKey) -> list:
    """The signed vector against registries that must refuse it, each refusal
    with its reason; the registry read from enrolment files as a reader's
    --device-keys directory holds them."""
    errors = []
    device = h.device_id
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()

    def registry(*entries):
        r = DeviceKeys()
        for device_id, key, revoked in entries:
            r.enrol(device_id, key, revoked)
        return r

    for what, r, reason in (
            ("no key enrolled", registry(), "unknown_device"),
            ("the key enrolled for another device", registry((b"site-0002", signer, False)),
             "wrong_key"),
            ("another key enrolled for the device", registry((device, other, False)), "wrong_key"),
            ("the key revoked", registry((device, signer, True)), "revoked_key")):
        errors += expect_refused(what, env, keys, reason, device_keys=r)

    # The signature stripped and the version byte set to 1: refused as
    # unsigned; during the transition a sealed one still fails its tags (the
    # version byte is associated data).
    downgraded = bytearray(env[:h.header_len + h.body_len])
    downgraded[4] = VERSION_UNSIGNED
    downgraded = with_crc(downgraded)
    errors += expect_refused("the signature stripped", downgraded, keys, "unsigned",
                             device_keys=registry((device, signer, False)))
    if h.flags & FLAG_ENCRYPTED:
        errors += expect_refused("the signature stripped, unsigned allowed", downgraded, keys,
                                 "decrypt_failed", device_keys=registry((device, signer, False)),
                                 allow_unsigned=True)

    # A --device-keys directory: enrolled, then the same key also in revoked/.
    pem = signer.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "site.pub"), "wb") as f:
            f.write(ENROLMENT_PREFIX + device + b"\n" + pem)
        with open(os.path.join(d, "notes.txt"), "wb") as f:
            f.write(b"not an enrolment file: ignored\n")
        r = DeviceKeys()
        problems = r.load_dir(d)
        errors += [f"device keys directory: {p}" for p in problems]
        try:
            if not decode(env, keys, device_keys=r).verified:
                errors.append("device keys directory: decoded but not verified")
        except Refused as e:
            errors.append(f"device keys directory: refused for {e}")
        os.mkdir(os.path.join(d, "revoked"))
        shutil.copy(os.path.join(d, "site.pub"), os.path.join(d, "revoked", "site.pub"))
        r = DeviceKeys()
        errors += [f"device keys directory: {p}" for p in r.load_dir(d)]
        errors += expect_refused("device keys directory, key in revoked/ too", env, keys,
                                 "revoked_key", device_keys=r)
    return errors


def check_vectors(paths) -> int:
    failed = False
    for path in paths:
        try:
            errors = check_vector(path)
        except (OSError, ValueError, KeyError) as e:
            errors = [f"cannot check: {type(e).__name__}: {e}"]
        if errors:
            failed = True
            print(f"FAIL {path}")
            for e in errors:
                print(f"  {e}")
        else:
            print(f"OK {path}")
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check-vector", action="store_true",
                   help="FILEs are tests/vectors/*.txt: check decoding against them")
    p.add_argument("--private-key", action="append", default=[], metavar="PEM",
                   help="PKCS #8 X25519 private key (repeatable)")
    p.add_argument("--dict-dir", metavar="DIR", help="zstd dictionaries, found by their id")
    p.add_argument("--require-encryption", action="store_true",
                   help="refuse batches that are not encrypted")
    p.add_argument("--device-keys", metavar="DIR",
                   help="enrolled device keys: DIR/*.pub enrolment files, revoked ones in "
                        "DIR/revoked/*.pub. Every envelope must be signed (format version 2) by "
                        "a key enrolled for the device it names. Without it a version 2 "
                        "envelope decodes with its signature NOT checked")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="with --device-keys, also decode unsigned envelopes (format version 1) "
                        "during the transition")
    p.add_argument("files", nargs="+", metavar="FILE")
    args = p.parse_args()
    if args.allow_unsigned and not args.device_keys:
        p.error("--allow-unsigned needs --device-keys (without it nothing is checked)")
    if args.check_vector:
        return check_vectors(args.files)
    return decode_files(args)


if __name__ == "__main__":
    sys.exit(main())
