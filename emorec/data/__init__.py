"""The data contract, one job per module: :mod:`~emorec.data.manifest` (reading a manifest: its rows, classes and
images), :mod:`~emorec.data.splits` (the one train/val/test split every phase shares, its leakage check and the
labelled subsample), :mod:`~emorec.data.fingerprints` (what proves two phases read the same rows and split) and
:mod:`~emorec.data.dataset` (a manifest with its split: what every phase starts from)."""
