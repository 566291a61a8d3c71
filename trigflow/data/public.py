"""Data layer: loaders for public data files a user already has on disk (nothing is ever downloaded).

The layout assumed for each (from the data set papers and their Zenodo / OpenML descriptions):

* hls4ml LHC jet high-level features, OpenML 42468 "hls4ml_lhc_jets_hlf", as CSV (header row) or ARFF, plain
  or gzipped: the 16 feature columns named as ``trigflow.data.HLF_NAMES`` (a ``j_`` prefix is accepted) plus a
  class column (``class``/``label``/``target``/``y``) with values g, q, t, w, z (or gluon, quark, top, W, Z).
  Classes are mapped by name onto ``JET_CLASSES`` = (g, q, w, z, t), never by their order in the file. The
  table has no jet pT/eta/mass: those arrays are NaN.
* hls4ml LHC jet HDF5 files with 30/50/100/150 particles (Zenodo 3602260 and its siblings; one file or a
  folder of them): ``jets`` N x 59 with names in ``jetFeatureNames`` (the 16 HLF as ``j_<name>``, ``j_pt``,
  ``j_eta``, ``j_mass`` and the one-hot labels ``j_g, j_q, j_w, j_z, j_t``), optional ``jetConstituentList``
  N x P x 16 with ``particleFeatureNames`` (whose list may hold one name more, j1_pdgid, than the array has
  features: the leading names are kept) and optional ``jetImage`` N x H x W. Jets without exactly one of the
  five labels are dropped.
* Public constituent arrays for ``trigflow evaluate``: (jets, particles, F) with named features. The raw
  (pT in GeV, η_rel, φ_rel) columns are taken by name (``j1_pt, j1_etarel, j1_phirel`` in the Zenodo files;
  ``pt, eta_rel, phi_rel`` and similar spellings accepted); a 16-feature array without names is read in the
  Zenodo ``particleFeatureNames`` order.
* ADC2021 anomaly-detection challenge HDF5 (Govorkova et al. 2022): ``Particles`` N x 19 x 4 as
  (pT, eta, phi, class id) for MET, 4 electrons, 4 muons, 10 jets, zero-padded; flattened to the 57
  (pT, eta, phi) columns of ``trigflow.data.anomaly``. One file per process; ``load_adc2021_folder`` reads
  the challenge's folder layout (``background_for_training.h5`` + signal files) under trigflow's signal names.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trigflow.data import HLF_NAMES, JET_CLASSES
from trigflow.data.anomaly import FEATURE_NAMES, AnomalySet
from trigflow.data.h5 import open_h5
from trigflow.data.jets import JetSet
from trigflow.errors import TrigflowError

CLASS_ALIASES: dict[str, str] = {
    "g": "g",
    "gluon": "g",
    "j_g": "g",
    "q": "q",
    "quark": "q",
    "light": "q",
    "j_q": "q",
    "w": "w",
    "j_w": "w",
    "z": "z",
    "j_z": "z",
    "t": "t",
    "top": "t",
    "j_t": "t",
}
CLASS_COLUMNS = ("class", "label", "target", "y", "jet_class")
LABEL_COLUMNS: tuple[str, ...] = tuple(f"j_{c}" for c in JET_CLASSES)  # one-hot columns in the Zenodo files
ADC_SHAPE = (19, 4)
# The Zenodo 3602260 particle features, in file order (a 17th name, j1_pdgid, has no column in the array).
ZENODO_PARTICLE_FEATURES: tuple[str, ...] = (
    "j1_px", "j1_py", "j1_pz", "j1_e", "j1_erel", "j1_pt", "j1_ptrel", "j1_eta", "j1_etarel", "j1_etarot",
    "j1_phi", "j1_phirel", "j1_phirot", "j1_deltar", "j1_costheta", "j1_costhetarel",
)
# Accepted spellings of the raw constituent columns (pT in GeV, η − η_jet, φ − φ_jet), lower case.
RAW_COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "pt": ("j1_pt", "pt", "part_pt", "pt_gev"),
    "eta_rel": ("j1_etarel", "eta_rel", "etarel", "deta", "part_deta"),
    "phi_rel": ("j1_phirel", "phi_rel", "phirel", "dphi", "part_dphi"),
}


def _decode(names: Any) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(names).ravel().tolist()]


def _class_index(value: str, path: Path) -> int:
    key = value.strip().strip("'\"").lower()
    if key not in CLASS_ALIASES:
        raise TrigflowError(f"{path}: unknown jet class {value!r}; expected one of g, q, w, z, t")
    return JET_CLASSES.index(CLASS_ALIASES[key])


def _hlf_columns(columns: Sequence[str], path: Path) -> list[int]:
    """Index of each of the 16 HLF names among ``columns`` (with or without the ``j_`` prefix)."""
    lower = [c.strip().lower() for c in columns]
    idx = []
    for name in HLF_NAMES:
        for candidate in (name, f"j_{name}"):
            if candidate in lower:
                idx.append(lower.index(candidate))
                break
        else:
            raise TrigflowError(f"{path}: no column {name!r} (or j_{name}); is this the hls4ml jet HLF data?")
    return idx


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Column names and string rows of a CSV or ARFF file."""
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    try:
        with _open_text(path) as fh:
            if stem.lower().endswith(".arff"):
                columns: list[str] = []
                for line in fh:
                    line = line.strip()
                    if not line or line.startswith("%"):
                        continue
                    head = line.split(None, 2)
                    if head[0].lower() == "@attribute" and len(head) > 1:
                        columns.append(head[1].strip("'\""))
                    elif head[0].lower() == "@data":
                        break
                reader = csv.reader(fh, quotechar="'", skipinitialspace=True)
                rows = [r for r in reader if r and not r[0].startswith("%")]
            else:
                reader = csv.reader(fh)
                columns = next(reader, [])
                rows = [r for r in reader if r]
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise TrigflowError(f"{path}: cannot read as a table ({exc.__class__.__name__}: {exc})") from None
    if not columns or not rows:
        raise TrigflowError(f"{path}: no header or no data rows; expected the hls4ml jet HLF table")
    return columns, rows


