"""emorec: hybrid-fusion multimodal emotion recognition (Kumar et al., ICIP 2021).

The package holds what the four phase scripts (TER.py, IER.py,
Intermediate_fusion.py, Late_fusion.py) share: the data contract
(:mod:`emorec.data`), the B-T4SA converter (:mod:`emorec.bt4sa`), the demo data
set (:mod:`emorec.demo`) and the command-line glue (:mod:`emorec.cli`).
"""

import os


def _quiet_tensorflow_without_a_gpu() -> None:
    """On a machine without an NVIDIA GPU, keep TensorFlow's C++ log to fatal messages.

    TensorFlow's Linux wheels are built for CUDA: at every start they log
    ``failed call to cuInit: INTERNAL: CUDA error`` (an ERROR line) and a few
    notices where no NVIDIA driver is present, which read as a failure before
    the first line of ours. Where the driver's device files exist, nothing is
    changed, so a real GPU's errors still show; a ``TF_CPP_MIN_LOG_LEVEL`` the
    user set is always kept. Set here, before any module imports TensorFlow.
    """
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ and not (
        os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
    ):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


_quiet_tensorflow_without_a_gpu()

__version__ = "0.1.0"
