"""One process of the two-process test in tests/test_distributed.py (and the recipe in docs/scale.md).

Usage: python _distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

Every process builds the same mesh, views and targets; each holds its share of the views (one CPU device per
process), renders it, and the gradient with respect to the shared vertices is reduced across processes by the
jitted program. Process 0 writes the loss, the gradient and the images to OUT.npz.
"""

import sys

import numpy as np
import jax

# CPU collectives between processes go through Gloo (TCP on localhost here).
jax.config.update("jax_cpu_collectives_implementation", "gloo")
process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                           process_id=process_id, initialization_timeout=120)

import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import jaxnmr  # noqa: E402
from jaxnmr import scale  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _distributed_scene import loss_fn, scene  # noqa: E402

vertices, faces, eyes, targets = scene()
mesh = scale.device_mesh(axis_name="views")  # all processes' devices: one each here
views = NamedSharding(mesh, P("views"))
share = len(eyes) // jax.process_count()
mine = slice(jax.process_index() * share, (jax.process_index() + 1) * share)
# Global arrays whose rows live on the process that owns them.
eyes_g = jax.make_array_from_process_local_data(views, eyes[mine])
targets_g = jax.make_array_from_process_local_data(views, targets[mine])

result = dict(devices=np.array([len(jax.devices()), len(jax.local_devices())]))
for method in ("render_silhouettes", "render_depth"):
    step = jax.jit(jax.value_and_grad(loss_fn(mesh, faces, method)))
    loss, grad = step(jnp.asarray(vertices), eyes_g, targets_g)
    # The loss and the gradient are replicated: every process holds the whole reduced value.
    result[f"{method}_loss"] = np.asarray(loss.addressable_data(0))
    result[f"{method}_grad"] = np.asarray(grad.addressable_data(0))
if process_id == 0:
    np.savez(out, **result)
print(f"process {process_id}: done", flush=True)
jax.distributed.shutdown()
