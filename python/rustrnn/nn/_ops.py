"""The stacks as torch.library custom ops, for torch.compile and torch.export.

Why: dynamo cannot trace into :class:`~rustrnn.nn._function.StackFunction` (an
``autograd.Function`` whose forward calls Rust and keeps an opaque ``Tape``), so
``torch.compile(model, fullgraph=True)`` and ``torch.export.export`` fail on a
model holding a rustrnn stack. A custom op is a node that dynamo, AOTAutograd,
Inductor and export keep whole: its fake implementation gives the output shapes
from the configuration, and its derivative is a second custom op. While
compiling, :meth:`RNNBase.forward` calls :func:`stack_forward` instead of
``StackFunction``; eager calls are unchanged.

Three things a custom op cannot do shape this file:

* It cannot return the ``Tape``. The backward op recomputes the forward, with a
  tape, from the saved inputs and weights, and back-propagates through it: a
  compiled training step runs the stack's forward twice.
* It cannot take the ``RnnSpec`` pyclass. The configuration crosses as
  primitives and :func:`_spec` rebuilds (and caches) the spec from them.
* Its result must be a function of its inputs, but dropout between layers draws
  its masks from torch's default generator. Both ops therefore take a seed,
  drawn by ``torch.randint`` in the traced graph, and run the Rust forward with
  the generator seeded from it (and restored after), so that the recompute
  draws the forward's masks.
"""

import contextlib
import functools
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .. import _rustrnn


class _Config(NamedTuple):
    """RnnSpec's arguments: the ops' trailing arguments, before ``train``."""

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int


@functools.lru_cache(maxsize=None)
def _spec(config: _Config):
    return _rustrnn.RnnSpec(*config)


def _is_lstm(config: _Config) -> bool:
    return _spec(config).mode == "LSTM"


def _run(config, input, hx, cx, weights, seed, train, keep_tape):
    """Runs the Rust forward; with a seed, torch's generator is seeded from it for the call."""
    spec = _spec(config)
    if seed is None:
        return spec.forward(input, hx, cx, weights, train, keep_tape)
    # Off the CPU the masks come from the device's generator (bernoulli_).
    with _seeded(input.device, seed):
        return spec.forward(input, hx, cx, weights, train, keep_tape)


@contextlib.contextmanager
def _seeded(device: torch.device, seed: Tensor):
    """Torch's generator for ``device`` seeded from ``seed`` inside the block, and restored
    after it."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        value = int(seed)
        torch.default_generator.manual_seed(value)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(value)
        yield


def _empty(like: Tensor) -> Tensor:
    """The placeholder for a result the configuration does not have (c_n of a GRU)."""
    return like.new_empty(0)


@torch.library.custom_op("rustrnn::stack_forward", mutates_args=())
def _forward_op(
    input: Tensor,
    hx: Optional[Tensor],
    cx: Optional[Tensor],
    weights: List[Tensor],
    seed: Optional[Tensor],
    mode: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    batch_first: bool,
    dropout: float,
    bidirectional: bool,
    proj_size: int,
    train: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """The stack's forward: ``(output, h_n, c_n)``, c_n empty unless LSTM."""
    config = _Config(
        mode,
        input_size,
        hidden_size,
        num_layers,
        bias,
        batch_first,
        dropout,
        bidirectional,
        proj_size,
    )
    output, h_n, c_n, _ = _run(config, input, hx, cx, weights, seed, train, False)
    return output, h_n, _empty(input) if c_n is None else c_n


@_forward_op.register_fake
def _forward_fake(input, hx, cx, weights, seed, *config_and_train):
    # The shapes and strides the Rust forward returns: a time-major (L, N, D * H_out)
    # output, transposed for batch_first, and states stacked on a new first dim.
    config = _Config(*config_and_train[:-1])
    d = 2 if config.bidirectional else 1
    h_out = config.proj_size if config.proj_size > 0 else config.hidden_size
    unbatched = input.dim() == 2
    if unbatched:
        length, batch = input.shape[0], 1
    elif config.batch_first:
        batch, length = input.shape[0], input.shape[1]
    else:
        length, batch = input.shape[0], input.shape[1]
    output = input.new_empty(length, batch, d * h_out)
    h_n = input.new_empty(d * config.num_layers, batch, h_out)
    c_n = input.new_empty(d * config.num_layers, batch, config.hidden_size)
    if unbatched:
        output, h_n, c_n = output.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
    elif config.batch_first:
        output = output.transpose(0, 1)
    return output, h_n, c_n if _is_lstm(config) else _empty(input)


