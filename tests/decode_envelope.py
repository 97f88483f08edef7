#!/usr/bin/env python3
"""A decoder of edgesync envelopes written from FORMAT.md alone.

Envelope: a sealed batch of records, one Kafka message centrally. This script
reads them as the central team would, and checks the test vectors:

  decode_envelope.py --check-vector tests/vectors/*.txt
  decode_envelope.py [--private-key PEM]... [--dict-dir DIR] [--require-encryption] FILE...

The second form prints one JSON line per record, or {"gap": {...}} per gap
record. Needs Debian's python3-cryptography and python3-zstandard: run it with
/usr/bin/python3.
"""

import argparse
import base64
import dataclasses
import hashlib
import json
import os
import struct
import sys

try:
    import zstandard
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.exceptions import InvalidTag
except ImportError as e:
    sys.exit(f"decode_envelope.py: {e} (interpreter {sys.executable}). Run script/bootstrap: "
             "this script needs Debian's python3-cryptography and python3-zstandard, "
             "run with /usr/bin/python3.")


class Refused(Exception):
    """The envelope is refused; the message says why."""


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
VERSION = 1
FLAG_ENCRYPTED = 0x01
FLAG_GAP = 0x02
KNOWN_FLAGS = FLAG_ENCRYPTED | FLAG_GAP
FIXED_HEADER = 59            # offsets 0..58: everything up to device_id_len included
MAX_RAW_LEN = 64 << 20       # this reader's limit, the most FORMAT.md allows
SEAL_OVERHEAD = 32 + 32 + 16 + 12 + 16  # ephemeral_public, wrapped_key, wrap_tag, nonce, tag
HKDF_INFO = b"edgesync envelope v1 key wrap"
ZSTD_DICT_MAGIC = b"\x37\xa4\x30\xec"


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
    """First 8 bytes of SHA-256 of the raw 32-byte X25519 public key."""
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


# ---------------------------------------------------------------- envelope

def parse_header(env: bytes) -> Header:
    """Steps 1 to 5 of "What a reader does", then the variable fields."""
    if len(env) < 4 or env[:4] != MAGIC:
        raise Refused("not an edgesync envelope (bad magic)")
    if len(env) < 5:
        raise Refused("corrupt: truncated before the version")
    if env[4] != VERSION:
        raise Refused(f"envelope version {env[4]} (a newer writer?); this reader knows version 1")
    if len(env) < 6:
        raise Refused("corrupt: truncated before the flags")
    if env[5] & ~KNOWN_FLAGS:
        raise Refused(f"unknown flag bits 0x{env[5] & ~KNOWN_FLAGS:02x} in flags 0x{env[5]:02x}")
    if len(env) < FIXED_HEADER:
        raise Refused(f"corrupt: {len(env)} bytes, shorter than a header")
    r = Reader(env, "header")
    r.take(4)
    version, flags, header_len, batch_seq, event_count, first_at, last_at, codec, reserved, \
        dict_id = r.unpack("BBHQIqqBBI")
    key_id = r.take(8)
    body_len, raw_len = r.unpack("II")
    # Step 5: the length, then the CRC, before anything else is believed.
    if len(env) != header_len + body_len + 4:
        raise Refused(f"corrupt: {len(env)} bytes, header_len {header_len} + body_len "
                      f"{body_len} + 4 expected")
    (crc,) = struct.unpack_from("<I", env, len(env) - 4)
    if crc32c(env[:-4]) != crc:
        raise Refused("corrupt: CRC-32C mismatch")
    # The variable part lies within header_len; bytes after it are later fields (skipped).
    h = Reader(env[:header_len], "header")
    h.take(58)
    device_id = h.take(h.unpack("B"))
    stream = h.take(h.unpack("B"))
    if not device_id or not stream:
        raise Refused("corrupt: empty device_id or stream")
    if not 1 <= batch_seq <= 2**63 - 1:
        raise Refused(f"corrupt: batch_seq {batch_seq} outside 1..2^63-1")
    return Header(version, flags, header_len, batch_seq, event_count, first_at, last_at, codec,
                  dict_id, key_id, body_len, raw_len, device_id, stream)


