"""Quantize layer: quantization-aware training (QKeras) with optional magnitude pruning (tfmot).

``train`` works the same on the float twin and the QKeras model: Adam on logits, early stopping on the
validation loss, best weights restored, pruning wrappers stripped before the model is returned.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def set_seed(seed: int) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _prunable(layer) -> bool:
    import tensorflow as tf

    return isinstance(layer, (tf.keras.layers.Dense, tf.keras.layers.Conv1D, tf.keras.layers.Conv2D))


def apply_pruning(model, sparsity: float, begin_step: int, frequency: int = 50):
    """Wrap every Dense/Conv layer for magnitude pruning to a constant target ``sparsity``."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=begin_step, frequency=frequency)

    def wrap(layer):
        if _prunable(layer):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf.keras.models.clone_model(model, clone_function=wrap)


def strip_pruning(model):
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def sparsity_of(model) -> float:
    """Fraction of exactly-zero kernel weights over Dense/Conv layers."""
    zeros = total = 0
    for layer in model.layers:
        if _prunable(layer):
            kernel = layer.get_weights()[0]
            zeros += int(np.sum(kernel == 0))
            total += kernel.size
    return zeros / total if total else 0.0


def _early_stopping(patience: int):
    """EarlyStopping that restores the best weights also when training runs all epochs (Keras 2.14 does not)."""
    import tensorflow as tf

    class _RestoreBest(tf.keras.callbacks.EarlyStopping):
        def on_train_end(self, logs=None):
            super().on_train_end(logs)
            if self.stopped_epoch == 0 and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return _RestoreBest(patience=patience, restore_best_weights=True)


def _progress_callback(on_epoch: Callable[[int, dict], None]):
    import tensorflow as tf

    class _Progress(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            on_epoch(epoch, logs or {})

    return _Progress()


def train(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    sparsity: float = 0.0,
    loss: str = "sparse_categorical_crossentropy_logits",
    on_epoch: Callable[[int, dict], None] | None = None,
):
    """Train ``model`` in place of a copy and return the trained (pruning-stripped) model and its history."""
    import tensorflow as tf

    steps_per_epoch = max(1, int(np.ceil(len(x_train) / batch_size)))
    callbacks: list = [tf.keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(1, patience // 2))]
    if sparsity > 0:
        import tensorflow_model_optimization as tfmot

        # No early stopping: restoring the best weights could bring back weights from before full sparsity.
        model = apply_pruning(model, sparsity, begin_step=2 * steps_per_epoch)
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    else:
        callbacks.append(_early_stopping(patience))
    if on_epoch is not None:
        callbacks.append(_progress_callback(on_epoch))
    if loss == "sparse_categorical_crossentropy_logits":
        keras_loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
    else:
        keras_loss, metrics = loss, []
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=keras_loss, metrics=metrics)
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )
    if sparsity > 0:
        model = strip_pruning(model)
    return model, history.history