def load_hls4ml_hlf_table(path: str | os.PathLike) -> JetSet:
    """The OpenML 42468 hls4ml jet HLF table (CSV or ARFF): 16 features + class -> ``JetSet`` (hlf, label)."""
    path = Path(path)
    if not path.is_file():
        raise TrigflowError(f"{path} not found; fetch the hls4ml jet HLF table (OpenML 42468) first")
    columns, rows = _read_table(path)
    lower = [c.strip().lower() for c in columns]
    cls = next((lower.index(c) for c in CLASS_COLUMNS if c in lower), None)
    if cls is None:
        raise TrigflowError(f"{path}: no class column (one of {', '.join(CLASS_COLUMNS)})")
    idx = _hlf_columns(columns, path)
    if any(len(r) != len(columns) for r in rows):
        raise TrigflowError(f"{path}: a row has not {len(columns)} fields; the file is corrupt or truncated")
    table = np.array(rows, dtype=str)
    try:
        hlf = table[:, idx].astype(np.float32)
    except ValueError as exc:
        raise TrigflowError(f"{path}: malformed number ({exc}); the file is corrupt or truncated") from None
    values, inverse = np.unique(table[:, cls], return_inverse=True)
    label = np.array([_class_index(v, path) for v in values], dtype=np.int8)[inverse.reshape(-1)]
    n = len(label)
    nan = np.full(n, np.nan, np.float32)
    return JetSet(
        hlf=hlf,
        label=label,
        pt=nan,
        eta=nan.copy(),
        mass=nan.copy(),
        constituents=None,
        image=None,
        constituent_features=(),
        attrs={"source": "hls4ml_lhc_jets_hlf (OpenML 42468)", "path": str(path), "names": list(HLF_NAMES)},
    )