def open_sealed(header: Header, aad: bytes, body: bytes, keys: Keyring, trace: dict) -> bytes:
    """Step 7, "Encryption": the codec's output from a sealed body."""
    if len(body) < SEAL_OVERHEAD:
        raise Refused(f"corrupt: sealed body of {len(body)} bytes, at least {SEAL_OVERHEAD} needed")
    private = keys.keys.get(header.key_id)
    if private is None:
        raise Refused(f"unknown key (key_id {header.key_id.hex()})")
    ephemeral_public = body[0:32]
    wrapped = body[32:80]  # wrapped_key (32) then wrap_tag (16): AESGCM wants them together
    nonce = body[80:92]
    sealed = body[92:]     # ciphertext then tag
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    except ValueError:  # OpenSSL refuses an all-zero result
        shared = bytes(32)
    if shared == bytes(32):
        raise Refused("refused: all-zero X25519 shared secret")
    recipient_public = public_raw(private)
    wrap_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public,
                    info=HKDF_INFO).derive(shared)
    try:
        data_key = AESGCM(wrap_key).decrypt(bytes(12), wrapped, aad)
    except InvalidTag:
        raise Refused("refused: the wrapped data key fails its tag (wrong key or forgery)") from None
    try:
        plain = AESGCM(data_key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise Refused("refused: the sealed body fails its tag (forgery)") from None
    trace.update(recipient_public=recipient_public, ephemeral_public=ephemeral_public,
                 shared=shared, wrap_key=wrap_key, data_key=data_key, nonce=nonce)
    return plain


def decompress(header: Header, data: bytes, dicts: dict) -> bytes:
    """Step 8: the raw body, exactly raw_len bytes."""
    if header.codec == 0:
        if header.dict_id != 0:
            raise Refused(f"corrupt: codec 0 with dict_id {header.dict_id}")
        raw = data
    elif header.codec == 1:
        zdict = None
        if header.dict_id != 0:
            if header.dict_id not in dicts:
                raise Refused(f"no zstd dictionary with id {header.dict_id}")
            zdict = zstandard.ZstdCompressionDict(dicts[header.dict_id])
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as e:
            raise Refused(f"corrupt: not a zstd frame ({e})") from None
        if params.dict_id not in (0, header.dict_id):
            raise Refused(f"corrupt: zstd frame names dictionary {params.dict_id}, "
                          f"header {header.dict_id}")
        # max_output_size binds only frames without a content size: check that first,
        # so a frame never makes this reader allocate more than raw_len.
        if params.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, header.raw_len):
            raise Refused(f"corrupt: zstd frame of {params.content_size} bytes, "
                          f"raw_len {header.raw_len}")
        try:
            d = zstandard.ZstdDecompressor(dict_data=zdict)
            raw = d.decompress(data, max_output_size=header.raw_len, allow_extra_data=False)
        except zstandard.ZstdError as e:
            raise Refused(f"corrupt: zstd: {e}") from None
    else:
        raise Refused(f"unknown codec {header.codec}")
    if len(raw) != header.raw_len:
        raise Refused(f"corrupt: raw body of {len(raw)} bytes, raw_len {header.raw_len}")
    return raw


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
           require_encryption: bool = False) -> Envelope:
    """Steps 1 to 8 of "What a reader does" for one envelope; raises Refused."""
    header = parse_header(env)
    if header.raw_len > MAX_RAW_LEN:  # step 6: before decompressing anything
        raise Refused(f"raw_len {header.raw_len} above this reader's limit of {MAX_RAW_LEN}")
    body = env[header.header_len:header.header_len + header.body_len]
    trace = {}
    if header.flags & FLAG_ENCRYPTED:
        body = open_sealed(header, env[:header.header_len], body, keys or Keyring(), trace)
    else:
        if header.key_id != bytes(8):
            raise Refused("corrupt: key_id set on an envelope that is not encrypted")
        if require_encryption and not header.flags & FLAG_GAP:
            raise Refused("refused: not encrypted, and this reader requires encryption")
    raw = decompress(header, body, dicts or {})
    if header.flags & FLAG_GAP:
        return Envelope(header, raw, [], parse_gap(header, raw), trace)
    return Envelope(header, raw, parse_records(raw, header.event_count), None, trace)