@torch.library.custom_op("rustrnn::stack_backward", mutates_args=())
def _backward_op(
    d_output: Tensor,
    d_hn: Tensor,
    d_cn: Optional[Tensor],
    need_input_grad: bool,
    input: Tensor,
    hx: Optional[Tensor],
    cx: Optional[Tensor],
    weights: List[Tensor],
    seed: Optional[Tensor],
    mode: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bias: bool,
    batch_first: bool,
    dropout: float,
    bidirectional: bool,
    proj_size: int,
    train: bool,
) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
    """Gradients of :func:`_forward_op`'s inputs, by recomputing its forward with a tape.

    Returns ``(d_input, d_hx, d_cx, d_weights)``, all contiguous; d_input is empty
    unless need_input_grad, d_cx unless LSTM.
    """
    config = _Config(
        mode,
        input_size,
        hidden_size,
        num_layers,
        bias,
        batch_first,
        dropout,
        bidirectional,
        proj_size,
    )
    _, _, _, tape = _run(config, input, hx, cx, weights, seed, train, True)
    d_input, d_hx, d_cx, d_weights = tape.backward(d_output, d_hn, d_cn, need_input_grad)
    return (
        _empty(input) if d_input is None else d_input.contiguous(),
        d_hx.contiguous(),
        _empty(input) if d_cx is None else d_cx.contiguous(),
        [w.contiguous() for w in d_weights],
    )


@_backward_op.register_fake
def _backward_fake(d_output, d_hn, d_cn, need_input_grad, input, hx, cx, weights, *rest):
    d_input = input.new_empty(input.shape) if need_input_grad else _empty(input)
    d_cx = _empty(input) if d_cn is None else d_cn.new_empty(d_cn.shape)
    return d_input, d_hn.new_empty(d_hn.shape), d_cx, [w.new_empty(w.shape) for w in weights]


def _setup_context(ctx, inputs, output):
    input, hx, cx, weights, seed, *config_and_train = inputs
    ctx.save_for_backward(input, hx, cx, seed, *weights)
    ctx.config_and_train = config_and_train


def _backward(ctx, d_output, d_hn, d_cn):
    input, hx, cx, seed, *weights = ctx.saved_tensors
    config_and_train = ctx.config_and_train
    need_input_grad = ctx.needs_input_grad[0]
    lstm = _is_lstm(_Config(*config_and_train[:-1]))
    d_input, d_hx, d_cx, d_weights = _backward_op(
        d_output,
        d_hn,
        d_cn if lstm else None,
        need_input_grad,
        input,
        hx,
        cx,
        weights,
        seed,
        *config_and_train,
    )
    return (
        d_input if need_input_grad else None,
        None if hx is None else d_hx,
        None if cx is None else d_cx,
        d_weights,
        None,  # seed
        *(None for _ in config_and_train),
    )


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def stack_forward(module, input: Tensor, h0: Optional[Tensor], c0: Optional[Tensor]):
    """:meth:`RNNBase.forward` through the custom op: what torch.compile and export trace.

    Args:
        module: the :class:`RNNBase` whose configuration and parameters to use.
        input: as for :meth:`RNNBase.forward`.
        h0, c0: the initial state, split by ``module._split_state``.

    Returns:
        ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM.
    """
    # The spec the eager path runs, not the module's attributes (which torch.nn keeps
    # as given, e.g. a truthy non-bool bidirectional).
    config = _Config(*module._spec.arguments)
    train = module.training and config.dropout > 0 and config.num_layers > 1
    # A seed below 2**62 from torch's default generator, as a tensor so that it is
    # drawn anew on every call of the compiled graph.
    seed = torch.randint(1 << 62, (), dtype=torch.int64) if train else None
    output, h_n, c_n = _forward_op(input, h0, c0, module._flat_weights, seed, *config, train)
    return output, module._pack_state(h_n, c_n)  # c_n is dropped unless LSTM


@torch.library.custom_op("rustrnn::dropout_mask", mutates_args=())
def _dropout_mask_op(like: Tensor, p: float, seed: Tensor) -> Tensor:
    """rustrnn's dropout mask for ``like`` (its shape, dtype and device), drawn with
    torch's generator seeded from ``seed``: the same for the same seed."""
    with _seeded(like.device, seed):
        return _rustrnn.dropout_mask(like, p)


@_dropout_mask_op.register_fake
def _dropout_mask_fake(like, p, seed):
    return torch.empty_like(like, memory_format=torch.contiguous_format)


def dropout(input: Tensor, p: float) -> Tensor:
    """:func:`rustrnn.functional.dropout` in training mode, as torch.compile traces it: the
    mask is a custom op of a seed drawn in the graph (anew on every call), the product
    with it is torch's, so autograd and Inductor see plain ops."""
    seed = torch.randint(1 << 62, (), dtype=torch.int64)
    return input * _dropout_mask_op(input.detach(), p, seed)