def _h5_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".h5", ".hdf5"))
        if not files:
            raise TrigflowError(f"folder {path} holds no .h5 files; point to the unpacked hls4ml jet files")
        return files
    return [path]


def _read_hls4ml_h5(file: Path, limit: int | None) -> dict[str, Any]:
    """One Zenodo hls4ml jet file -> arrays of its labelled jets (at most ``limit`` jets read)."""
    take = slice(None) if limit is None else slice(0, limit)
    with open_h5(file, required=("jets", "jetFeatureNames")) as f:
        try:
            names = [n.lower() for n in _decode(f["jetFeatureNames"][...])]
            jets = np.asarray(f["jets"][take], dtype=np.float32)
            has_const = "jetConstituentList" in f
            const = np.asarray(f["jetConstituentList"][take], np.float32) if has_const else None
            image = np.asarray(f["jetImage"][take], np.float32) if "jetImage" in f else None
            pnames = tuple(_decode(f["particleFeatureNames"][...])) if "particleFeatureNames" in f else ()
        except (OSError, KeyError, ValueError) as exc:
            what = exc.__class__.__name__
            raise TrigflowError(f"{file} is corrupt or truncated ({what}); fetch it again") from None
    if jets.ndim != 2 or jets.shape[1] != len(names):
        raise TrigflowError(f"{file}: `jets` has shape {jets.shape} but {len(names)} jetFeatureNames")
    missing = [c for c in (*LABEL_COLUMNS, "j_pt", "j_eta", "j_mass") if c not in names]
    if missing:
        raise TrigflowError(f"{file}: jetFeatureNames lack {', '.join(missing)}; not an hls4ml jet file")
    onehot = jets[:, [names.index(c) for c in LABEL_COLUMNS]]
    good = (onehot == 1).sum(axis=1) == 1  # exactly one of g, q, w, z, t (drops j_undef jets)
    out: dict[str, Any] = {
        "hlf": jets[good][:, _hlf_columns(names, file)],
        "label": np.argmax(onehot[good], axis=1).astype(np.int8),
        **{key: jets[good, names.index(f"j_{key}")] for key in ("pt", "eta", "mass")},
        "constituents": None if const is None else const[good],
        "image": None if image is None else image[good],
        "constituent_features": pnames,
        "dropped": int((~good).sum()),
    }
    return out


def _join(parts: list[dict[str, Any]], key: str, path: Path) -> np.ndarray | None:
    arrays = [p[key] for p in parts]
    if any(a is None for a in arrays):
        return None
    try:
        return np.concatenate(arrays)
    except ValueError:
        raise TrigflowError(f"{path}: the files differ in the shape of `{key}`; load them apart") from None


def load_hls4ml_jets_h5(path: str | os.PathLike, *, max_jets: int | None = None) -> JetSet:
    """hls4ml LHC jet HDF5 file(s) (Zenodo 3602260: 30/50/100/150 particles) -> ``JetSet``."""
    path = Path(path)
    if not path.exists():
        raise TrigflowError(f"{path} not found; fetch and unpack the hls4ml jet files (Zenodo 3602260) first")
    parts: list[dict[str, Any]] = []
    n_total = 0
    for file in _h5_files(path):
        if max_jets is not None and n_total >= max_jets:
            break
        parts.append(_read_hls4ml_h5(file, None if max_jets is None else max_jets - n_total))
        n_total += len(parts[-1]["label"])
    if n_total == 0:
        raise TrigflowError(f"{path}: no labelled jets found")
    constituents = _join(parts, "constituents", path)
    names: tuple[str, ...] = ()
    if constituents is not None:
        # the Zenodo list may name one feature more (j1_pdgid) than the array holds: keep the leading names
        n_feat = constituents.shape[-1]
        names = parts[0]["constituent_features"]
        names = names[:n_feat] if len(names) >= n_feat else tuple(f"f{i}" for i in range(n_feat))
    return JetSet(
        **{key: _join(parts, key, path) for key in ("hlf", "label", "pt", "eta", "mass")},
        constituents=constituents,
        image=_join(parts, "image", path),
        constituent_features=names,
        attrs={
            "source": "hls4ml LHC jets (Zenodo 3602260)",
            "path": str(path),
            "names": list(HLF_NAMES),
            "dropped_unlabelled": sum(p["dropped"] for p in parts),
        },
    )


