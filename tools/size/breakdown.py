#!/usr/bin/env python3
"""Where a firmware's flash and RAM go, by origin: a table from the ELF's symbols.

    python3 tools/size/breakdown.py target/thumbv7em-none-eabihf/release/mps2-an386 [--top 15]

Reads `llvm-nm --print-size --demangle` (Debian's `llvm` package, which CI installs) and
`llvm-size -A`, and adds every symbol's size to one origin: the embedded weights, the
microconv core (one line per module), the firmware's board-independent app and protocol,
the board binary, defmt, formatting and panic machinery (`core::fmt`, `core::str`,
`core::unicode`, Debug impls), compiler built-ins (soft-float, memcpy), cortex-m and its
runtime, and what is left. Flash is what lives in .vector_table, .text and .rodata (plus
.data's initial values); RAM is .data, .bss and .uninit. Bytes that no symbol covers
(alignment padding, anonymous constants) are shown as "unattributed" so that each column
adds up to the section sizes llvm-size prints. No Python package beyond the standard
library is needed.
"""
import argparse
import collections
import re
import shutil
import subprocess
import sys

FLASH = {".vector_table", ".text", ".rodata"}
RAM = {".data", ".bss", ".uninit"}


def tool(name):
    for cand in (name, f"{name}-19", f"{name}-16", f"{name}-15", f"{name}-14"):
        if shutil.which(cand):
            return cand
    sys.exit(f"error: {name} not found (apt-get install llvm)")


def sections(elf):
    out = subprocess.run([tool("llvm-size"), "-A", elf], capture_output=True, text=True, check=True).stdout
    sec = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = (int(parts[1]), int(parts[2]))
    return sec


RULES = [
    (r"::MODEL\b|^MODEL\b|::model::(compiled::)?(PARAMS|Q\d+_[WBMS])\b", "weights (the embedded model)"),
    (r"::model::(compiled::)?(QLAYERS|QNET|PLAN)\b|::model::(compiled::)?infer_(f32|i8)\b", "generated model code (microconv-build: layer table, per-step calls)"),
    (r"^microconv::plan|microconv\.\.plan", "microconv core: planned inference (plan.rs, with the kernels it inlines)"),
    (r"^microconv::quant", "microconv core: int8 (quant)"),
    (r"^microconv::(weights::int8|qformat)", "microconv core: int8 weights file (weights::int8)"),
    (r"^microconv::(weights|format)|microconv\.\.weights", "microconv core: weights file (weights)"),
    (r"^microconv::crc32", "microconv core: crc32"),
    (r"^microconv::layers::conv2d|microconv\.\.layers\.\.conv2d", "microconv core: conv2d"),
    (r"^microconv::layers::maxpool", "microconv core: maxpool"),
    (r"^microconv::layers::dense", "microconv core: dense"),
    (r"^microconv::layers::Layer|microconv\.\.layers\.\.Layer", "microconv core: layer dispatch (layers/mod.rs)"),
    (r"^microconv::layers", "microconv core: other layers"),
    (r"^microconv::net|microconv\.\.net", "microconv core: net (layer loop)"),
    (r"^microconv::arch|microconv\.\.arch", "microconv core: arch (shapes, sizes)"),
    (r"microconv\.\.gemm|^microconv::gemm", "microconv core: gemm"),
    (r"^microconv::(loss|optim|init)", "microconv core: loss, optimizers, init"),
    (r"^<?microconv::|microconv\.\.", "microconv core: other"),
    (r"^microconv_firmware::protocol|microconv_firmware\.\.protocol", "firmware: protocol"),
    (r"^microconv_firmware::finetune|microconv_firmware\.\.finetune", "firmware: on-device training"),
    (r"microconv_firmware", "firmware: app and classifier"),
    (r"^defmt|defmt[_:]|_defmt", "defmt (logging)"),
    (r"^core::fmt|core\.\.fmt|as core::fmt::|<core::fmt|::fmt::h|^core::str|^<str as|core::unicode|^core::panicking|^core::result::unwrap_failed|^core::option::|slice_error|slice_index|^<char>|escape_debug|pad_integral|PadAdapter|^core::slice::index", "formatting and panics (core::fmt, str, unicode)"),
    (r"^compiler_builtins|^__aeabi|^__(mul|add|sub|div)[sd]f3|^mem(cpy|set|move|cmp)$|^__(u)?div|^__ashl|^__lshr", "compiler built-ins (soft-float, mem*)"),
    (r"^cortex_m|^__cortex_m|^Reset$|^DefaultHandler|^HardFault|^__INTERRUPTS|^__RESET_VECTOR|^__EXCEPTIONS|^_stack|^__pre_init|^cortex_m_rt|^critical_section|^_critical_section", "cortex-m, cortex-m-rt, critical-section"),
    (r"^embedded_(hal|io)", "embedded-hal / embedded-io"),
    (r"^stm32f4xx_hal|^stm32f4::", "stm32f4xx-hal"),
    (r"^(mps2_an386|stm32f411|microbit|mps2_an50\d|riscv|rp2040)[:_]|^main$", "board binary"),
    (r"^libm|^micromath", "libm / micromath"),
    (r"semihosting", "semihosting (QEMU's output channel)"),
    (r"rust_begin_unwind|rust_panic", "formatting and panics (core::fmt, str, unicode)"),
    (r"^\.Lanon|^anon\.", "anonymous constants (panic locations and messages, tables)"),
    (r"^(core|alloc)::", "core library (other)"),
]


