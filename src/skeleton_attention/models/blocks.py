"""Building blocks shared by the LSTM attention families (not a model family itself).

* :class:`SpatialAttention`: joint-selection gates, an attention LSTM, two FC layers and a softmax
  over the K joints (STA-LSTM eq. 2-3; the view-attention network's eq. 1-3 has the same form).
* :class:`TemporalAttention`: a frame-selection gate, an attention LSTM, one FC layer to a scalar
  and a ReLU (STA-LSTM eq. 6; the view-attention network's eq. 4).
* :func:`previous_hidden`: the attention LSTM's state ``h_{t-1}`` aligned with the input ``x_t``.
* :func:`init_gaussian_` / :func:`init_pytorch_`: the initializations both families offer.

Sizes (attention LSTM units, FC width) are constructor arguments: STA-LSTM uses 100 units, the
view-attention network 128. The modules keep the parameter names STA-LSTM's artifacts were saved
with (``lstm``, ``w_x``, ``w_h``, ``u``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def previous_hidden(lstm: nn.LSTM, x: Tensor) -> Tensor:
    """Hidden states ``h_{t-1}`` aligned with ``x_t``: the LSTM's outputs shifted one step later.

    The attention equations combine the current input ``x_t`` with ``h_{t-1}``, the attention
    LSTM's state after ``x_1..x_{t-1}``; at t = 1 that is the zero initial state.
    """
    out, _ = lstm(x)
    return torch.cat([out.new_zeros(out.shape[0], 1, out.shape[2]), out[:, :-1]], dim=1)


class SpatialAttention(nn.Module):
    """Joint-selection gates: an LSTM layer, two FC layers and a softmax over joints.

    ``s_t = U tanh(W_x x_t + W_h h_{t-1} + b) + b_u`` and ``alpha_t = softmax_k(s_t)``.
    """

    def __init__(self, in_features: int, num_points: int, lstm_size: int, fc_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_features, lstm_size, batch_first=True)
        self.w_x = nn.Linear(in_features, fc_size)  # W_xs and b_s
        self.w_h = nn.Linear(lstm_size, fc_size, bias=False)  # W_hs (b_s is already in w_x)
        self.u = nn.Linear(fc_size, num_points)  # U_s and b_us

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (N, T, K*C) -> ``alpha`` (N, T, K), summing to one over K at every frame."""
        h_prev = previous_hidden(self.lstm, x)
        scores = self.u(torch.tanh(self.w_x(x) + self.w_h(h_prev)))
        return torch.softmax(scores, dim=-1)


class TemporalAttention(nn.Module):
    """Frame-selection gate: an LSTM layer, one FC layer to a scalar and a ReLU.

    ``beta_t = ReLU(w_x x_t + w_h h_{t-1} + b)``.
    """

    def __init__(self, in_features: int, lstm_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_features, lstm_size, batch_first=True)
        self.w_x = nn.Linear(in_features, 1)  # w_x and b
        self.w_h = nn.Linear(lstm_size, 1, bias=False)  # w_h

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (N, T, K*C) -> ``beta`` (N, T), non-negative."""
        h_prev = previous_hidden(self.lstm, x)
        return torch.relu(self.w_x(x) + self.w_h(h_prev)).squeeze(-1)


def init_gaussian_(module: nn.Module, std: float | None) -> None:
    """Gaussian weights; biases zero (STA-LSTM Algorithm 1 step 1).

    ``std=None`` scales each matrix by its fan-in (std = 1/sqrt(columns)), which keeps the
    pre-activations of order one for any input width; a float uses that std everywhere.
    """
    for name, param in module.named_parameters():
        if "weight" in name:
            nn.init.normal_(param, 0.0, std if std is not None else 1.0 / math.sqrt(param.shape[1]))
        else:
            nn.init.zeros_(param)


def init_pytorch_(module: nn.Module) -> None:
    """PyTorch's default (uniform) initialization of every LSTM and Linear layer in ``module``."""
    for sub in module.modules():
        if isinstance(sub, nn.LSTM | nn.Linear):
            sub.reset_parameters()
