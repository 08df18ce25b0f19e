"""ADB connections to Android devices through ``adb-shell``: TCP ``HOST:PORT``, or USB with the ``usb`` extra.

No ``adb`` server is involved: edgeopt speaks the ADB protocol itself, with the user's key from
``~/.android/adbkey`` (made if absent, in the ``adb`` tool's format, so a phone that trusts one trusts
the other). Every failure surfaces as a ``DeviceError`` whose message is one line naming the device,
what went wrong (unreachable, unauthorized, offline, timed out, connection lost) and what to do.
"""
from __future__ import annotations

import base64
import getpass
import io
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from adb_shell import exceptions as adb_errors
from adb_shell.adb_device import AdbDevice, AdbDeviceUsb
from adb_shell.transport.tcp_transport import TcpTransport
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from edgeopt.errors import DeviceError, first_line
from edgeopt.fileio import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_TCP_PORT = 5555
DEFAULT_TIMEOUT_S = 10.0
# How long a phone may show its "Allow USB debugging?" prompt before we call it unauthorized.
DEFAULT_AUTH_TIMEOUT_S = 30.0
_ANDROID_PUBKEY = struct.Struct("<II256s256sI")  # android_pubkey.h, 2048-bit RSA
_USB_EXTRA = "pip install 'adb-shell[usb]==0.4.4'"


class DeviceUnavailableError(DeviceError):
    """A device that cannot be used now; ``state`` is ``unreachable``, ``unauthorized`` or ``offline``."""

    def __init__(self, state: str, message: str) -> None:
        self.state = state
        super().__init__(message)


@dataclass(frozen=True)
class DeviceInfo:
    """One device as ``list_devices`` found it.

    Attributes:
        serial: ``HOST:PORT`` for TCP, the USB serial number otherwise.
        transport: ``"tcp"`` or ``"usb"``.
        state: ``"device"`` (usable), ``"unauthorized"``, ``"offline"`` or ``"unreachable"``.
        detail: The model name for a usable device, else why it is not usable.
    """

    serial: str
    transport: str
    state: str
    detail: str


# Keys ---------------------------------------------------------------------------------------------


def default_key_path() -> Path:
    """Where the ``adb`` tool keeps the user's private key: ``$ANDROID_USER_HOME/adbkey`` or ``~/.android/adbkey``."""
    home = os.environ.get("ANDROID_USER_HOME")
    return Path(home) / "adbkey" if home else Path.home() / ".android" / "adbkey"


