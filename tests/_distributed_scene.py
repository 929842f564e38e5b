"""The scene and loss shared by the two-process test and its single-process reference."""

import numpy as np
import jax
import jax.numpy as jnp

import jaxnmr
import jaxnmr.meshes
from jaxnmr import scale

IMAGE = 32
VIEWS = 4


def scene():
    """A small teapot, 4 eyes around it and a random target silhouette per view (numpy, float32)."""
    pot = jaxnmr.meshes.teapot(resolution=2)
    vertices, faces = np.asarray(pot.vertices), np.asarray(pot.faces)
    eyes = np.asarray(jaxnmr.get_points_from_angles(2.7, 25.0, np.arange(VIEWS) * 360.0 / VIEWS), np.float32)
    targets = np.random.default_rng(0).uniform(0, 1, (VIEWS, IMAGE, IMAGE)).astype(np.float32)
    return vertices.astype(np.float32), faces.astype(np.int32), eyes, targets


def loss_fn(mesh, faces, method="render_silhouettes"):
    """Squared error of the silhouettes (or depth images) summed over the views, the views split over ``mesh``'s
    devices."""
    renderer = jaxnmr.Renderer(image_size=IMAGE, far=4.0)
    one_view = lambda eye, v: getattr(renderer.replace(eye=eye), method)(v, faces)
    render = scale.shard_batch(one_view, mesh, in_axes=(0, None))
    return lambda v, eyes, targets: jnp.sum((render(eyes, v) - targets) ** 2)
