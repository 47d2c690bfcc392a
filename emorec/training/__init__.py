"""What the training phases share, one job per module: :mod:`~emorec.training.batches` (the input pipeline),
:mod:`~emorec.training.optimizer` (Adam with a fused update), :mod:`~emorec.training.metrics` (macro-F1 and the
training twin that measures the whole batch under a strategy), :mod:`~emorec.training.backup` (the per-epoch
backup and resume) and :mod:`~emorec.training.fit` (the fit itself, with seeding, class weights and the XLA rule)."""