# ---------------------------------------------------------------- de-duplication (step 9, 10)

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


def record_json(h: Header, rec: Record) -> dict:
    out = {}
    text_field(out, "device", h.device_id)
    text_field(out, "stream", h.stream)
    out["batch"] = h.batch_seq
    text_field(out, "topic", rec.topic)
    out["received_at"] = rec.received_at
    out["qos"] = rec.qos
    if rec.content_type:
        text_field(out, "content_type", rec.content_type)
    if rec.properties:
        try:
            out["properties"] = {k.decode("utf-8"): v.decode("utf-8") for k, v in rec.properties}
        except UnicodeDecodeError:
            out["properties_b64"] = [[base64.b64encode(k).decode(), base64.b64encode(v).decode()]
                                     for k, v in rec.properties]
    out["payload_b64"] = base64.b64encode(rec.payload).decode()
    return out


def gap_json(h: Header, gap: Gap) -> dict:
    out = {}
    text_field(out, "device", h.device_id)
    text_field(out, "stream", h.stream)
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
    seen, failed = Seen(), False
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        try:
            env = decode(data, keys, dicts, args.require_encryption)
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
        lines = [gap_json(h, env.gap)] if env.gap else [record_json(h, r) for r in env.records]
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
    try:
        env = decode(envelope, keys, require_encryption=private_hex is not None)
    except Refused as e:
        return errors + [f"envelope_hex refused: {e}"]

    h = env.header
    expect("version", h.version, 1)
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
        errors += check_tamper_sealed(envelope, keys)
        # Another key pair's reader cannot open it.
        other = Keyring()
        other.add(X25519PrivateKey.from_private_bytes(bytes(range(32))))
        errors += expect_refused("decoding with another key", envelope, other, "unknown key")
    else:
        expect("key_id", h.key_id, bytes(8))
        errors += expect_refused("requiring encryption", envelope, keys, "requires encryption",
                                 require_encryption=True)

    errors += check_bit_flips(envelope, keys)
    errors += [f"field {k} not checked by this script" for k in fields]
    return errors


def expect_refused(what, env, keys, reason, require_encryption=False) -> list:
    try:
        decode(env, keys, require_encryption=require_encryption)
    except Refused as e:
        return [] if reason in str(e) else [f"{what}: refused for {e}, expected {reason!r}"]
    return [f"{what}: decoded, expected a refusal ({reason})"]


def check_bit_flips(env: bytes, keys: Keyring) -> list:
    """Every single-bit change and every cut is refused."""
    errors = []
    for bit in range(len(env) * 8):
        bad = bytearray(env)
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            decode(bytes(bad), keys)
            errors.append(f"flipping bit {bit % 8} of byte {bit // 8} still decodes")
        except Refused:
            pass
    for n in range(len(env)):
        try:
            decode(env[:n], keys)
            errors.append(f"the first {n} bytes alone decode")
        except Refused:
            pass
    return errors


def check_tamper_sealed(env: bytes, keys: Keyring) -> list:
    """Sealed: every single-bit change with the CRC fixed up (a forgery, not
    damage) is still refused, by the header checks or a GCM tag."""
    errors = []
    for bit in range((len(env) - 4) * 8):
        bad = bytearray(env[:-4])
        bad[bit // 8] ^= 1 << (bit % 8)
        bad += struct.pack("<I", crc32c(bad))
        try:
            decode(bytes(bad), keys)
            errors.append(f"forgery: flipping bit {bit % 8} of byte {bit // 8} "
                          "(CRC fixed) still decodes")
        except Refused:
            pass
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
    p.add_argument("files", nargs="+", metavar="FILE")
    args = p.parse_args()
    if args.check_vector:
        return check_vectors(args.files)
    return decode_files(args)


if __name__ == "__main__":
    sys.exit(main())
