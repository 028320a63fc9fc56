#!/usr/bin/env python3
"""Writes the seeds of dfukit's fuzz targets into fuzz/seeds/<target>/.

The seeds are the files users have, as their vendors ship them (the repository's examples/
and test fixtures: ST's flashlayouts and STM32 images, an nrfutil package and its init
packet, a .dfu made by `dfukit usb pack`, Intel HEX), plus protocol messages as the peers
send them (Secure DFU requests and responses, SLIP frames, USB/IP requests and replies),
written here from the protocol documents' layouts. Run from the repository root:

    NRFUTIL=target/peers/nrfutil-venv/bin/nrfutil python3 fuzz/seed.py

Deterministic: the nrfutil package is made once and kept (see its section below), so
running it again gives the same files. libFuzzer starts from them and writes what it finds to fuzz/corpus/<target>/
(`scripts/fuzz`), leaving the seeds as they are; both are replayed by
crates/dfukit-fuzz/tests/corpora.rs.
"""
import glob, io, os, shutil, struct, subprocess, sys, tempfile, zipfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
seeds = os.path.join(root, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(seeds, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def copy(target, path):
    with open(os.path.join(root, path), "rb") as f:
        put(target, os.path.basename(path), f.read())


def slip(frame):
    out = bytearray()
    for b in frame:
        out += {0xC0: b"\xdb\xdc", 0xDB: b"\xdb\xdd"}.get(b, bytes([b]))
    return bytes(out) + b"\xc0"


# STM32MP: ST's layouts and the STM32 images of the starter-package tree.
for p in glob.glob(os.path.join(root, "examples/stm32mp/**/*.tsv"), recursive=True):
    copy("flashlayout_tsv", os.path.relpath(p, root))
for p in glob.glob(os.path.join(root, "crates/dfukit-stm32mp/tests/fixtures/layout/*.tsv")):
    copy("flashlayout_tsv", os.path.relpath(p, root))
for p in glob.glob(os.path.join(root, "examples/stm32mp/**/*.stm32"), recursive=True):
    copy("stm32_image", os.path.relpath(p, root))
copy("stm32_image", "examples/stm32mp/images/stm32mp1/fip/fip-stm32mp157f-dk2-optee-usb.bin")

# USB DFU: the .dfu `usb pack` made, a DFU 1.1 file, and the raw binary.
copy("dfu_file", "examples/usb/app.dfu")
with open(os.path.join(root, "examples/usb/config.bin"), "rb") as f:
    cfg = f.read()
body = cfg + struct.pack("<HHHH3sB", 0x2200, 0xDF11, 0x0483, 0x0100, b"UFD", 16)
import zlib
crc = zlib.crc32(body) ^ 0xFFFFFFFF
put("dfu_file", "config-dfu11.bin", body + struct.pack("<I", crc))

# Firmware files: the Nordic example's HEX, and ELF32 files for a Cortex-M (EM_ARM).
copy("firmware_hex", "examples/nordic/app.hex")
put("firmware_hex", "two-segments.hex",
    b":020000040800F2\n:0400000001020304F2\n:020000041FFFDC\n:04C0000055AA55AAE8\n:00000001FF\n")


def elf32(segments):
    phoff, n = 52, len(segments)
    data_at = phoff + 32 * n
    head = bytearray(52)
    head[:7] = b"\x7fELF\x01\x01\x01"
    struct.pack_into("<HHIIIIIHHHHHH", head, 16, 2, 40, 1, segments[0][0], phoff, 0, 0x05000400,
                     52, 32, n, 40, 0, 0)
    ph, blobs, at = bytearray(), bytearray(), data_at
    for paddr, blob in segments:
        ph += struct.pack("<IIIIIIII", 1, at, paddr, paddr, len(blob), len(blob), 5, 4)
        blobs += blob
        at += len(blob)
    return bytes(head + ph + blobs)


put("firmware_elf", "cortex-m.elf", elf32([(0x08000000, bytes(range(64)))]))
put("firmware_elf", "cortex-m-two-loads.elf",
    elf32([(0x00027000, b"\x00\x10\x00\x20" * 8), (0x10001080, b"\xff" * 8)]))

# Nordic Secure DFU: requests as the host sends them, responses as the bootloader answers,
# and the same frames SLIP-encoded as they travel on a serial port.
requests = [b"\x00", b"\x01\x01\x8d\x00\x00\x00", b"\x01\x02\x00\x10\x00\x00",
            b"\x02\x00\x00", b"\x03", b"\x04", b"\x06\x01", b"\x06\x02", b"\x07",
            b"\x08" + bytes(range(32)), b"\x09\x01", b"\x0a", b"\x0b\x00", b"\x0c"]
responses = [b"\x60\x06\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
             b"\x60\x03\x01\x00\x10\x00\x00\x78\x56\x34\x12", b"\x60\x07\x01\x83\x00",
             b"\x60\x04\x0b\x05", b"\x60\x09\x01\x01", b"\x60\x00\x01\x01"]
for i, m in enumerate(requests):
    put("secure_dfu_messages", f"request-{i:02}.bin", m)
for i, m in enumerate(responses):
    put("secure_dfu_messages", f"response-{i:02}.bin", m)
put("slip", "requests.slip", b"".join(slip(m) for m in requests))
put("slip", "responses.slip", b"".join(slip(m) for m in responses))
put("slip", "escapes.slip", slip(b"\xc0\xdb\xc0\xdb\x00") + b"\xdb\x00\xc0")

# USB/IP (protocol 1.1.1, big-endian): list and import requests and replies, and a control
# transfer's CMD_SUBMIT and RET_SUBMIT.
busid = b"1-1".ljust(32, b"\0")
path = b"/sys/devices/dfukit/1-1".ljust(256, b"\0")
device = path + busid + struct.pack(">IIIHHHBBBBBB", 1, 2, 2, 0x0483, 0xDF11, 0x2200, 0, 0, 0, 1, 1, 1)
put("usbip_messages", "op_req_devlist.bin", struct.pack(">HHI", 0x0111, 0x8005, 0))
put("usbip_messages", "op_rep_devlist.bin",
    struct.pack(">HHII", 0x0111, 0x0005, 0, 1) + device + bytes([0xFE, 0x01, 0x02, 0]))
put("usbip_messages", "op_req_import.bin", struct.pack(">HHI", 0x0111, 0x8003, 0) + busid)
put("usbip_messages", "op_rep_import.bin", struct.pack(">HHI", 0x0111, 0x0003, 0) + device)
put("usbip_messages", "op_rep_import_busy.bin", struct.pack(">HHI", 0x0111, 0x0003, 1))
setup = bytes([0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00])
put("usbip_messages", "cmd_submit_get_descriptor.bin",
    struct.pack(">IIIIIIIiii", 1, 1, 0x00010002, 1, 0, 0, 18, 0, 0, 0) + setup)
put("usbip_messages", "cmd_submit_dnload.bin",
    struct.pack(">IIIIIIIiii", 1, 2, 0x00010002, 0, 0, 0, 4, 0, 0, 0)
    + bytes([0x21, 0x01, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00]) + b"\x01\x02\x03\x04")
put("usbip_messages", "ret_submit.bin",
    struct.pack(">IIIIIIIiiii", 3, 1, 0, 0, 0, 0, 18, 0, 0, 0, 0) + bytes(8) + bytes(18))
put("usbip_messages", "cmd_unlink.bin", struct.pack(">IIIIII", 2, 3, 0x00010002, 0, 0, 1) + bytes(24))

# USB descriptors as the libusb shim reads them from a device: the STM32F4 ROM's device
# descriptor, and configuration descriptors (DFU interface with two alternate settings and
# its functional descriptor; a vendor interface with a bulk endpoint and class descriptors).
def config(body, n_if):
    return struct.pack("<BBHBBBBB", 9, 2, 9 + len(body), n_if, 1, 0, 0xC0, 50) + body
def interface(num, alt, n_ep, cls, sub, proto, string):
    return struct.pack("<BBBBBBBBB", 9, 4, num, alt, n_ep, cls, sub, proto, string)
dfu_functional = bytes([9, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x08, 0x1A, 0x01])
put("libusb_descriptors", "stm32f4-device.bin",
    struct.pack("<BBHBBBBHHHBBBB", 18, 1, 0x0200, 0, 0, 0, 64, 0x0483, 0xDF11, 0x2200, 1, 2, 3, 1))
put("libusb_descriptors", "stm32f4-config.bin", config(
    interface(0, 0, 0, 0xFE, 1, 2, 4) + interface(0, 1, 0, 0xFE, 1, 2, 5) + dfu_functional, 1))
put("libusb_descriptors", "vendor-bulk-config.bin", config(
    bytes([4, 0xFF, 0xAA, 0xBB]) + interface(0, 0, 0, 0xFE, 1, 2, 4) + interface(0, 1, 0, 0xFE, 1, 2, 0)
    + dfu_functional + interface(1, 0, 1, 0xFF, 0, 0, 0)
    + bytes([7, 5, 0x81, 2, 64, 0, 0]) + bytes([3, 0x25, 7]), 2))

# The DfuSe device core: op sequences as crates/dfukit-fuzz/src/dfuse_device.rs reads them
# (op byte % 8: 0 request, 1 GETSTATUS, 2 complete flash op, 3 advance time, 4 bus reset,
# 5 select alt, 6 raw setup, 7 DfuSe command), for the download dfu-util makes: set the
# address, erase the sector, write block 2, complete each flash operation, end the download.
status, done, tick = [1], [2, 0], [3, 1]
download = (
    [7, 0, 0, 0] + status + status          # SET_ADDRESS 0x08000000
    + [7, 1, 0, 0] + status + done + status  # ERASE 0x08000000
    + [0, 1, 2, 0, 4] + list(range(36))      # DNLOAD block 2, 36 bytes
    + status + tick + done + status + status
    + [0, 1, 0, 0, 0] + status + status      # zero-length DNLOAD: leave
)
put("dfuse_device", "download.bin", bytes(download))
put("dfuse_device", "failed-erase-then-write.bin", bytes(
    [7, 1, 0, 0] + status + [2, 1] + status + [0, 4, 0, 0, 0] + [0, 1, 2, 0, 1] + list(range(9))
    + status + tick + done + status))
put("dfuse_device", "reset-mid-erase.bin", bytes([7, 1, 0, 0] + status + [4] + done + status))

# The Secure DFU bootloader core: scripts as crates/dfukit-fuzz/src/secure_dfu_device.rs
# reads them (first byte: bit 0 signed, bit 1 bank 1 on QSPI; then op byte % 6: 0 raw frame,
# 1 common frame, 2 complete flash op, 3 advance time, 4 power cut, 5 common frame on BLE).
def raw(frame, ble=False):
    return [0, len(frame)] + list(frame) + [1 if ble else 0]
sel_cmd, crc_get, execute = [1, 0, 0], [1, 3], [1, 4]
def nordic_script(mode, init):
    s = [mode] + raw(b"\x02\x00\x00") + sel_cmd + raw(b"\x01\x01" + struct.pack("<I", len(init)))
    s += raw(b"\x08" + init) + crc_get + execute
    s += [2, 0] * 8 + raw(b"\x06\x02") + raw(b"\x01\x02" + struct.pack("<I", 4096))
    s += [2, 0] * 8 + sum((raw(b"\x08" + bytes(range(i, i + 32))) for i in range(0, 256, 32)), []) + [2, 0, 3, 1, 2, 0] * 6
    s += crc_get + execute + [2, 0, 3, 1] * 8
    return bytes(s)

# The STM32MP device core: a flashlayout (two-byte length first) sent to U-Boot on alt 0,
# then a script as crates/dfukit-fuzz/src/stm32prog_device.rs reads it (op byte % 6: 0, 1
# write, 2 manifest, 3 read, 4 DETACH, 5 phase record): DETACH into the second enumeration,
# then 256 bytes and a manifest to each of the first alternate settings, as
# STM32CubeProgrammer sends the partitions.
layouts = sorted(glob.glob(os.path.join(root, "examples/stm32mp/**/*.tsv"), recursive=True)
                 + glob.glob(os.path.join(root, "crates/dfukit-stm32mp/tests/fixtures/layout/*.tsv")))
for p in layouts:
    with open(p, "rb") as f:
        tsv = f.read()
    script = [4, 5]
    for alt in range(6):
        script += [0, alt, 1, 16] + [alt] * 256 + [2, alt, 5]
    put("stm32prog_device", os.path.basename(p) + ".script",
        struct.pack("<H", len(tsv)) + tsv + bytes(script + [4]))

# An nrfutil package and its init packet, made by nrfutil itself from the example app, once:
# nrfutil signs with a fresh ECDSA nonce and stamps the zip with the time, so a package
# already in fuzz/seeds/ is kept (delete fuzz/seeds/nordic_package/ to make it again), and
# every other seed stays byte for byte what this script wrote before.
zpath = os.path.join(seeds, "nordic_package", "app.zip")
if not os.path.exists(zpath):
    nrfutil = os.environ.get("NRFUTIL")
    if not nrfutil:
        sys.exit("seed.py: set NRFUTIL to nrfutil 6.1.7 (scripts/install-peers installs it)")
    os.makedirs(os.path.dirname(zpath), exist_ok=True)
    subprocess.run([nrfutil, "pkg", "generate", "--hw-version", "52", "--sd-req", "0x0100",
                    "--application", os.path.join(root, "examples/nordic/app.hex"),
                    "--application-version", "3",
                    "--key-file", os.path.join(root, "examples/nordic/key.pem"), zpath],
                   check=True, stdout=subprocess.DEVNULL)
with zipfile.ZipFile(zpath) as z:
    for name in z.namelist():
        if name.endswith(".dat"):
            init = z.read(name)
            put("init_packet", name, init)
            for mode in range(4):
                put("secure_dfu_device", f"update-mode{mode}.bin", nordic_script(mode, init))
print("seed.py: seeds written under fuzz/seeds/")
