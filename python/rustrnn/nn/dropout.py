"""Dropout as a module, on rustrnn's mask generator."""

from torch import Tensor, nn

from .. import _rustrnn, functional


class Dropout(nn.Module):
    """:class:`torch.nn.Dropout` on :func:`rustrnn.functional.dropout`'s masks.

    Args:
        p: probability of an element being zeroed, in [0, 1]. Default: 0.5.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _rustrnn.check_dropout(p)
        self.p = p

    def forward(self, input: Tensor) -> Tensor:
        return functional.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
