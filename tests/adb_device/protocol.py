"""The ADB wire format as a device sees it: 24-byte message headers, CNXN banners, RSA token auth.

A message is six little-endian uint32 (command, arg0, arg1, data length, data checksum, command ^
0xffffffff) followed by the data (``protocol.txt`` in AOSP's adb sources). The checksum is the byte
sum of the data; protocol version 0x01000001 lets both sides skip it, so it is only checked when the
connection negotiated 0x01000000 (adb-shell), but always filled in (adb-shell checks every packet).
"""
from __future__ import annotations

import base64
import socket
import struct
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024

AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
TOKEN_SIZE = 20  # adbd signs a SHA-1-sized random token: PKCS#1 v1.5 over a "prehashed" SHA-1

_HEADER = struct.Struct("<6I")
# android_pubkey.h: modulus size in words, n0inv, modulus (LE), rr (LE), exponent; 2048-bit keys.
_PUBKEY = struct.Struct("<II256s256sI")


class Packet(NamedTuple):
    command: bytes
    arg0: int
    arg1: int
    data: bytes


def _wire(command: bytes) -> int:
    return struct.unpack("<I", command)[0]


def pack(command: bytes, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    """One message, header and data, ready to send."""
    cmd = _wire(command)
    return _HEADER.pack(cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + data


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from ``sock``, or None once the peer has closed it."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class ProtocolError(Exception):
    """The host sent something that is not an ADB message."""


def read_packet(sock: socket.socket, check_sum: bool) -> Packet | None:
    """The next message from the host, or None when it hung up."""
    header = recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    cmd, arg0, arg1, length, data_sum, magic = _HEADER.unpack(header)
    if magic != cmd ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic in header {header.hex()}")
    if length > 1024 * 1024:
        raise ProtocolError(f"payload of {length} bytes exceeds the maximum")
    data = recv_exact(sock, length) if length else b""
    if data is None:
        return None
    if check_sum and sum(data) & 0xFFFFFFFF != data_sum:
        raise ProtocolError("data checksum mismatch")
    return Packet(struct.pack("<I", cmd), arg0, arg1, data)


def device_banner(properties: dict[str, str], features: tuple[str, ...]) -> bytes:
    """The CNXN payload adbd sends: ``device::key=value;...;features=a,b``."""
    fields = [f"{k}={v}" for k, v in properties.items()] + [f"features={','.join(features)}"]
    return ("device::" + ";".join(fields)).encode()


def decode_public_key(payload: bytes) -> rsa.RSAPublicKey:
    """The key in an AUTH RSAPUBLICKEY payload: base64 of ``android_pubkey`` then `` user@host``, NUL-ended."""
    text = payload.rstrip(b"\0").split(b" ", 1)[0]
    raw = base64.b64decode(text)
    words, _n0inv, modulus, _rr, exponent = _PUBKEY.unpack(raw[: _PUBKEY.size])
    if words != 64:
        raise ProtocolError(f"public key has {words} modulus words, not 64 (2048 bits)")
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()


def signature_matches(key: rsa.RSAPublicKey, token: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s PKCS#1 v1.5 signature of ``token`` taken as a SHA-1 digest."""
    try:
        key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    except (InvalidSignature, ValueError):
        return False
    return True
