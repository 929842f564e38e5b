"""Small helpers several test modules share (not tests themselves)."""

import math
import os

import jax
import numpy as np
import optax


def examples(n: int) -> int:
    """``n`` random examples, scaled by ``JAXNMR_TEST_EXAMPLES`` (a fraction; .ci/sanitize runs a quarter of the
    random scenes under AddressSanitizer, where each costs several times more), at least 1."""
    return max(1, round(n * float(os.environ.get("JAXNMR_TEST_EXAMPLES", "1"))))


def rodrigues(rvec) -> np.ndarray:
    """The rotation matrix (float64 ``[3, 3]``) of an axis-angle vector ``[3]`` (radians, non-zero), by hand."""
    rvec = np.asarray(rvec, np.float64)
    theta = np.linalg.norm(rvec)
    k = rvec / theta
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * Kx + (1 - math.cos(theta)) * Kx @ Kx


def adam_fitter(loss, learning_rate: float, steps: int):
    """A jitted ``fit(start) -> (params, losses [steps])``: Adam on ``loss`` for ``steps`` steps in one
    ``lax.scan``."""
    optimizer = optax.adam(learning_rate)

    @jax.jit
    def fit(params):
        def step(carry, _):
            params, state = carry
            value, grad = jax.value_and_grad(loss)(params)
            updates, state = optimizer.update(grad, state)
            return (optax.apply_updates(params, updates), state), value

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)
        return params, losses

    return fit