def load_hls4ml_jets(path: str | os.PathLike, *, max_jets: int | None = None) -> JetSet:
    """Any of the public hls4ml jet files: CSV/ARFF HLF table or HDF5 file/folder, by file type."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if path.is_file() and name.endswith((".csv", ".arff")):
        jets = load_hls4ml_hlf_table(path)
        if max_jets is not None:
            jets = _head(jets, max_jets)
        return jets
    return load_hls4ml_jets_h5(path, max_jets=max_jets)


def _head(jets: JetSet, n: int) -> JetSet:
    import dataclasses

    cut = {
        k: (v[:n] if isinstance(v, np.ndarray) else v)
        for k, v in ((f.name, getattr(jets, f.name)) for f in dataclasses.fields(jets))
        if k != "attrs"
    }
    return type(jets)(**cut, attrs=jets.attrs)


def raw_constituents(constituents: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
    """(jets, particles, F) public constituent array -> (jets, particles, 3) = (pT, η_rel, φ_rel), float32.

    ``names``: the F feature names (e.g. the file's ``particleFeatureNames``; extra trailing names such as
    j1_pdgid are ignored). Without names, F = 3 is taken as already (pT, η_rel, φ_rel) and F = 16 as the
    Zenodo order. Padding rows stay zero rows.
    """
    c = np.asarray(constituents)
    if c.ndim != 3:
        raise TrigflowError(f"constituents must have shape (jets, particles, features); got {c.shape}")
    n_feat = c.shape[-1]
    if names is None:
        if n_feat == 3:
            return c.astype(np.float32)
        if n_feat != len(ZENODO_PARTICLE_FEATURES):
            raise TrigflowError(
                f"constituents have {n_feat} features and no names; give (pT, eta_rel, phi_rel) or the "
                f"16 Zenodo features, or name the columns (npz 'particleFeatureNames')"
            )
        names = ZENODO_PARTICLE_FEATURES
    lower = [str(n).strip().lower() for n in names][:n_feat]
    if len(lower) < n_feat:
        raise TrigflowError(f"{len(lower)} feature names for {n_feat} constituent features")
    index = []
    for column, aliases in RAW_COLUMN_ALIASES.items():
        found = next((lower.index(a) for a in aliases if a in lower), None)
        if found is None:
            raise TrigflowError(
                f"no {column} column among constituent features {lower}; expected one of {', '.join(aliases)}"
            )
        index.append(found)
    return np.ascontiguousarray(c[..., index], dtype=np.float32)


def leading_constituents(constituents: np.ndarray, n: int) -> np.ndarray:
    """(samples, P, F) → (samples, n, F): each sample's rows sorted by the first feature (pT) highest first
    (stable; rows whose first feature is ≤ 0 — padding — sort last), the first ``n`` kept, zero rows appended
    when P < n. The one sort/truncate/pad rule of ``trigflow evaluate`` (gnn) and of
    ``trigflow verify --reshape``.
    """
    c = np.asarray(constituents)
    if c.ndim != 3:
        raise TrigflowError(f"constituents must have shape (samples, particles, features); got {c.shape}")
    key = np.where(c[..., 0] > 0, c[..., 0], 0)
    order = np.argsort(-key, axis=1, kind="stable")[:, : int(n)]
    top = np.take_along_axis(c, order[..., None], axis=1)
    if top.shape[1] < n:
        pad = np.zeros((len(top), int(n) - top.shape[1], c.shape[2]), c.dtype)
        top = np.concatenate([top, pad], axis=1)
    return np.ascontiguousarray(top)


def _read_adc(path: Path, max_events: int | None) -> np.ndarray:
    with open_h5(path, required=("Particles",)) as f:
        d = f["Particles"]
        if d.ndim != 3 or tuple(d.shape[1:]) != ADC_SHAPE:
            raise TrigflowError(f"{path}: `Particles` has shape {d.shape}, expected (N, 19, 4) as in ADC2021")
        try:
            particles = np.asarray(d[: max_events if max_events is not None else len(d)], dtype=np.float32)
        except (OSError, ValueError) as exc:
            what = exc.__class__.__name__
            raise TrigflowError(f"{path} is corrupt or truncated ({what}); fetch it again") from None
    # (pT, eta, phi) of MET, 4 e, 4 mu, 10 jets, object-major: the 57 columns of trigflow.data.anomaly
    return np.ascontiguousarray(particles[:, :, :3].reshape(len(particles), 57))


def load_adc2021(
    background: str | os.PathLike,
    signals: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike] = (),
    *,
    max_events: int | None = None,
) -> AnomalySet:
    """ADC2021 challenge files -> ``AnomalySet``: ``background`` is process 0, each signal file one process.

    ``signals`` maps names to files, or is a list of files named by their stem. ``max_events`` caps each file.
    """
    if not isinstance(signals, Mapping):
        signals = {Path(p).name.split(".")[0]: p for p in signals}
    if len(signals) > 126:
        raise TrigflowError("too many signal files (at most 126 processes fit the int8 labels)")
    xs, procs = [], []
    paths = {"background": Path(background), **{k: Path(v) for k, v in signals.items()}}
    for i, (name, p) in enumerate(paths.items()):
        if i and name == "background":
            raise TrigflowError("a signal cannot be named 'background'")
        x = _read_adc(p, max_events)
        xs.append(x)
        procs.append(np.full(len(x), i, np.int8))
    return AnomalySet(
        x=np.concatenate(xs),
        process=np.concatenate(procs),
        names=FEATURE_NAMES,
        processes=tuple(paths),
        attrs={"source": "ADC2021 (Govorkova et al. 2022)", "files": {k: str(v) for k, v in paths.items()}},
    )


ADC2021_SIGNAL_NAMES = {  # file-name prefix in the challenge release -> trigflow.data.anomaly signal name
    "ato4l": "a_4l",
    "leptoquark": "lq_btau",
    "htotautau": "h_tautau",
    "hchtotaunu": "hpm_taunu",
}


def load_adc2021_folder(folder: str | os.PathLike, *, max_events: int | None = None) -> AnomalySet:
    """A folder of ADC2021 files: ``background*.h5`` is process 0, every other ``*.h5`` a signal.

    Signals are named as in ``trigflow.data.anomaly`` when the file name says which one it is
    (``Ato4l_lepFilter_13TeV_filtered.h5`` -> ``a_4l``), else by the file's stem.
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.h5"))
    background = [p for p in files if p.name.lower().startswith("background")]
    if len(background) != 1:
        found = ", ".join(p.name for p in background) or "none"
        raise TrigflowError(
            f"{folder}: expected one background*.h5 file (ADC2021 background_for_training.h5), found {found}"
        )
    signals: dict[str, Path] = {}
    for p in files:
        if p is background[0]:
            continue
        stem = p.name.split(".")[0]
        name = next((v for k, v in ADC2021_SIGNAL_NAMES.items() if stem.lower().startswith(k)), stem)
        if name in signals:
            raise TrigflowError(f"{folder}: {signals[name].name} and {p.name} are both {name}; keep one")
        signals[name] = p
    return load_adc2021(background[0], signals, max_events=max_events)