def ensure_adb_key(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the private key's path, creating the key pair first if it does not exist.

    The files match what ``adb`` writes: ``adbkey`` is an unencrypted PKCS#8 PEM RSA-2048 key
    (mode 0600), ``adbkey.pub`` is base64 of Android's ``RSAPublicKey`` struct then `` user@host``.
    A missing ``.pub`` beside an existing key is rewritten from the key.

    Raises:
        DeviceError: The key cannot be read or written.
    """
    key_path = Path(path) if path is not None else default_key_path()
    try:
        if not key_path.exists():
            key_path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            atomic_write_bytes(key_path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
                mode=0o600)  # a private key stays private, as adb keeps it
            log.info("created ADB key %s", key_path)
        pub_path = key_path.with_name(key_path.name + ".pub")
        if not pub_path.exists():
            atomic_write_text(pub_path, public_key_text(_load_key(key_path).public_key()))
    except OSError as err:
        raise DeviceError(f"cannot create the ADB key {key_path}: {err.strerror or err}") from err
    return key_path


def public_key_text(key: rsa.RSAPublicKey) -> str:
    """``key`` as an ``adbkey.pub`` line: base64 of Android's ``RSAPublicKey`` struct, a space, ``user@host``."""
    numbers = key.public_numbers()
    n0inv = (-pow(numbers.n, -1, 1 << 32)) % (1 << 32)  # Montgomery constant -1/n mod 2^32
    rr = pow(2, 2 * 2048, numbers.n)  # Montgomery R^2 mod n
    raw = _ANDROID_PUBKEY.pack(64, n0inv, numbers.n.to_bytes(256, "little"), rr.to_bytes(256, "little"), numbers.e)
    return f"{base64.b64encode(raw).decode()} {_user()}@{socket.gethostname() or 'unknown'}"


def _user() -> str:
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise DeviceError(f"cannot read the ADB key {path}: {first_line(err)}; delete it and its .pub to "
                          "have a new one made (the phone will ask to allow it)") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DeviceError(f"the ADB key {path} is not an RSA key; delete it and its .pub to have a new one made")
    return key


class _Signer:
    """An adb-shell signer: signs the device's token as adbd verifies it (PKCS#1 v1.5, "prehashed" SHA-1)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = _load_key(path)
        self._public = public_key_text(self._key.public_key())

    def Sign(self, data: bytes) -> bytes:  # noqa: N802 - adb-shell's signer interface
        return self._key.sign(data, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))

    def GetPublicKey(self) -> str:  # noqa: N802 - adb-shell's signer interface
        return self._public


def _signers(key_path: Path | None) -> list[_Signer]:
    """The user's key, then ``$ADB_VENDOR_KEYS`` (files, or folders of ``*.adb_key``), as ``adb`` reads them."""
    paths = [ensure_adb_key(key_path)]
    for entry in filter(None, os.environ.get("ADB_VENDOR_KEYS", "").split(":")):
        folder = Path(entry)
        paths += sorted(folder.glob("*.adb_key")) if folder.is_dir() else [folder]
    return [_Signer(p) for p in paths]


# Transports ---------------------------------------------------------------------------------------


class _TcpTransport(TcpTransport):
    """adb-shell's TCP transport, except that a closed socket is an error, not endless empty reads."""

    def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
        data = super().bulk_read(numbytes, transport_timeout_s)
        if not data:
            raise ConnectionResetError("the device closed the connection")
        return data


def tcp_address(serial: str) -> tuple[str, int] | None:
    """``(host, port)`` for a TCP serial (``HOST:PORT``, or a bare IPv4 address on port 5555); None for USB."""
    host, sep, port = serial.rpartition(":")
    if sep and host and port.isdigit():
        return host.strip("[]"), int(port)
    if serial.count(".") == 3 and serial.replace(".", "").isdigit():
        return serial, DEFAULT_TCP_PORT
    return None


def usb_unavailable_reason() -> str | None:
    """Why USB cannot be used here (the extra or libusb missing), or None when it can."""
    try:
        import usb1  # noqa: F401 - only probing that the optional dependency loads
    except ImportError:
        return f"USB support is not installed: {_USB_EXTRA}"
    except OSError:
        return "USB support needs libusb-1.0 (e.g. apt-get install libusb-1.0-0)"
    return None


def _usb_serials(timeout_s: float) -> list[str]:
    from adb_shell.transport.usb_transport import UsbTransport

    try:
        return [t.serial_number for t in UsbTransport.find_all_adb_devices(default_transport_timeout_s=timeout_s)]
    except Exception as err:  # libusb reports access problems with its own exception types
        log.warning("cannot list USB devices: %s", first_line(err))
        return []


# Connections --------------------------------------------------------------------------------------


@contextmanager
def _device_errors(serial: str, action: str, timeout_s: float) -> Iterator[None]:
    """Turn what adb-shell and the socket raise into one-line DeviceErrors."""
    try:
        yield
    except DeviceError:
        raise
    except (adb_errors.AdbTimeoutError, adb_errors.TcpTimeoutException, TimeoutError) as err:
        raise DeviceError(f"{serial} did not answer within {timeout_s:g} s while {action}; check that it is awake "
                          "and still connected, or allow a longer timeout") from err
    except (adb_errors.PushFailedError, adb_errors.AdbCommandFailureException) as err:
        raise DeviceError(f"{serial} refused {action}: {_reason(err)}") from err
    except (adb_errors.InvalidChecksumError, adb_errors.InvalidCommandError, adb_errors.InvalidResponseError,
            struct.error, KeyError, ValueError) as err:  # adb-shell meets unknown message ids with these
        raise DeviceError(f"protocol error from {serial} while {action}: {first_line(err)}; "
                          "reconnect and retry") from err
    except OSError as err:
        raise DeviceError(f"lost the connection to {serial} while {action} ({err.strerror or first_line(err)}); "
                          "reconnect the device and retry") from err


def _reason(err: Exception) -> str:
    arg = err.args[0] if err.args else err
    if isinstance(arg, (bytes, bytearray)):
        arg = arg.decode(errors="replace")
    return first_line(Exception(arg))


class AdbConnection:
    """An open ADB connection to one device. Every method raises ``DeviceError`` on failure.

    After a failed call the connection is closed (after a timeout that also makes the device end the
    command); the next call reconnects, so cleanup can still run after a dropped transfer.
    """

    def __init__(self, serial: str, opener: Callable[[], AdbDevice], timeout_s: float) -> None:
        self.serial = serial
        self.timeout_s = timeout_s
        self._opener = opener
        self._device: AdbDevice | None = None

    def __enter__(self) -> AdbConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect now if not connected."""
        if self._device is None:
            self._device = self._opener()

    def close(self) -> None:
        """Close the connection; a later call reconnects."""
        device, self._device = self._device, None
        if device is not None:
            device.close()

    @contextmanager
    def _call(self, action: str, timeout_s: float) -> Iterator[AdbDevice]:
        self.open()
        assert self._device is not None
        try:
            with _device_errors(self.serial, action, timeout_s):
                yield self._device
        except DeviceError:
            self.close()
            raise

    def shell(self, command: str, *, timeout_s: float | None = None, what: str | None = None) -> str:
        """Run ``command`` with the legacy ``shell:`` service: stdout and stderr merged, no exit status.

        ``edgeopt.runtimes.android.shell.run`` adds the exit status. ``timeout_s`` bounds each wait for
        the device (so a silent command fails after it) and the whole command; ``what`` describes the
        command in error messages (default: its first line).
        """
        t = timeout_s or self.timeout_s
        with self._call(what or f"running `{brief(command)}`", t) as device:
            return device.shell(command, transport_timeout_s=t, read_timeout_s=t, timeout_s=t)

    def push(self, local: str | os.PathLike[str], remote: str, *, mode: int = 0o644,
             timeout_s: float | None = None) -> None:
        """Send the file ``local`` to ``remote`` with the sync protocol (SEND/DATA/DONE).

        ``timeout_s`` bounds each wait for the device, not the whole transfer.
        """
        t = timeout_s or self.timeout_s
        with self._call(f"pushing {Path(local).name} to {remote}", t) as device:
            device.push(os.fspath(local), remote, st_mode=stat.S_IFREG | mode, transport_timeout_s=t, read_timeout_s=t)

    def pull(self, remote: str, *, timeout_s: float | None = None) -> bytes:
        """The contents of the device file ``remote`` (sync RECV)."""
        t = timeout_s or self.timeout_s
        buffer = io.BytesIO()
        with self._call(f"pulling {remote}", t) as device:
            device.pull(remote, buffer, transport_timeout_s=t, read_timeout_s=t)
        return buffer.getvalue()


def brief(command: str, limit: int = 60) -> str:
    """The command as an error message quotes it: its first line, cut to ``limit`` characters."""
    line = command.strip().split("\n", 1)[0]
    return line if len(line) <= limit and line == command.strip() else line[:limit] + " …"


def _handshake(serial: str, make: Callable[[], AdbDevice], signers: list[_Signer], timeout_s: float,
               auth_timeout_s: float) -> AdbDevice:
    """Open the transport and run CNXN/AUTH, naming the state adb would show when it fails."""
    prompted: list[bool] = []
    device = make()
    try:
        device.connect(rsa_keys=signers, transport_timeout_s=timeout_s, read_timeout_s=timeout_s,
                       auth_timeout_s=auth_timeout_s, auth_callback=lambda _: prompted.append(True))
    except ConnectionRefusedError as err:
        raise DeviceUnavailableError("unreachable", f"cannot reach {serial}: connection refused; enable ADB over TCP "
                                "on the phone (`adb tcpip 5555` over USB) and check the address") from err
    except (adb_errors.AdbTimeoutError, adb_errors.TcpTimeoutException, adb_errors.DeviceAuthError,
            ConnectionResetError) as err:
        device.close()
        if prompted or isinstance(err, adb_errors.DeviceAuthError):
            key = signers[0].path.with_name(signers[0].path.name + ".pub") if signers else "no key"
            raise DeviceUnavailableError("unauthorized", f"{serial} is unauthorized: it did not accept this computer's "
                                    f"key ({key}); unlock the phone, tap Allow on the USB debugging prompt, "
                                    "and retry") from err
        raise DeviceUnavailableError("offline", f"{serial} is offline: it accepted the connection but did not complete "
                                f"the ADB handshake within {timeout_s:g} s; reconnect it (or restart adbd by "
                                "toggling USB debugging) and retry") from err
    except (adb_errors.InvalidCommandError, adb_errors.InvalidResponseError, adb_errors.InvalidChecksumError,
            struct.error) as err:
        device.close()
        raise DeviceUnavailableError("offline", f"{serial} does not speak ADB (its answer to the handshake was not "
                                "an ADB packet); check the port (adbd listens on 5555 by default)") from err
    except (TimeoutError, OSError) as err:
        device.close()
        why = "no answer" if isinstance(err, TimeoutError) else (err.strerror or first_line(err))
        raise DeviceUnavailableError("unreachable", f"cannot reach {serial}: {why}; check the address and that the "
                                "phone is on the same network") from err
    return device


def _opener(serial: str, signers: list[_Signer], timeout_s: float, auth_timeout_s: float) -> Callable[[], AdbDevice]:
    address = tcp_address(serial)
    if address is not None:
        make: Callable[[], AdbDevice] = partial(_tcp_device, *address, timeout_s)
    else:
        reason = usb_unavailable_reason()
        if reason is not None:
            raise DeviceError(f"cannot use USB device {serial}: {reason}; or connect over TCP with "
                              "--target adb:HOST:PORT")
        make = partial(_usb_device, serial, timeout_s)
    return partial(_handshake, serial, make, signers, timeout_s, auth_timeout_s)


def _tcp_device(host: str, port: int, timeout_s: float) -> AdbDevice:
    return AdbDevice(_TcpTransport(host, port), timeout_s)


def _usb_device(serial: str, timeout_s: float) -> AdbDevice:
    try:
        return AdbDeviceUsb(serial=serial, default_transport_timeout_s=timeout_s)
    except adb_errors.UsbDeviceNotFoundError as err:
        raise DeviceUnavailableError("unreachable", f"no USB device with serial {serial}; check the cable and that USB "
                                "debugging is on") from err
    except Exception as err:  # libusb reports busy/permission problems with its own exception types
        raise DeviceUnavailableError("unreachable", f"cannot open USB device {serial}: {first_line(err)}; stop any adb "
                                "server holding it (`adb kill-server`) and check udev permissions") from err


def list_devices(serials: Sequence[str] = (), *, usb: bool = True, key_path: str | os.PathLike[str] | None = None,
                 timeout_s: float = 3.0, auth_timeout_s: float = 3.0) -> list[DeviceInfo]:
    """Probe the devices edgeopt can reach: the TCP (or USB) ``serials`` given, plus attached USB devices.

    Each is connected to (the handshake says whether it is usable) and closed again.

    Args:
        serials: Serials to probe, e.g. ``["192.168.1.20:5555"]``; ``$ANDROID_SERIAL`` is added if set.
        usb: Also list attached USB devices (needs the ``usb`` extra; skipped quietly without it).
        key_path: The private key (default ``~/.android/adbkey``).
        timeout_s: Per-device connection timeout.
        auth_timeout_s: How long to wait for a device that shows its key prompt.

    Returns:
        One ``DeviceInfo`` per serial, in the order found.
    """
    wanted = list(dict.fromkeys([*serials, *filter(None, [os.environ.get("ANDROID_SERIAL")])]))
    if usb and usb_unavailable_reason() is None:
        wanted += [s for s in _usb_serials(timeout_s) if s not in wanted]
    key = Path(key_path) if key_path is not None else None
    found = []
    for serial in wanted:
        transport = "tcp" if tcp_address(serial) else "usb"
        try:
            with connect(serial, key_path=key, timeout_s=timeout_s, auth_timeout_s=auth_timeout_s) as conn:
                model = conn.shell("getprop ro.product.model", timeout_s=timeout_s).strip()
            found.append(DeviceInfo(serial, transport, "device", model or "unknown model"))
        except DeviceUnavailableError as err:
            found.append(DeviceInfo(serial, transport, err.state, str(err)))
        except DeviceError as err:
            found.append(DeviceInfo(serial, transport, "offline", str(err)))
    return found


def connect(serial: str | None = None, *, known: Sequence[str] = (), key_path: str | os.PathLike[str] | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S, auth_timeout_s: float = DEFAULT_AUTH_TIMEOUT_S) -> AdbConnection:
    """Connect to one device and complete the ADB handshake.

    Args:
        serial: ``HOST:PORT`` (TCP) or a USB serial. None: ``$ANDROID_SERIAL``, else the only device
            among ``known`` and attached USB devices; several is an error, never a guess.
        known: TCP serials to consider when ``serial`` is None.
        key_path: The private key (default ``~/.android/adbkey``, created if absent).
        timeout_s: Connection and per-answer timeout.
        auth_timeout_s: How long the user has to accept the key prompt on the phone.

    Returns:
        An open connection; close it (or use it as a context manager) when done.

    Raises:
        DeviceError: No device, several devices, or the device is unreachable, unauthorized or offline.
    """
    if serial is None:
        serial = os.environ.get("ANDROID_SERIAL") or _only_device(known, key_path, timeout_s, auth_timeout_s)
    key = Path(key_path) if key_path is not None else None
    conn = AdbConnection(serial, _opener(serial, _signers(key), timeout_s, auth_timeout_s), timeout_s)
    conn.open()
    return conn


def _only_device(known: Sequence[str], key_path: str | os.PathLike[str] | None, timeout_s: float,
                 auth_timeout_s: float) -> str:
    devices = [d for d in list_devices(known, key_path=key_path, timeout_s=timeout_s, auth_timeout_s=auth_timeout_s)
               if d.state != "unreachable"]
    if len(devices) == 1:
        return devices[0].serial
    if len(devices) > 1:
        listed = ", ".join(f"{d.serial} ({d.state})" for d in devices)
        raise DeviceError(f"{len(devices)} devices found ({listed}): choose one with --target adb:SERIAL")
    usb = usb_unavailable_reason()
    hint = f" ({usb})" if usb else ""
    raise DeviceError(f"no Android device found over USB{hint} or TCP; attach one with USB debugging on, or give "
                      "its address with --target adb:HOST:PORT")
