"""GRU4Rec's optimiser: Adagrad with momentum, with sparse (row-wise) updates.

Update of a variable ``w`` with gradient ``g`` (official ``IndexedAdagradM`` of
``hidasib/GRU4Rec_PyTorch_Official``, ``AdagradM`` of the TF port, and the
``adagrad`` + ``momentum`` path of the Theano original)::

    acc <- acc + g^2
    u    = g / sqrt(acc + epsilon)               # epsilon inside the sqrt, 1e-6
    if momentum > 0:
        mom <- momentum * mom - learning_rate * u
        w   <- w + mom
    else:
        w   <- w - learning_rate * u

The official docstrings call this "Nesterov momentum"; the arithmetic is the
one above (velocity update, then ``w += velocity``), reproduced exactly.

Sparse gradients (``tf.IndexedSlices``, what ``tf.gather`` on an embedding
table produces) update only the gathered rows of ``w``, ``acc`` and ``mom``;
rows not in the batch keep their momentum untouched (a dense update would
keep moving them). Duplicate indices are summed first (Keras'
``_resource_apply_sparse_duplicate_indices``), which is the "correct"
aggregation of the official PyTorch code (``grad.coalesce()``): a row used
``k`` times gets one update with the summed gradient.

``momentum = 0`` is plain Adagrad with zero initial accumulator and
``epsilon`` inside the square root.

Example::

    opt = AdagradM(learning_rate=0.05, momentum=0.2)
    model.compile(optimizer=opt, steps_per_execution=50)
"""
from __future__ import annotations

import tensorflow as tf


class AdagradM(tf.keras.optimizers.legacy.Optimizer):
    """Adagrad with (heavy-ball) momentum and row-sparse updates, as in the official GRU4Rec.

    Args:
      learning_rate: step size (float or schedule).
      momentum: momentum strength; 0 disables the momentum slot.
      epsilon: added to the accumulator inside the square root.
    """

    def __init__(self, learning_rate=0.05, momentum: float = 0.0, epsilon: float = 1e-6, name: str = "AdagradM", **kwargs):
        if momentum < 0:
            raise ValueError(f"momentum={momentum!r}: must be >= 0")
        if epsilon <= 0:
            raise ValueError(f"epsilon={epsilon!r}: must be > 0")
        super().__init__(name, **kwargs)
        self._set_hyper("learning_rate", kwargs.get("lr", learning_rate))
        self._set_hyper("momentum", float(momentum))
        self._use_momentum = float(momentum) > 0
        self.epsilon = float(epsilon)

    def _create_slots(self, var_list):
        for var in var_list:
            self.add_slot(var, "accumulator", initializer="zeros")
            if self._use_momentum:
                self.add_slot(var, "momentum", initializer="zeros")

    def _prepare_local(self, var_device, var_dtype, apply_state):
        super()._prepare_local(var_device, var_dtype, apply_state)
        coeffs = apply_state[(var_device, var_dtype)]
        coeffs["momentum"] = tf.identity(self._get_hyper("momentum", var_dtype))
        coeffs["epsilon"] = tf.constant(self.epsilon, var_dtype)

    def _coefficients(self, var, apply_state):
        key = (var.device, var.dtype.base_dtype)
        return (apply_state or {}).get(key) or self._fallback_apply_state(*key)

    def _resource_apply_dense(self, grad, var, apply_state=None):
        c = self._coefficients(var, apply_state)
        acc = self.get_slot(var, "accumulator")
        acc_t = acc.assign_add(tf.square(grad), read_value=True)
        update = grad / tf.sqrt(acc_t + c["epsilon"])
        if self._use_momentum:
            mom = self.get_slot(var, "momentum")
            mom_t = mom.assign(c["momentum"] * mom - c["lr_t"] * update, read_value=True)
            return var.assign_add(mom_t, read_value=False)
        return var.assign_sub(c["lr_t"] * update, read_value=False)

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        # indices are unique here: the base class summed duplicates first.
        c = self._coefficients(var, apply_state)
        acc = self.get_slot(var, "accumulator")
        acc_rows = tf.gather(acc, indices) + tf.square(grad)
        update = grad / tf.sqrt(acc_rows + c["epsilon"])
        ops = [tf.raw_ops.ResourceScatterUpdate(resource=acc.handle, indices=indices, updates=acc_rows)]
        if self._use_momentum:
            mom = self.get_slot(var, "momentum")
            step = c["momentum"] * tf.gather(mom, indices) - c["lr_t"] * update
            ops.append(tf.raw_ops.ResourceScatterUpdate(resource=mom.handle, indices=indices, updates=step))
        else:
            step = -c["lr_t"] * update
        ops.append(tf.raw_ops.ResourceScatterAdd(resource=var.handle, indices=indices, updates=step))
        return tf.group(*ops)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter("learning_rate"),
                "momentum": self._serialize_hyperparameter("momentum"),
                "epsilon": self.epsilon,
            }
        )
        return config


AdagradMomentum = AdagradM  # the name tfpps.optimizers.make_optimizer imports
