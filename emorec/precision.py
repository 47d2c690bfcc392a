"""Numeric precision of the image backbone and the heads: ``--precision auto|float32|bfloat16|float16``.

bfloat16 and float16 run Keras' mixed-precision policies (``mixed_bfloat16``,
``mixed_float16``): weights stay float32, the arithmetic runs in the lower
precision. They pay where the hardware has it: bfloat16 on CPUs with
AVX512_BF16 or AMX (docs/phases.md gives the figures) and
on GPUs of compute capability 8.0 or more; float16 on GPUs of 7.0 or more.
Elsewhere they are emulated and slower than float32. ``auto`` takes bfloat16
where it is native and float32 elsewhere, and the log says which and why.
Stored features are float16 whatever the precision.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("emorec")

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def native_support() -> dict[str, str | None]:
    """For ``bfloat16`` and ``float16``: the reason this machine runs it natively (its GPU or CPU feature), or
    None when it would be emulated."""
    import tensorflow as tf

    support: dict[str, str | None] = {"bfloat16": None, "float16": None}
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability, name = details.get("compute_capability") or (0, 0), details.get("device_name", gpu.name)
        if tuple(capability) >= (8, 0):
            support["bfloat16"] = (
                support["bfloat16"] or f"the GPU {name} (compute capability {capability[0]}.{capability[1]})"
            )
        if tuple(capability) >= (7, 0):
            support["float16"] = (
                support["float16"] or f"the GPU {name} (compute capability {capability[0]}.{capability[1]})"
            )
    flags = cpu_flags()
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in flags and support["bfloat16"] is None and onednn_may_use_bfloat16():
            support["bfloat16"] = f"this CPU ({flag.upper()})"
    return support


def onednn_may_use_bfloat16() -> bool:
    """Whether oneDNN may use the CPU's bfloat16 instructions: not when ``ONEDNN_MAX_CPU_ISA`` caps it below them
    (``AVX2``, say, to run as on a CPU without AVX-512), where a bfloat16 convolution finds no kernel and fails."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    return cap in ("ALL", "DEFAULT") or any(name in cap for name in ("BF16", "FP16", "AMX"))


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def resolve_precision(requested: str) -> str:
    """The precision to run for ``--precision requested`` (``auto`` resolved), logged with the reason."""
    support = native_support()
    if requested == "auto":
        chosen = "bfloat16" if support["bfloat16"] else "float32"
        why = (
            f"native on {support['bfloat16']}"
            if support["bfloat16"]
            else "no bfloat16 support found on this machine's CPU or GPU"
        )
        log.info("precision: %s (--precision auto: %s)", chosen, why)
        return chosen
    if requested != "float32" and not support[requested]:
        log.warning(
            "precision: %s is emulated on this machine (no native support found), so it runs slower than float32",
            requested,
        )
    return requested


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Build models inside this block to get ``precision``'s Keras dtype policy (restored after)."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
