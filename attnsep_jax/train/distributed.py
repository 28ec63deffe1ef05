"""Multi-process setup and the device-parallel plumbing around the pure step.

One process per host (or per GPU, as SLURM likes it); each process drives its
local devices through ``jax.pmap`` and feeds its own shard of the global batch.
``pmap``'s collectives (``lax.pmean``) then span every device of every process.
"""

from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from attnsep_jax.train.step import AXIS, eval_step, train_step

log = logging.getLogger(__name__)

DISTRIBUTED_MODES = ("auto", "on", "off")


def _cluster_env_present() -> bool:
  """True when a launcher (SLURM, Open MPI, a TPU pod, explicit JAX_* vars)
  started several processes that must join one JAX system."""
  env = os.environ
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1) > 1 and "SLURM_JOB_ID" in env:
    return True
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return True
  # Multi-host Cloud TPU VMs list their workers; a single-host TPU needs no setup.
  if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
    return True
  return False


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> None:
  """Joins this process to a multi-process JAX system when there is one.

  Must run before anything touches a JAX device.

  Args:
    mode: "auto" (join when a launcher's environment or explicit arguments say
      so), "on" (always call ``jax.distributed.initialize``, letting JAX detect
      the cluster) or "off".
    coordinator_address: "host:port" of process 0, for launches by hand.
    num_processes: total number of processes, for launches by hand.
    process_id: this process's index in [0, num_processes), for launches by hand.
  """
  if mode not in DISTRIBUTED_MODES:
    raise ValueError(f"distributed mode must be one of {DISTRIBUTED_MODES}, got {mode!r}")
  explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
  if mode == "off" or (mode == "auto" and not explicit and not _cluster_env_present()):
    return
  # The CPU backend needs a collectives implementation to talk to other
  # processes; the setting only concerns CPU devices, so it is harmless on GPU/TPU.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())


@functools.lru_cache(maxsize=None)
def pmap_train_step():
  """``train_step`` over all local devices; the state argument is donated."""
  return jax.pmap(train_step, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,))


@functools.lru_cache(maxsize=None)
def pmap_eval_step():
  return jax.pmap(eval_step, axis_name=AXIS)


@functools.lru_cache(maxsize=None)
def _pmap_sharding(num_local_devices: int):
  """The sharding that ``pmap`` gives its outputs over ``num_local_devices``
  per process.  Inputs placed exactly so are not re-laid-out (and the step is
  not recompiled) on the second call."""
  probe = jax.pmap(lambda x: x, axis_name=AXIS)(np.zeros((num_local_devices,), np.float32))
  return probe.sharding


def replicate(tree, num_local_devices: int | None = None):
  """One copy of every leaf on each local device (leading axis = devices).

  Args:
    tree: a pytree of host or device arrays.
    num_local_devices: replicate over the first n local devices (default all).
  Returns:
    the tree with leaves of shape (devices, ...), sharded as pmap outputs are.
  """
  n = num_local_devices or jax.local_device_count()
  sharding = _pmap_sharding(n)

  def put(x):
    x = np.asarray(x)
    local = np.broadcast_to(x[None], (n,) + x.shape)
    return jax.make_array_from_process_local_data(sharding, local)
  return jax.tree.map(put, tree)


def unreplicate(tree):
  """The first local replica of every leaf, as host numpy arrays."""
  def first(x):
    if isinstance(x, jax.Array) and x.ndim > 0 and len(x.addressable_shards) > 1:
      return np.asarray(x.addressable_shards[0].data)[0]
    return np.asarray(x)[0]
  return jax.tree.map(first, tree)


def shard_batch(batch: dict, num_devices: int | None = None) -> dict:
  """Splits this process's rows ``(b, ...)`` into ``(devices, b / devices, ...)``."""
  num_devices = num_devices or jax.local_device_count()

  def split(x):
    x = np.asarray(x)
    if x.shape[0] % num_devices:
      raise ValueError(f"per-process batch {x.shape[0]} is not divisible by the "
                       f"{num_devices} local devices; change data.batch_size")
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])
  return jax.tree.map(split, batch)


def check_batch_size(global_batch: int) -> None:
  """Fails early, with the numbers, when the global batch cannot be split evenly."""
  devices = jax.device_count()
  if global_batch % devices:
    raise ValueError(f"data.batch_size={global_batch} must be a multiple of the "
                     f"{devices} devices ({jax.process_count()} processes x "
                     f"{jax.local_device_count()} local devices)")


def sync(name: str) -> None:
  """Barrier across processes (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def sum_across_processes(values: np.ndarray) -> np.ndarray:
  """Element-wise sum of a float32 host array over all processes.

  The exchange goes through JAX arrays (float32 without x64).  With one
  process the array comes back as float32 unchanged.
  """
  values = np.asarray(values, np.float32)
  if jax.process_count() == 1:
    return values
  return np.asarray(multihost_utils.process_allgather(values), np.float32).sum(axis=0)


def broadcast_from_first(value: np.ndarray) -> np.ndarray:
  """Process 0's value on every process (agreement on host-side decisions)."""
  if jax.process_count() == 1:
    return np.asarray(value)
  return np.asarray(multihost_utils.broadcast_one_to_all(jnp.asarray(value)))
