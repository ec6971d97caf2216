"""What the ELF files of a bundle need from the system: shared libraries it does not carry, and glibc's version.

    needs = scan_bundle(Path("dist/appliance"))
    needs.external          # {"libc.so.6", "libxcb.so.1", ...}: sonames asked for and not in the bundle
    needs.glibc_floor       # (2, 34): the newest GLIBC_x.y symbol version any file asks for

Reads ELF headers with the standard library only (64- and 32-bit, both byte orders), so it needs no binutils.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SHT_DYNAMIC = 6
SHT_GNU_VERNEED = 0x6FFFFFFE
DT_NEEDED = 1
_GLIBC_VERSION = re.compile(r"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass
class ElfNeeds:
    needed: dict[str, set[str]] = field(default_factory=dict)  # soname -> files (relative) that need it
    provided: set[str] = field(default_factory=set)  # file names in the bundle (libraries are found by name)
    glibc_versions: set[tuple[int, ...]] = field(default_factory=set)

    @property
    def external(self) -> set[str]:
        return {name for name in self.needed if name not in self.provided}

    @property
    def glibc_floor(self) -> tuple[int, ...] | None:
        return max(self.glibc_versions) if self.glibc_versions else None


def read_elf(path: Path) -> tuple[list[str], list[str]] | None:
    """(DT_NEEDED sonames, version names required from other libraries) of an ELF file, or None if not ELF."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return None
    endian = "<" if data[5] == 1 else ">"
    sections, dyn_format = _section_headers(data, endian)

    def string(section_index: int, offset: int) -> str:
        base = sections[section_index][4] + offset
        end = data.index(b"\0", base)
        return data[base:end].decode("utf-8", "replace")

    needed: list[str] = []
    versions: list[str] = []
    for _, kind, _, _, offset, size, link, info, _, _ in sections:
        if kind == SHT_DYNAMIC:
            needed.extend(string(link, value) for value in _needed_offsets(data, offset, size, dyn_format))
        elif kind == SHT_GNU_VERNEED:
            versions.extend(string(link, name) for name in _verneed_name_offsets(data, offset, info, endian))
    return needed, versions


def _section_headers(data: bytes, endian: str) -> tuple[list[tuple[int, ...]], str]:
    """The section headers of an ELF file (none if it has no table), and the struct format of its dynamic entries.

    Each header is (name, type, flags, addr, offset, size, link, info, addralign, entsize); a dynamic entry is
    (tag, value).
    """
    if data[4] == 2:  # ELFCLASS64
        (shoff,) = struct.unpack_from(endian + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x3A)
        sh_format, dyn_format = endian + "IIQQQQIIQQ", endian + "qQ"
    else:
        (shoff,) = struct.unpack_from(endian + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(endian + "HH", data, 0x2E)
        sh_format, dyn_format = endian + "IIIIIIIIII", endian + "iI"
    if shoff == 0 or shnum == 0:
        return [], dyn_format
    return [struct.unpack_from(sh_format, data, shoff + i * shentsize) for i in range(shnum)], dyn_format


def _needed_offsets(data: bytes, offset: int, size: int, dyn_format: str) -> Iterator[int]:
    """The string-table offsets of the DT_NEEDED entries in a SHT_DYNAMIC section, up to its DT_NULL."""
    step = struct.calcsize(dyn_format)
    for position in range(offset, offset + size, step):
        tag, value = struct.unpack_from(dyn_format, data, position)
        if tag == 0:
            return
        if tag == DT_NEEDED:
            yield value


def _verneed_name_offsets(data: bytes, offset: int, count: int, endian: str) -> Iterator[int]:
    """The string-table offsets of the version names in a SHT_GNU_VERNEED section of ``count`` entries."""
    position = offset
    for _ in range(count):  # Elf_Verneed: version, cnt, file, aux, next
        _, aux_count, _, aux, next_entry = struct.unpack_from(endian + "HHIII", data, position)
        aux_position = position + aux
        for _ in range(aux_count):  # Elf_Vernaux: hash, flags, other, name, next
            _, _, _, name, next_aux = struct.unpack_from(endian + "IHHII", data, aux_position)
            yield name
            aux_position += next_aux
        if not next_entry:
            return
        position += next_entry


def scan_bundle(bundle: Path) -> ElfNeeds:
    """The libraries and glibc version that the ELF files under ``bundle`` need."""
    needs = ElfNeeds()
    for root, _, files in os.walk(bundle):
        for name in files:
            path = Path(root) / name
            needs.provided.add(name)
            if path.is_symlink() or not path.is_file():
                continue
            try:
                result = read_elf(path)
            except (OSError, struct.error, ValueError, IndexError):
                continue
            if result is None:
                continue
            sonames, versions = result
            for soname in sonames:
                needs.needed.setdefault(soname, set()).add(str(path.relative_to(bundle)))
            for version in versions:
                match = _GLIBC_VERSION.match(version)
                if match:
                    needs.glibc_versions.add(tuple(int(part) for part in match.groups() if part is not None))
    return needs
