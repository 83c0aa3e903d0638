"""The "reset after" GRU of PyTorch's ``nn.GRUCell`` (and cuDNN, Keras ``reset_after=True``).

Equations (row vectors; ``x`` input, ``h`` previous state), exactly PyTorch's::

    r  = sigmoid(x W_ir + b_ir + h W_hr + b_hr)          # reset gate
    z  = sigmoid(x W_iz + b_iz + h W_hz + b_hz)          # update gate
    n  = tanh(x W_in + b_in + r * (h W_hn + b_hn))       # reset applied AFTER the recurrent matmul
    h' = (1 - z) * n + z * h

so ``z`` is the share of the OLD state kept (the Cho cell of
:mod:`tfpps.layers.cho_gru` uses the opposite convention, ``h' = (1 - z) h + z h~``,
and multiplies ``h`` by ``r`` before its recurrent matmul).

The official GRU4Rec PyTorch port (``hidasib/GRU4Rec_PyTorch_Official``) uses
``nn.GRUCell`` for every layer it feeds with an embedding; in one-hot input
mode its first layer is ``GRUEmbedding``: the same reset-after update with a
single (input-side) bias, i.e. no ``b_hh`` (``recurrent_bias=False`` here; its
``[h~ | r | z]`` block order and Cho-style ``z`` are a re-parametrisation of the
same function family).

Weight layout: PyTorch's matrices transposed, gate blocks in PyTorch order
``[r | z | n]``, so weights exchange with ``nn.GRUCell`` by a transpose:

``W_ih`` ``[D, 3H]``  = ``weight_ih.T``  (a ``[N, 3H]`` table with ``sparse_input_dim=N``)
``W_hh`` ``[H, 3H]``  = ``weight_hh.T``
``b_ih`` ``[3H]``     = ``bias_ih``
``b_hh`` ``[3H]``     = ``bias_hh`` (absent with ``recurrent_bias=False``)

Initialisation, as the official GRU4Rec PyTorch code trains by default
(``fit(compatibility_mode=True)`` -> ``_reset_weights_to_compatibility_mode``):
every gate block of ``W_ih`` and ``W_hh`` is drawn from ``U(-s, s)`` with
``s = sqrt(6 / (fan_in + H))`` (Glorot per gate), biases 0. (Its other path,
``reset_parameters``, calls ``init_parameter_matrix(weight_ih, dim1_scale=3)``
on PyTorch's ``[3H, D]`` layout, i.e. ``s = sqrt(6 / (3H + D/3))``; it is
overwritten whenever ``compatibility_mode`` is on, the default.)

Example::

    cell = ResetAfterGRUCell(8)
    cell.build(tf.TensorShape([None, 4]))
    h1 = cell(tf.ones([2, 4]), tf.zeros([2, 8]))
    outs, last = cell.run_sequence(tf.ones([2, 5, 4]), mask=tf.sequence_mask([5, 2], 5))
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import tensorflow as tf

from tfpps.layers.cho_gru import NUMPY_ACTIVATIONS, ChoGRUCell, GateStackedUniform, numpy_sigmoid


class ResetAfterGRUCell(ChoGRUCell):
    """One layer of PyTorch's ``nn.GRUCell`` GRU, step-wise or over a masked sequence.

    Same interface as :class:`~tfpps.layers.cho_gru.ChoGRUCell` (``call``,
    ``project_inputs``, ``recurrent_step``, ``run_sequence``).

    Args:
      units: ``H``, the state size.
      sparse_input_dim: if set, inputs are integer ids into an ``[N, 3H]`` input-weight table.
      seed: initialiser seed (``None``: TF's global seed).
      activation: of the candidate ``n``, ``tanh`` (default) or ``relu``.
      recurrent_bias: whether the cell has ``b_hh`` (PyTorch's ``GRUCell``: yes;
        GRU4Rec's one-hot ``GRUEmbedding``: no).
    """

    def __init__(self, units: int, sparse_input_dim: int | None = None, seed: int | None = None,
                 activation: str = "tanh", recurrent_bias: bool = True, **kwargs):
        super().__init__(units, sparse_input_dim=sparse_input_dim, seed=seed, activation=activation, **kwargs)
        self.recurrent_bias = bool(recurrent_bias)

    def build(self, input_shape):
        h = self.units
        in_dim = self.sparse_input_dim if self.sparse_input_dim else int(tf.TensorShape(input_shape)[-1])
        s = None if self.seed is None else int(self.seed)
        self.W_ih = self.add_weight("W_ih", [in_dim, 3 * h], initializer=GateStackedUniform(3, s))
        self.W_hh = self.add_weight("W_hh", [h, 3 * h], initializer=GateStackedUniform(3, None if s is None else s + 1))
        self.b_ih = self.add_weight("b_ih", [3 * h], initializer="zeros")
        self.b_hh = self.add_weight("b_hh", [3 * h], initializer="zeros") if self.recurrent_bias else None
        tf.keras.layers.Layer.build(self, input_shape)

    def project_inputs(self, x: tf.Tensor) -> tf.Tensor:
        """``x W_ih + b_ih`` for any leading shape: ``[..., D]`` (or ids ``[...]``) -> ``[..., 3H]``."""
        if self.sparse_input_dim:
            return tf.gather(self.W_ih, x) + self.b_ih
        if x.shape.rank == 2:
            return tf.matmul(x, self.W_ih) + self.b_ih
        return tf.tensordot(x, self.W_ih, axes=1) + self.b_ih

    def recurrent_step(self, vx: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """One step from the projected input ``vx = x W_ih + b_ih`` (``[B, 3H]``) and state ``h`` (``[B, H]``)."""
        vh = tf.matmul(h, self.W_hh)
        if self.b_hh is not None:
            vh = vh + self.b_hh
        vx_r, vx_z, vx_n = tf.split(vx, 3, axis=-1)
        vh_r, vh_z, vh_n = tf.split(vh, 3, axis=-1)
        r = tf.sigmoid(vx_r + vh_r)
        z = tf.sigmoid(vx_z + vh_z)
        n = self._act(vx_n + r * vh_n)
        return (1.0 - z) * n + z * h

    def numpy_project(self) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`project_inputs` in NumPy on a snapshot of the weights (see :meth:`ChoGRUCell.numpy_project`)."""
        w, b = self.W_ih.numpy(), self.b_ih.numpy()
        return (lambda x: w[x] + b) if self.sparse_input_dim else (lambda x: x @ w + b)

    def numpy_step(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """:meth:`recurrent_step` in NumPy on a snapshot of the weights (see :meth:`ChoGRUCell.numpy_step`)."""
        w_hh = self.W_hh.numpy()
        b_hh = 0.0 if self.b_hh is None else self.b_hh.numpy()
        act = NUMPY_ACTIVATIONS[self.activation]
        u = self.units

        def step(vx: np.ndarray, h: np.ndarray) -> np.ndarray:
            vh = h @ w_hh + b_hh
            r = numpy_sigmoid(vx[:, :u] + vh[:, :u])
            z = numpy_sigmoid(vx[:, u : 2 * u] + vh[:, u : 2 * u])
            return (1.0 - z) * act(vx[:, 2 * u :] + r * vh[:, 2 * u :]) + z * h

        return step

    def get_config(self):
        return {**super().get_config(), "recurrent_bias": self.recurrent_bias}
