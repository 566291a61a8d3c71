"""Proof layer: which GarNet firmware width makes hls4ml's GarNet differ from the user's float GarNet.

Trains the zoo's L1 jet-ID GarNet (``tests/firmware/zoo_graphs.py``: raw-unit jets, 8,000 jets, seed 0, 1
epoch as ``tests/firmware/test_zoo_graphs.py`` does, or ``--epochs``) and counts, on the 3,000 proof jets, the
samples whose logits differ from the user's float model:

* sweep (default): trigflow's mirror of the firmware (``GarNetMirror(...)``, the code ``trigflow verify``
  runs; firmware = mirror bit for bit) over distance type × (weight, distance-weight fraction bits) × the
  data·edge-weight products in the input type (hls4ml) or in ``weighted_feature``;
* ``--attribute``: a float64 emulator of the same arithmetic in which every rounding of the template can be
  switched off; it first checks that with all of them on it equals the mirror bit for bit, then keeps one
  approximation at a time (all others exact) — the share of each — at hls4ml's widths, trigflow's previous
  ones and the chosen ones.

    .venv/bin/python scripts/garnet_widths.py [--particles 16 8] [--bits 8 4] [--attribute] [--epochs 1]

Writes scripts/results/garnet_widths.json (the numbers in docs/verify_graphs.md). ~2 min per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DISTANCES = ("fixed<12,4,TRN,SAT>", "fixed<15,3,TRN,SAT>", "fixed<15,3,RND,SAT>", "fixed<17,3,RND,SAT>",
             "fixed<18,3,RND,SAT>", "fixed<19,3,RND,SAT>", "fixed<20,3,TRN,SAT>", "fixed<20,3,RND,SAT>")
WEIGHT_FRACS = ((10, 10), (14, 14), (16, 16), (16, 20))  # (weight_frac, distance_weight_frac)
# GarNetMirror arguments: hls4ml 1.3's hard-coded widths, trigflow's before the 20-epoch model, the chosen
WIDTHS = {
    "hls4ml": {"distance": "fixed<12,4,TRN,SAT>", "weight_frac": 10, "distance_weight_frac": 10,
               "wide_features": False},
    "previous": {"distance": "fixed<15,3,TRN,SAT>", "weight_frac": 14, "distance_weight_frac": 14,
                 "wide_features": False},
    "chosen": {},
}
N_PROOF = 3000


def _model(n: int, bits: int, epochs: int = 1) -> tuple[Any, list[np.ndarray], np.ndarray]:
    """The trained zoo GarNet up to its logits, the proof inputs [x, n_vertices] and their labels."""
    import tensorflow as tf

    sys.path.insert(0, str(ROOT / "tests" / "firmware"))
    import zoo_graphs

    from trigflow.kinds.gnn import n_valid

    x, y = zoo_graphs.raw_jets(n)
    tf.keras.utils.set_random_seed(0)
    model = zoo_graphs.garnet(n, bits)
    train_x = x[N_PROOF : N_PROOF + 8000]
    zoo_graphs.train(model, [train_x, n_valid(train_x)], y[N_PROOF : N_PROOF + 8000], epochs=epochs)
    logits = tf.keras.Model(model.inputs, model.get_layer("head").output)
    x = x[:N_PROOF]
    return logits, [x, n_valid(x)], y[:N_PROOF]


def _versus(y: np.ndarray, y_user: np.ndarray) -> dict[str, Any]:
    return {"differing": int(np.any(y != y_user, axis=1).sum()), "max_abs_diff": float(np.max(np.abs(y - y_user)))}


def sweep(logits, inputs, y_user) -> list[dict[str, Any]]:
    from trigflow.firmware.passes.garnet_mirror import GarNetMirror
    from trigflow.proof.reference import exact_predict

    rows = []
    for distance in DISTANCES:
        for frac, s_frac in WEIGHT_FRACS:
            for wide in (False, True):
                surgery = GarNetMirror(distance=distance, weight_frac=frac, distance_weight_frac=s_frac,
                                       wide_features=wide)
                mirror, _ = surgery.apply(logits)
                t = surgery.types["garnet"]
                row = {"distance": distance, "weight_frac": int(t["weight_frac"]),
                       "distance_weight_frac": int(t["distance_weight_frac"]),
                       "weighted_feature": t.get("weighted_feature", t["data"])}
                row.update(_versus(exact_predict(mirror, inputs), y_user))
                rows.append(row)
                print(f"  {distance} weights {row['weight_frac']}/{row['distance_weight_frac']} products "
                      f"{row['weighted_feature']}: {row['differing']} differ, "
                      f"max |Δ| {row['max_abs_diff']:.3g}", flush=True)
    return rows


def _emulate(layer, x: np.ndarray, nv: np.ndarray, exact: set[str]) -> np.ndarray:
    """GarNetHLS.call in numpy float64; each name in ``exact`` computes that step without rounding:
    distance (type and table index), exp (the table), weights (contracted transforms, output bias),
    distance_weights (S kernel and bias), data (the data·edge-weight products), edge_weight (its vertex
    mean), aggr, result."""
    from trigflow.models.gnn import GARNET_GRID
    from trigflow.quantize.fixed import FixedType

    t = layer.t

    def cast(v, fx, name):
        return v if name in exact else fx.cast(v)

    wi, bi, ws, bs, wo, bo = (np.asarray(w.numpy(), np.float64) for w in layer._weight_vars())
    a, p, o = (layer._aggregator_distance.units, layer._input_feature_transform.units,
               layer._output_feature_transform.units)
    wi, bi, wo = (cast(w, GARNET_GRID, "weights") for w in (wi, bi, wo))
    wo = np.transpose(wo.reshape(a, p, o), (2, 0, 1))
    big_w = cast((wi[None, None] * wo[:, :, None]).sum(-1), t["weight"], "weights")
    big_b = cast((bi[None, None] * wo).sum(-1), t["weight"], "weights")
    sk, sb = (cast(v, t["distance_weight"], "distance_weights") for v in (ws, bs))
    fb = cast(bo, t["weight"], "weights")
    n, nx = x.shape[1], x.shape[2]
    mask = (np.arange(n)[None, :] < nv).astype(np.float64)
    dt = t["distance"]
    dist = cast(sb, dt, "distance")[None, None, :] * np.ones_like(x[:, :, :1])
    for ix in range(nx):
        dist = cast(dist + cast(x[:, :, ix : ix + 1] * sk[ix][None, None, :], dt, "distance"), dt, "distance")
    ew = np.exp(-dist * dist)
    if "exp" not in exact:
        frac = 2 * dt.frac  # hls::exp returns the type of -d·d: 2·(W-I) fractional bits
        ew = t["edge_weight"].cast(np.floor(ew * 2.0**frac) / 2.0**frac)
        ew[dist == 0] = FixedType(False, t["edge_weight"].width, 0, "TRN", "SAT").hi
    ew = ew * mask[:, :, None]
    ew_mean = cast(ew.sum(1) / n, t["edge_weight"], "edge_weight")
    incr = cast(x[:, :, None, :] * ew[:, :, :, None], t["weighted_feature"], "data") * mask[:, :, None, None]
    aggr_t = t["aggr"]
    wf_mean = cast(incr.sum(1) / n, aggr_t, "aggr")
    bias = cast(cast(fb, aggr_t, "aggr")[None, :] * nv, aggr_t, "aggr")
    bias = cast(bias / n, FixedType(True, 64, 64 - aggr_t.frac, "TRN", "SAT"), "aggr")
    acc = cast(cast(bias, t["weight"], "weights"), t["result"], "result")
    for ia in range(a):
        agg = cast(ew_mean[:, ia : ia + 1] * big_b[:, ia][None, :], aggr_t, "aggr")
        for ix in range(nx):
            agg = cast(agg + wf_mean[:, ia, ix : ix + 1] * big_w[:, ia, ix][None, :], aggr_t, "aggr")
        acc = cast(acc + ew_mean[:, ia : ia + 1] * agg, t["result"], "result")
    return acc


def attribute(logits, inputs, y_user, widths: str) -> dict[str, Any]:
    """One approximation at a time (all others exact), at ``WIDTHS[widths]``; plus all on / all off."""
    import tensorflow as tf

    from trigflow.firmware.passes.garnet_mirror import GarNetMirror
    from trigflow.models.gnn import GARNET_WIDTH_KEYS
    from trigflow.proof.reference import exact_predict

    print(f"  attribution at {widths} widths", flush=True)
    surgery = GarNetMirror(**WIDTHS[widths])
    mirror, _ = surgery.apply(logits)
    layer = mirror.get_layer("garnet")
    xq = tf.keras.Model(logits.inputs[0], logits.get_layer("input_q").output).predict(inputs[0], verbose=0)
    xq, nv = np.asarray(xq, np.float64), np.asarray(inputs[1], np.float64).reshape(-1, 1)
    g_in = tf.keras.Input(layer.output.shape[1:])
    h = g_in
    for name in ("dense1", "relu1", "head"):
        h = logits.get_layer(name)(h)
    head = tf.keras.Model(g_in, h)
    garnet_out = tf.keras.Model(mirror.inputs, layer.output).predict([inputs[0], nv], verbose=0)
    steps = ("distance", "exp", "weights", "distance_weights", "data", "edge_weight", "aggr", "result")
    emulated = _emulate(layer, xq, nv, set())
    if not np.array_equal(emulated, np.asarray(garnet_out, np.float64)):
        raise SystemExit("the emulator does not equal the mirror: fix _emulate before reading its numbers")
    t = surgery.types["garnet"]
    out: dict[str, Any] = {"widths": widths, **{k: t.get(k, t["data"]) for k in GARNET_WIDTH_KEYS},
                           "emulator_equals_mirror": True}
    out["all"] = _versus(exact_predict(head, emulated), y_user)
    out["none"] = _versus(exact_predict(head, _emulate(layer, xq, nv, set(steps))), y_user)
    for step in steps:
        only = _emulate(layer, xq, nv, set(steps) - {step})
        out[f"only {step}"] = _versus(exact_predict(head, only), y_user)
        print(f"  only {step}: {out[f'only {step}']}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--attribute", action="store_true", help="also the one-approximation-at-a-time table")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (the zoo test: 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "garnet_widths.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = []
    for n in args.particles:
        for bits in args.bits:
            start = time.time()
            print(f"{n} particles, {bits}-bit head", flush=True)
            logits, inputs, labels = _model(n, bits, args.epochs)
            y_user = logits.predict(inputs, verbose=0).astype(np.float64)
            accuracy = float(np.mean(np.argmax(y_user, axis=1) == labels))
            entry: dict[str, Any] = {"particles": n, "bits": bits, "epochs": args.epochs, "samples": N_PROOF,
                                     "model_accuracy": accuracy}
            entry["sweep"] = sweep(logits, inputs, y_user)
            if args.attribute:
                entry["attribution"] = [attribute(logits, inputs, y_user, name) for name in WIDTHS]
            entry["seconds"] = round(time.time() - start, 1)
            results.append(entry)
    path = args.out
    path.write_text(json.dumps({"command": "scripts/garnet_widths.py " + " ".join(sys.argv[1:]),
                                "results": results}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
