"""Shared pieces of the examples in this folder: command line, compiled optimisation loops with a progress bar,
image and GIF output, and the final metric line.

Every example is a script ``examples/NAME.py`` with a ``main(argv=None) -> int`` that can also be called
in-process (the tests do). They import this module as ``_common``; that works when the script is run as
``python examples/NAME.py`` (Python puts the script's folder first on ``sys.path``) and, for in-process use, once
the ``examples`` folder is on ``sys.path``.

Conventions (follow them in a new example, so the tests and ``docs/make_gallery.py`` can treat all examples alike):

* Command line from :func:`make_parser` / :func:`parse_args`: ``--out DIR`` (created; default ``out/NAME``),
  ``--iterations N``, ``--size PX``, ``--fps F``, ``--seed S`` and ``--no-progress``; errors are argparse's
  (usage + one ``error:`` line, exit status 2).
* The optimisation is :func:`optimize`: the caller writes ONE traced step ``step(state, i) -> (state, loss)``;
  it runs as a jitted ``lax.scan`` over chunks of ``chunk`` steps (compiled once), with a tqdm bar on stderr
  showing the loss between chunks, optional early stopping (``stop_below``) inside the compiled loop, and a
  host-side ``on_chunk`` callback (e.g. to render a GIF frame).
* Outputs go under ``--out``: images with :func:`write_png`, animations with :func:`write_gif`. The headline
  animation of example NAME is ``DIR/NAME.gif`` (the README gallery shows that one).
* The last line the example prints on stdout is ``final <metric>=<value>`` (:func:`report_final`), e.g.
  ``final iou=0.9996``; an optimisation also prints ``initial <metric>=<value>`` (:func:`report_initial`) before
  it starts.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

try:
    import jaxnmr  # noqa: F401  (imported here so every example fails the same, helpful way)
except ModuleNotFoundError as _error:  # pragma: no cover - depends on the environment
    if _error.name != "jaxnmr":
        raise
    _repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(
        "error: the jaxnmr package is not importable. Install it from the repository root "
        f"({_repo}) with 'pip install .', or put that folder on PYTHONPATH (with the kernel library built)."
    ) from None

import jax
import jax.numpy as jnp
import optax

from jaxnmr.cameras import turntable_eyes  # noqa: F401  (re-exported)
from jaxnmr.cli import float_where, int_in  # noqa: F401  (re-exported)
from jaxnmr.io.images import contact_sheet, to_uint8, write_gif, write_png  # noqa: F401  (re-exported)

__all__ = [
    "make_parser",
    "parse_args",
    "int_at_least",
    "float_where",
    "positive_int",
    "positive_float",
    "optimize",
    "gradient_step",
    "OptimizeResult",
    "progress_bar",
    "write_png",
    "write_gif",
    "gray_to_rgb",
    "silhouette_iou",
    "square_mask",
    "render_turntable",
    "count_kernel_calls",
    "report_final",
    "report_initial",
    "Timer",
    "to_uint8",
    "turntable_eyes",
    "contact_sheet",
]

#: NMR's camera distance for its examples: the unit cube's face fills the 30-degree view.
DISTANCE = 2.732


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


# argparse ``type`` helpers shared with the ``jaxnmr`` command: integers in a range, numbers meeting a check
int_at_least = int_in


positive_int = int_at_least(1)
positive_float = float_where(lambda v: v > 0, "a finite number > 0")


def make_parser(
    name: str,
    description: str,
    *,
    iterations: int | None = None,
    size: int = 256,
    fps: float = 12.5,
    seed: int | None = None,
) -> argparse.ArgumentParser:
    """The example's argument parser with the shared options; add example-specific ones to what it returns.

    Args:
      name: the example's name (``prog`` and the default output folder ``out/NAME``).
      description: shown by ``--help`` (e.g. the module docstring's first paragraph).
      iterations: default of ``--iterations N`` (optimisation steps, >= 1); None: no such option.
      size: default of ``--size PX`` (image width and height, 8 to 4096).
      fps: default of ``--fps F`` (GIF frames per second, in (0, 50]; NMR's GIFs use 8/100 s, 12.5 fps).
      seed: default of ``--seed S`` (PRNG seed); None: no such option.
    """
    parser = argparse.ArgumentParser(
        prog=f"{name}.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.path.join("out", name), metavar="DIR",
                        help="output folder for the GIFs and PNGs, created if needed (default: %(default)s)")
    if iterations is not None:
        parser.add_argument("--iterations", type=positive_int, default=iterations, metavar="N",
                            help="optimisation steps (default: %(default)s)")
    parser.add_argument("--size", type=int_at_least(8, 4096), default=size, metavar="PX",
                        help="image width and height in pixels, 8 to 4096 (default: %(default)s)")
    parser.add_argument("--fps", type=float_where(lambda v: 0 < v <= 50, "in (0, 50]"), default=fps, metavar="F",
                        help="GIF frames per second (default: %(default)s)")
    if seed is not None:
        parser.add_argument("--seed", type=int_at_least(0), default=seed, metavar="S",
                            help="random seed (default: %(default)s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="do not show the progress bar")
    parser.set_defaults(name=name)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses ``argv`` (default: ``sys.argv[1:]``) and creates ``--out``; a folder that cannot be created is
    reported as an argparse error (exit status 2)."""
    args = parser.parse_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot create output folder {args.out!r}: {error.strerror or error}")
    if not os.path.isdir(args.out):  # pragma: no cover - makedirs raises first
        parser.error(f"--out {args.out!r} is not a folder")
    from jaxnmr import ffi

    if not ffi.kernel_available():
        print(f"warning: no compiled jaxnmr kernel for the {jax.default_backend()} back end; running on the "
              "pure-jnp reference, which is far slower", file=sys.stderr)
    return args


# ---------------------------------------------------------------------------------------------------------------
# Compiled optimisation loop with a progress bar
# ---------------------------------------------------------------------------------------------------------------


class OptimizeResult(NamedTuple):
    """What :func:`optimize` returns.

    state: the final state (after the last update that was applied).
    losses: float64 numpy ``[steps]``, the loss of every step that ran (computed before that step's update).
    steps: how many steps ran (= ``iterations`` unless stopped early).
    updates: how many updates were applied (``steps - 1`` when stopped early, else ``steps``).
    stopped: True if a loss fell below ``stop_below``.
    """

    state: Any
    losses: np.ndarray
    steps: int
    updates: int
    stopped: bool


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "step"):
    """A tqdm bar on stderr (shown unless ``enabled`` is False)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, dynamic_ncols=True,
                leave=False)


def gradient_step(loss_fn: Callable[[Any, jax.Array], jax.Array], optimizer) -> Callable:
    """An :func:`optimize` step for gradient descent with an optax ``optimizer``: the state is
    ``(params, opt_state)`` and ``loss_fn(params, i)`` the scalar loss at step ``i`` (int32, for per-step
    randomness). Returns ``step(state, i) -> ((params, opt_state), loss)``, the loss taken before the update."""

    def step(state, i):
        params, opt_state = state
        loss, grad = jax.value_and_grad(loss_fn)(params, i)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def optimize(
    step: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
    state: Any,
    iterations: int,
    *,
    chunk: int = 10,
    stop_below: float | None = None,
    on_chunk: Callable[[Any, int], None] | None = None,
    desc: str = "optimising",
    progress: bool = True,
) -> OptimizeResult:
    """Runs ``iterations`` steps of ``step`` as compiled ``lax.scan`` chunks, showing the loss on a progress bar.

    The loop is ONE jitted function, ``scan`` over ``chunk`` steps, called ``ceil(iterations / chunk)`` times with
    the carried state (it is compiled once: the last, partial chunk runs the same function with its surplus steps
    switched off by ``lax.cond``). Between chunks the host updates the bar (postfix: the latest loss) and calls
    ``on_chunk``.

    Args:
      step: ``step(state, i) -> (new_state, loss)``, traced (use jax.numpy only): ``i`` is the int32 step number
        (0-based; e.g. ``jax.random.fold_in(key, i)`` for per-step randomness) and ``loss`` a float scalar,
        evaluated at ``state`` (before the update). ``state`` is any pytree (e.g. ``(params, opt_state)``).
      state: the initial state.
      iterations: the most steps to run (>= 1).
      chunk: steps per compiled call (>= 1): the bar and ``on_chunk`` run this often.
      stop_below: if given, stop at the first step whose loss is below it, WITHOUT applying that step's update
        (NMR's ``if loss < threshold: break`` before the update); the rest of that chunk is skipped inside the
        compiled loop and no further chunk is run.
      on_chunk: ``on_chunk(state, steps_done)``, called on the host once before the first chunk (with 0) and
        after each chunk, e.g. to render a frame of an animation.
      desc: the bar's label. progress: show the bar.
    """
    iterations = int(iterations)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    chunk = max(1, min(int(chunk), iterations))
    threshold = None if stop_below is None else float(stop_below)

    loss_shape = jax.eval_shape(step, state, jnp.int32(0))[1]
    if loss_shape.shape != ():
        raise ValueError(f"step must return a scalar loss, got shape {loss_shape.shape}")

    def body(carry, i):
        state, done = carry
        active = jnp.logical_and(i < iterations, jnp.logical_not(done))
        new_state, loss = jax.lax.cond(
            active,
            lambda s: step(s, i),
            lambda s: (s, jnp.full((), jnp.nan, loss_shape.dtype)),
            state,
        )
        stop = jnp.logical_and(active, loss < threshold) if threshold is not None else jnp.zeros((), bool)
        keep_old = jnp.logical_or(stop, jnp.logical_not(active))
        state = jax.tree_util.tree_map(lambda old, new: jnp.where(keep_old, old, new), state, new_state)
        return (state, jnp.logical_or(done, stop)), (loss, active, stop)

    @jax.jit
    def run_chunk(state, start):
        (state, done), outputs = jax.lax.scan(body, (state, jnp.zeros((), bool)), start + jnp.arange(chunk))
        return state, done, outputs

    losses, steps, stopped = [], 0, False
    if on_chunk is not None:
        on_chunk(state, 0)
    with progress_bar(iterations, desc, progress) as bar:
        for start in range(0, iterations, chunk):
            state, done, (loss, active, stop) = run_chunk(state, jnp.int32(start))
            active = np.asarray(active)
            ran = int(active.sum())
            losses.append(np.asarray(loss, np.float64)[active])
            steps += ran
            stopped = bool(done)
            if losses[-1].size:
                bar.set_postfix(loss=f"{losses[-1][-1]:.6g}", refresh=False)
            bar.update(ran)
            if on_chunk is not None:
                on_chunk(state, steps)
            if stopped:
                break
    losses = np.concatenate(losses) if losses else np.zeros(0)
    return OptimizeResult(state, losses, steps, steps - int(stopped), stopped)


# ---------------------------------------------------------------------------------------------------------------
# Images (write_png, write_gif, to_uint8 and contact_sheet come from jaxnmr.io.images)
# ---------------------------------------------------------------------------------------------------------------


def gray_to_rgb(image) -> np.ndarray:
    """``[..., H, W]`` -> ``[..., H, W, 3]`` by repeating the values."""
    image = np.asarray(image)
    return np.repeat(image[..., None], 3, axis=-1)


def square_mask(size: int, half: float = 0.5) -> np.ndarray:
    """float32 ``[size, size]``: 1 on pixels whose centre lies in NDC ``[-half, half]^2``, else 0.

    Pixel ``i``'s centre is at NDC ``(2 i + 1) / size - 1``; at 256 px and ``half=0.5`` that is rows and
    columns 64-191 (NMR's ``example2_ref.png``).
    """
    centres = (2.0 * np.arange(size) + 1.0) / size - 1.0
    inside = np.abs(centres) <= half
    return (inside[:, None] & inside[None, :]).astype(np.float32)


def silhouette_iou(silhouette, target, threshold: float = 0.5) -> float:
    """Intersection over union of ``silhouette > threshold`` and ``target > threshold`` (1.0 if both empty),
    as a Python float: :func:`jaxnmr.losses.silhouette_iou` for one pair of images."""
    from jaxnmr import losses

    as_float = lambda x: np.asarray(x, np.float32)  # boolean masks are welcome here
    return float(losses.silhouette_iou(as_float(silhouette), as_float(target), threshold))


def count_kernel_calls(fn: Callable, *args) -> int:
    """How many rasterizer calls ``fn(*args)`` makes once traced (FFI kernel calls, or, where no kernel is
    compiled, calls of the differentiable rasterizer): 1 for a vmapped batch of views."""
    from jaxnmr import ffi

    name = "ffi_call" if ffi.kernel_available() else "custom_vjp_call"

    def walk(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            n += eqn.primitive.name == name
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else (param,):
                    if hasattr(sub, "eqns"):
                        n += walk(sub)
                    elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                        n += walk(sub.jaxpr)
        return n

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def render_turntable(renderer, vertices, faces, textures, views: int = 90, elevation: float = 30.0,
                     distance: float = DISTANCE) -> np.ndarray:
    """uint8 ``[views, H, W, 3]``: the mesh from ``views`` azimuths ``0, 360/views, ...`` at ``elevation``,
    rendered by ONE jitted, vmapped renderer call (``renderer.replace(eye=...)`` per view)."""
    eyes = jnp.asarray(turntable_eyes(views, elevation, distance))
    images = jax.jit(jax.vmap(lambda eye: renderer.replace(eye=eye).render(vertices, faces, textures)))(eyes)
    return to_uint8(images)


# ---------------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------------


class Timer:
    """Wall time since construction: ``Timer().seconds``."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def report_final(metric: str, value, fmt: str = ".4f") -> str:
    """Prints (and returns) the example's last stdout line ``final <metric>=<value>`` (floats with ``fmt``)."""
    return _report("final", metric, value, fmt)


def report_initial(metric: str, value, fmt: str = ".4f") -> str:
    """Prints (and returns) ``initial <metric>=<value>``: the metric before optimising, for comparison (the
    smoke tests check that the final value improves on it)."""
    return _report("initial", metric, value, fmt)


def _report(when: str, metric: str, value, fmt: str) -> str:
    text = f"{when} {metric}={value:{fmt}}" if isinstance(value, float) else f"{when} {metric}={value}"
    print(text, flush=True)
    return text
