"""The original GRU of Cho et al. (2014), as GRU4Rec uses it.

Equations (row vectors; ``x`` input, ``h`` previous state)::

    r  = sigmoid(x W_r + h U_r + b_r)            # reset gate
    z  = sigmoid(x W_z + h U_z + b_z)            # update gate
    h~ = tanh(x W_h + (r * h) U_h + b_h)         # reset applied BEFORE the recurrent matmul
    h' = (1 - z) * h + z * h~

This is Keras' ``GRU(reset_after=False)`` semantics, *not* the default
``reset_after=True`` (cuDNN) variant of Keras and PyTorch, where the reset gate
multiplies ``h U_h`` after the matmul (that variant, as PyTorch's ``nn.GRUCell``
and the official GRU4Rec PyTorch port use it, is
:class:`tfpps.layers.reset_after_gru.ResetAfterGRUCell`; GRU4Rec picks one with
``model_params.gru_cell``).

Weight layout follows the official GRU4Rec code (``GRULayer`` of
``hidasib/GRU4Rec_Tensorflow_Official``; ``Wx``/``Wrz``/``Wh`` of the Theano
original) so weights can be exchanged with it:

``Wx``  ``[D, 3H]``: input weights, column blocks ``[h~ | r | z]``
``Wrz`` ``[H, 2H]``: recurrent weights of the gates, blocks ``[r | z]``
``Wh``  ``[H, H]``:  recurrent weights of the candidate
``b``   ``[3H]``:    biases, blocks ``[h~ | r | z]``, initialised to 0

Initialisation (official "compatibility mode"): every gate block is drawn
separately from ``U(-s, s)`` with ``s = sqrt(6 / (fan_in + H))``, i.e. a
Glorot-uniform scale computed per gate, not over the stacked matrix.

With ``sparse_input_dim=N`` the input is an item id and ``Wx`` is an ``[N, 3H]``
table looked up with ``tf.gather`` (GRU4Rec's one-hot input mode,
``GRUEmbedding`` in the official code), so its gradient stays sparse
(``tf.IndexedSlices``).

Example::

    cell = ChoGRUCell(8)
    cell.build(tf.TensorShape([None, 4]))
    h1 = cell(tf.ones([2, 4]), tf.zeros([2, 8]))                    # one step
    outs, last = cell.run_sequence(tf.ones([2, 5, 4]), mask=tf.sequence_mask([5, 2], 5))
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

import tensorflow as tf


def numpy_sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in NumPy as ``(1 + tanh(x / 2)) / 2``: no overflow for large ``|x|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


NUMPY_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}  # the candidate's, for numpy_step


class GateStackedUniform(tf.keras.initializers.Initializer):
    """``U(-s, s)``, ``s = sqrt(6 / (rows + cols / n_gates))``: Glorot-uniform per stacked gate block.

    For an ``[D, k*H]`` matrix of ``k`` stacked gates this is the official
    GRU4Rec init (``init_weights_2D(D, k*H, dim1_scale=k)``), identical in
    distribution to drawing each ``[D, H]`` block with its own Glorot scale.
    """

    def __init__(self, n_gates: int = 1, seed: int | None = None):
        self.n_gates = int(n_gates)
        self.seed = seed

    def __call__(self, shape, dtype=None, **kwargs):
        dtype = dtype or tf.float32
        rows, cols = int(shape[0]), int(shape[1])
        limit = math.sqrt(6.0 / (rows + cols / self.n_gates))
        if self.seed is None:
            return tf.random.uniform(shape, -limit, limit, dtype=dtype)
        return tf.random.stateless_uniform(shape, seed=[int(self.seed), 0], minval=-limit, maxval=limit, dtype=dtype)

    def get_config(self):
        return {"n_gates": self.n_gates, "seed": self.seed}


class ChoGRUCell(tf.keras.layers.Layer):
    """One layer of the original (Cho et al. 2014) GRU, step-wise or over a masked sequence.

    Args:
      units: ``H``, the state size.
      sparse_input_dim: if set, inputs are integer ids into an ``[N, 3H]``
        input-weight table (one-hot input); otherwise inputs are dense ``[.., D]``.
      seed: initialiser seed (``None``: TF's global seed).
      activation: of the candidate state, ``tanh`` (default) or ``relu``
        (HGRU4Rec's ``hidden_act``).
    """

    ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu}

    def __init__(
        self, units: int, sparse_input_dim: int | None = None, seed: int | None = None, activation: str = "tanh", **kwargs
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.sparse_input_dim = sparse_input_dim
        self.seed = seed
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {', '.join(self.ACTIVATIONS)}")
        self.activation = activation
        self._act = self.ACTIVATIONS[activation]

    def build(self, input_shape):
        h = self.units
        in_dim = self.sparse_input_dim if self.sparse_input_dim else int(tf.TensorShape(input_shape)[-1])
        s = None if self.seed is None else int(self.seed)
        self.Wx = self.add_weight("Wx", [in_dim, 3 * h], initializer=GateStackedUniform(3, s))
        self.Wrz = self.add_weight("Wrz", [h, 2 * h], initializer=GateStackedUniform(2, None if s is None else s + 1))
        self.Wh = self.add_weight("Wh", [h, h], initializer=GateStackedUniform(1, None if s is None else s + 2))
        self.b = self.add_weight("b", [3 * h], initializer="zeros")
        super().build(input_shape)

    # ------------------------------------------------------------------ pieces
    def project_inputs(self, x: tf.Tensor) -> tf.Tensor:
        """``x W_x + b`` for any leading shape: ``[..., D]`` (or ids ``[...]``) -> ``[..., 3H]``."""
        if self.sparse_input_dim:
            return tf.gather(self.Wx, x) + self.b
        if x.shape.rank == 2:
            return tf.matmul(x, self.Wx) + self.b
        return tf.tensordot(x, self.Wx, axes=1) + self.b

    def recurrent_step(self, vx: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """One step from the projected input ``vx = x W_x + b`` (``[B, 3H]``) and state ``h`` (``[B, H]``)."""
        vx_h, vx_r, vx_z = tf.split(vx, 3, axis=-1)
        vh_r, vh_z = tf.split(tf.matmul(h, self.Wrz), 2, axis=-1)
        r = tf.sigmoid(vx_r + vh_r)
        z = tf.sigmoid(vx_z + vh_z)
        cand = self._act(tf.matmul(r * h, self.Wh) + vx_h)
        return (1.0 - z) * h + z * cand

    def numpy_project(self) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`project_inputs` in NumPy on a snapshot of the weights: ``project(x)``, ids ``[M]`` or
        inputs ``[M, D]`` -> ``[M, 3H]``."""
        w, b = self.Wx.numpy(), self.b.numpy()
        return (lambda x: w[x] + b) if self.sparse_input_dim else (lambda x: x @ w + b)

    def numpy_step(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """:meth:`recurrent_step` in NumPy on a snapshot of the weights: ``step(vx, h) -> h'``.

        For inference loops run step by step outside a traced function (GRU4Rec's streamed evaluation),
        where TensorFlow's per-operation dispatch in eager mode costs more than the arithmetic. Equal to
        :meth:`recurrent_step` up to float rounding.
        """
        w_rz, w_h = self.Wrz.numpy(), self.Wh.numpy()
        act = NUMPY_ACTIVATIONS[self.activation]
        u = self.units

        def step(vx: np.ndarray, h: np.ndarray) -> np.ndarray:
            vh = h @ w_rz
            r = numpy_sigmoid(vx[:, u : 2 * u] + vh[:, :u])
            z = numpy_sigmoid(vx[:, 2 * u :] + vh[:, u:])
            return (1.0 - z) * h + z * act((r * h) @ w_h + vx[:, :u])

        return step

    def call(self, x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """One step: ``x`` ``[B, D]`` (or ids ``[B]``), ``h`` ``[B, H]`` -> new state ``[B, H]``."""
        return self.recurrent_step(self.project_inputs(x), h)

    def run_sequence(
        self,
        x: tf.Tensor,
        mask: tf.Tensor | None = None,
        h0: tf.Tensor | None = None,
        output_dropout_mask: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Run over a ``[B, L, D]`` sequence (or ids ``[B, L]``).

        Steps where ``mask`` (``[B, L]`` bool) is False carry the previous
        state unchanged (padding). The input projection of all steps is one
        matmul; only the recurrent part runs in the loop.

        ``output_dropout_mask`` (``[B, L, H]``, already scaled by ``1/keep``)
        multiplies each new state before it is carried, as GRU4Rec's hidden
        dropout does (the dropped-out output is also the next state).

        Returns ``(outputs [B, L, H], last_state [B, H])``.
        """
        vx = self.project_inputs(x)  # [B, L, 3H]
        batch = tf.shape(vx)[0]
        if h0 is None:
            h0 = tf.zeros([batch, self.units], dtype=vx.dtype)
        vx_t = tf.transpose(vx, [1, 0, 2])  # [L, B, 3H]
        if mask is None:
            mask = tf.ones(tf.shape(vx)[:2], dtype=tf.bool)
        mask_t = tf.transpose(tf.cast(mask, tf.bool), [1, 0])[:, :, None]  # [L, B, 1]
        elems = [vx_t, mask_t]
        if output_dropout_mask is not None:
            elems.append(tf.transpose(output_dropout_mask, [1, 0, 2]))

        def step(h_prev, inp):
            h_new = self.recurrent_step(inp[0], h_prev)
            if len(inp) == 3:
                h_new = h_new * inp[2]
            return tf.where(inp[1], h_new, h_prev)

        outs = tf.scan(step, tuple(elems), initializer=h0)  # [L, B, H]
        outputs = tf.transpose(outs, [1, 0, 2])
        last = tf.cond(tf.shape(outs)[0] > 0, lambda: outs[-1], lambda: h0)
        return outputs, last

    def get_config(self):
        return {**super().get_config(), "units": self.units, "sparse_input_dim": self.sparse_input_dim, "seed": self.seed,
                "activation": self.activation}
