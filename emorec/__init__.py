"""emorec: hybrid-fusion multimodal emotion recognition (Kumar et al., ICIP 2021).

The package holds what the four phase scripts (TER.py, IER.py,
Intermediate_fusion.py, Late_fusion.py) share: the data contract
(:mod:`emorec.data`), the B-T4SA converter (:mod:`emorec.bt4sa`), the demo data
set (:mod:`emorec.demo`) and the command-line glue (:mod:`emorec.cli`).
"""

__version__ = "0.1.0"
