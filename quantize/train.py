"""Quantize layer: quantization-aware training (QKeras) with optional magnitude pruning (tfmot).

``train`` works the same on the float twin and the QKeras model: Adam on logits, early stopping on the
validation loss, best weights restored, pruning wrappers stripped before the model is returned.
``train_twins`` trains both with the same data, seed and schedule (the run's training stage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trigflow.config import RunConfig
    from trigflow.data.prepare import Prepared

PRUNING_BEGIN_EPOCHS = 2  # pruning starts after this many epochs of dense training

@dataclass
class Trained:
    """Trained twins; ``deploy_*`` are the models that go to firmware (default: the trained models)."""

    qmodel: Any
    float_model: Any
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    deploy_qmodel: Any = None
    deploy_float_model: Any = None

    def __post_init__(self) -> None:
        self.deploy_qmodel = self.deploy_qmodel or self.qmodel
        self.deploy_float_model = self.deploy_float_model or self.float_model


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
    w_train: np.ndarray | None = None,
    w_val: np.ndarray | None = None,
):
    """Train ``model`` in place of a copy and return the trained (pruning-stripped) model and its history.
    ``w_train`` / ``w_val``: per-sample loss weights (a weighted sample); None trains unweighted."""
    import tensorflow as tf

    steps_per_epoch = max(1, int(np.ceil(len(x_train) / batch_size)))
    callbacks: list = [tf.keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(1, patience // 2))]
    if sparsity > 0:
        import tensorflow_model_optimization as tfmot

        # No early stopping: restoring the best weights could bring back weights from before full sparsity.
        model = apply_pruning(model, sparsity, begin_step=PRUNING_BEGIN_EPOCHS * steps_per_epoch)
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
        sample_weight=w_train,
        validation_data=(x_val, y_val) if w_val is None else (x_val, y_val, w_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )
    if sparsity > 0:
        model = strip_pruning(model)
    return model, history.history


def train_twins(recipe: Any, prepared: Prepared, config: RunConfig, ui: Any, *, targets: str = "labels") -> Trained:
    """Train the float twin and the QKeras model (``recipe.build(prepared, config, quantized)``) with the same
    data, seed and schedule; ``ui.stage`` shows the epochs.

    ``targets="labels"``: classification on logits; ``targets="inputs"``: reconstruction (autoencoders).
    ``prepared.extra["w_train"]`` / ``["w_val"]``, when a kind sets them, weight each sample's loss.
    """
    q = config.quant
    autoencoder = targets == "inputs"
    y_train = prepared.x_train if autoencoder else prepared.y_train
    y_val = prepared.x_val if autoencoder else prepared.y_val
    models: dict[bool, Any] = {}
    history: dict[str, dict[str, list[float]]] = {}
    for quantized in (False, True):
        label = "QKeras (QAT)" if quantized else "float twin"
        set_seed(config.seed)
        model = recipe.build(prepared, config, quantized)
        metric = "val_loss" if autoencoder else "val_accuracy"
        with ui.stage(f"train {label}", total=q.epochs) as advance:
            model, hist = train(
                model,
                prepared.x_train,
                y_train,
                prepared.x_val,
                y_val,
                epochs=q.epochs,
                batch_size=q.batch_size,
                learning_rate=q.learning_rate,
                patience=q.patience,
                sparsity=q.sparsity,
                loss="mse" if autoencoder else "sparse_categorical_crossentropy_logits",
                on_epoch=lambda epoch, logs, a=advance, lb=label: a(
                    1, f"train {lb} · epoch {epoch + 1} · {metric} {logs.get(metric, 0):.4f}"
                ),
                w_train=prepared.extra.get("w_train"),
                w_val=prepared.extra.get("w_val"),
            )
        models[quantized] = model
        history["qkeras" if quantized else "float"] = {k: [float(v) for v in vs] for k, vs in hist.items()}
    return Trained(qmodel=models[True], float_model=models[False], history=history)