def origin(name):
    for pat, what in RULES:
        if re.search(pat, name):
            return what
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("elf")
    ap.add_argument("--top", type=int, default=0, help="also list the N largest symbols")
    a = ap.parse_args()
    sec = sections(a.elf)
    nm = subprocess.run([tool("llvm-nm"), "--print-size", "--size-sort", "--demangle", a.elf],
                        capture_output=True, text=True, check=True).stdout
    # Section address ranges, to tell flash symbols from RAM ones.
    ranges = [(name, addr, addr + size) for name, (size, addr) in sec.items() if size and (name in FLASH or name in RAM or name == ".data")]
    flash = collections.Counter()
    ram = collections.Counter()
    syms = []
    for line in nm.splitlines():
        m = re.match(r"([0-9a-f]+) ([0-9a-f]+) (\w) (.*)", line)
        if not m:
            continue
        addr, size, kind, name = int(m[1], 16), int(m[2], 16), m[3], m[4]
        where = next((s for s, lo, hi in ranges if lo <= addr < hi), None)
        if where is None or size == 0:
            continue
        o = origin(re.sub(r"^_\$LT\$", "<", name))
        if where in RAM:
            ram[o] += size
        else:
            flash[o] += size
        syms.append((size, where, name))
    flash_total = sum(sec.get(s, (0, 0))[0] for s in FLASH) + sec.get(".data", (0, 0))[0]
    ram_total = sum(sec.get(s, (0, 0))[0] for s in RAM)
    # .data's initial values are in flash too, counted under the origin of their symbols.
    for size, where, name in syms:
        if where == ".data":
            flash[origin(name)] += size
    flash["unattributed (padding, anonymous constants)"] = flash_total - sum(flash.values())
    ram["unattributed (padding, stack is not included)"] = ram_total - sum(ram.values())
    print(f"{a.elf}: flash {flash_total} B (vector table, text, rodata, data), static RAM {ram_total} B (data, bss)\n")
    print("| origin | flash (B) | static RAM (B) |")
    print("|---|---:|---:|")
    for o in sorted(set(flash) | set(ram), key=lambda o: -(flash[o] + ram[o])):
        if flash[o] or ram[o]:
            print(f"| {o} | {flash[o]:,} | {ram[o]:,} |")
    print(f"| **total** | **{flash_total:,}** | **{ram_total:,}** |")
    if a.top:
        print(f"\nlargest {a.top} symbols:")
        for size, where, name in sorted(syms, reverse=True)[: a.top]:
            print(f"{size:8} {where:8} {name[:110]}")


if __name__ == "__main__":
    main()
