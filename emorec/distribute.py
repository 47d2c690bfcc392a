"""Where training runs: ``--strategy auto|default|mirrored|multiworker``, TensorFlow's ``tf.distribute``.

- ``default``: one device (the first GPU if there is one, else the CPU), as plain Keras.
- ``mirrored``: ``MirroredStrategy``, one replica per GPU of this machine (without GPUs, one per logical CPU
  device: set ``EMOREC_CPU_DEVICES=N`` to split the CPU into N, which is how the tests try it on CPU).
- ``multiworker``: ``MultiWorkerMirroredStrategy`` over several processes or machines, each started with the same
  command and a ``TF_CONFIG`` naming the cluster and its own place in it (Slurm and other schedulers set it up;
  see docs/scale.md). Every worker reads the same files (a shared file system); only the chief writes outputs.
- ``auto`` (the default): ``mirrored`` when this machine has two GPUs or more, else ``default``.

``--batch-size`` stays the global batch: each of R replicas takes about 1/R of it per step, and the gradients are
summed over replicas (Keras scales each replica's loss by 1/R), so a step is the same update as on one device
whenever the batch divides evenly over the replicas (a --batch-size that is a multiple of R); an epoch's last,
smaller batch is averaged per replica, as tf.distribute does, and dropout draws differ per replica.
The strategy must exist before TensorFlow runs its first operation: a phase calls :func:`choose_strategy` first.
"""

from __future__ import annotations

import json
import logging
import os

from emorec.errors import InputError

log = logging.getLogger("emorec")

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CPU_DEVICES_ENV = "EMOREC_CPU_DEVICES"
STRATEGY_HELP = (
    "where training runs (tf.distribute): default (one device), mirrored (MirroredStrategy over this machine's "
    "GPUs; without GPUs over the logical CPUs that $EMOREC_CPU_DEVICES makes), multiworker "
    "(MultiWorkerMirroredStrategy over the machines or processes that $TF_CONFIG names; only the chief writes "
    "outputs), or auto: mirrored where there are two GPUs or more, else default. --batch-size is the global batch"
)


_CHOSEN: dict = {}  # --strategy -> its strategy, made once per process (phases run one after another in the sweep)


def choose_strategy(name: str):
    """The ``tf.distribute.Strategy`` for ``--strategy name`` (see the module's documentation), logged with its
    replicas. Call it before TensorFlow runs any operation. Raises :class:`InputError` for ``multiworker``
    without a usable ``TF_CONFIG``. A process makes each strategy once: later calls get the same one (two
    strategies of one kind would number their collective operations alike)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}: one of {', '.join(STRATEGIES)}")
    cpu_devices = _cpu_devices()
    cpu = tf.config.list_physical_devices("CPU")[0]
    if cpu_devices > 1 and tf.config.get_logical_device_configuration(cpu) is None:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) >= 2 else "default"
    if name not in _CHOSEN:
        _CHOSEN[name] = _make_strategy(name, gpus)
    strategy = _CHOSEN[name]
    if name != "default":  # the default is what plain Keras does: the .args.json records it, the log need not
        log.info("strategy: %s, %d replica(s) in sync", name, strategy.num_replicas_in_sync)
    return strategy


def _make_strategy(name: str, gpus: list):
    import tensorflow as tf

    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        devices = None if gpus else [device.name for device in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        if strategy.num_replicas_in_sync == 1:
            log.warning(
                "--strategy mirrored over one device (%s GPU(s) visible): it runs as default does, "
                "with the strategy's overhead",
                len(gpus),
            )
    else:
        cluster = _tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = cluster["task"]
        log.info(
            "multiworker: %s %s of a cluster of %d worker(s)%s",
            task["type"],
            task["index"],
            worker_count(strategy),
            ", the chief: it writes the outputs" if is_chief(strategy) else ", not the chief: it writes no outputs",
        )
    strategy.emorec_name = name  # what describe() reports
    return strategy


def describe(strategy) -> dict:
    """What the run's ``.args.json`` records of ``strategy``: its name (``auto`` resolved), replicas and workers."""
    return {
        "name": getattr(strategy, "emorec_name", "default"),
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": worker_count(strategy),
    }


def is_chief(strategy) -> bool:
    """Whether this process writes the outputs: always, except under ``multiworker``, where only the chief does
    (the task of type ``chief``, or worker 0 when the cluster has no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def worker_count(strategy) -> int:
    """How many processes train together (1 unless ``multiworker``): the cluster's chief and workers."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


def worker_index(strategy) -> int:
    """This process's place among :func:`worker_count` workers, 0 first: the chief, then the workers in order."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return 0
    return int(resolver.task_id) + (1 if "chief" in resolver.cluster_spec().as_dict() else 0)


def wait_for_all(strategy) -> None:
    """Return once every worker has reached this call (a collective sum across the workers; at once for one)."""
    if worker_count(strategy) > 1:
        import tensorflow as tf

        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def _cpu_devices() -> int:
    text = os.environ.get(CPU_DEVICES_ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{CPU_DEVICES_ENV}={text!r}: give a whole number of logical CPU devices, 1 or more")
    return int(text)


def _tf_config() -> dict:
    """The parsed ``TF_CONFIG``; :class:`InputError` when it is missing or does not name this task in a cluster."""
    text = os.environ.get("TF_CONFIG")
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
        '"index": 0}}\' on the first machine, index 1 on the second'
    )
    if not text:
        raise InputError(
            f"--strategy multiworker needs TF_CONFIG, which names the cluster and this process's place "
            f"in it, for example {example}. See docs/scale.md, on GPUs and several machines."
        )
    try:
        config = json.loads(text)
        task, cluster = config["task"], config["cluster"]
        cluster[task["type"]][int(task["index"])]
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise InputError(
            f"TF_CONFIG cannot be used ({type(error).__name__}: {error}): it must name the cluster "
            f"and this task in it, for example {example}."
        ) from error
    return config
