"""Choosing the inference engine per machine and per model, by measurement, and remembering it.

``precision="auto"`` on the CPU (the default of the codec and the commands)
runs each transform on the engine a short calibration measured fastest here
among the conformant ones (:mod:`mnistcodec.coding.engine`):

1. ``MNISTCODEC_ENGINE`` names an engine (or ``ENCODER,DECODER``): that one,
   no measurement. ``auto`` or unset: go on.
2. The cache ``$XDG_CACHE_HOME/mnistcodec/engines.json`` (default
   ``~/.cache/mnistcodec``) holds a choice for this model measured on this
   machine: that one. An entry is for one model content (fingerprint and
   content hash) and one machine record (:func:`machine_record`: CPU model and
   flags, instruction-set caps, PyTorch, oneDNN, ONNX Runtime, NumPy and mnistcodec
   versions, thread count); any change there makes it stale and it is measured again. A cache
   that cannot be read as one is ignored with a warning and rewritten.
3. Otherwise the codec runs ``torch`` (float32; bf16 where the CPU has AMX, as
   before calibration existed) until a call brings at least
   :data:`CALIBRATION_MIN_DIGITS` digits: then :func:`calibrate` measures, the
   choice is stored, and that call and the later ones use it. Smaller calls
   (single digits, the playground) never wait for a measurement.

:func:`calibrate` makes its own inputs (the model's reconstructions of noise,
then of those images: digit-like pictures, no dataset needed; encoders see
them with a little noise added, :func:`off_fixed_points`), checks each
candidate against ``torch`` on them (an encoder, coding each picture at a
level in turn, must keep the information content and the PSNR within the
bounds of :class:`EncoderCheck`; a decoder must keep :data:`~mnistcodec.coding.engine.DECODER_PIXEL_SHARE` of
the pixels within 1 grey level), then times every conformant candidate in
alternation (:data:`CALIBRATION_ROUNDS` rounds of :data:`CALIBRATION_DIGITS`
digits; ONNX Runtime at each sub-batch of
:data:`~mnistcodec.coding.engine.ORT_CHUNKS`) and keeps the fastest best round; another engine than ``torch`` must beat
it by :data:`MIN_GAIN` to be kept. ``mnistcodec doctor`` shows the machine,
the cache and the choices, and ``--calibrate`` measures on demand.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mnistcodec import __version__
from mnistcodec.coding import engine as E
from mnistcodec.coding.model_files import LoadedModel
from mnistcodec.coding.quantiser import Quantiser
from mnistcodec.data.sources import cache_root
from mnistcodec.errors import InputError
from mnistcodec.model import precision as P
from mnistcodec.storage.atomic import atomic_write_text

ENGINE_ENV = "MNISTCODEC_ENGINE"
CACHE_FORMAT = "mnistcodec-engine-cache"
#: 2: encoders held to rate and PSNR at every level; 3: decoders timed at a few levels;
#: 4: the int8 encoder, encoder bounds on what they cost (one-sided), the full bf16 decoder;
#: 5: the int8 encoder's first convolution in int8 too (faster: measured again);
#: 6: that convolution's weights in 7 bits (8 failed the bounds on kernels without VNNI);
#: 7: 7 bits only there, 8 again where the kernels have VNNI or AMX; 8: the best of 5 rounds;
#: 9: the int8 encoder's zero points folded into its biases (faster: measured again), and
#: decoders timed on half the digits at one level; the first convolution on four phases.
CACHE_VERSION = 9
#: A call with at least this many digits calibrates a model not yet measured here.
CALIBRATION_MIN_DIGITS = 2048
CALIBRATION_DIGITS = 1024
#: Timed rounds per engine; each engine keeps its fastest round (a busy machine only ever
#: slows a round down: with 2 rounds and their median, a shared 2-core machine sometimes
#: kept ``torch`` as a decoder where ``torch-onednn`` measured 1.22x faster side by side).
CALIBRATION_ROUNDS = 5
#: How much faster (a share) an engine other than ``torch`` must measure to be chosen.
MIN_GAIN = 0.05
#: Below this share of the CPU time its threads could have had while timed (process CPU
#: time over wall time times threads), a calibration shared the cores with other work: its
#: choice is used but measured again by the next large call, at most :data:`MAX_REMEASURES`
#: times in a row (a machine that is always busy keeps the last one).
BUSY_CPU_SHARE = 0.6
MAX_REMEASURES = 3
#: CPU flags that decide which kernels run (recorded by name; all flags enter a hash).
KEY_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


def cache_path() -> Path:
    return cache_root() / "engines.json"


def graphs_dir() -> Path:
    return cache_root() / "onnx"


def machine_record() -> dict:
    """What a measurement depends on besides the model: CPU, libraries, threads."""
    name, flags = P.cpu_description()
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "cpu_flags": [flag for flag in KEY_FLAGS if flag in flags],
        "cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest(),
        "torch": torch.__version__,
        "onednn": _onednn_version(),
        "onnxruntime": E.onnxruntime_version(),
        "numpy": np.__version__,
        "mnistcodec": __version__,
        "threads": torch.get_num_threads(),
        "kernel_caps": E.kernel_caps(),
    }


def _onednn_version() -> str:
    for line in torch.__config__.show().splitlines():
        for name in ("MKL-DNN v", "oneDNN v"):
            if name in line:
                return line.split(name, 1)[1].split()[0]
    return ""


# -- the cache ------------------------------------------------------------------------------


def read_cache(path: Path | None = None) -> dict:
    """The cache's entries by model key; a missing file is empty, a corrupt one warns and is empty."""
    path = path or cache_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
            raise ValueError("not an engine cache")
        if record.get("version") != CACHE_VERSION:
            return {}  # another version's cache: measured again, rewritten
        entries = record["entries"]
        if not isinstance(entries, dict):
            raise ValueError("entries is not an object")
        return entries
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"ignoring the engine cache {path} ({exc}); it will be measured again and rewritten",
            stacklevel=2,
        )
        return {}


def cached_entry(loaded: LoadedModel, path: Path | None = None) -> dict | None:
    """This model's entry, if it was measured on this machine as it is now."""
    entry = read_cache(path).get(loaded.content_key)
    if not isinstance(entry, dict) or entry.get("machine") != machine_record():
        return None
    try:
        E.Choice.parse(entry["choice"])
    except (KeyError, TypeError, ValueError):
        return None
    return entry


def store_entry(loaded: LoadedModel, entry: dict, path: Path | None = None) -> None:
    """Add (or replace) this model's entry; a cache that cannot be written is left as it is."""
    path = path or cache_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already reported when it was read
        entries = read_cache(path)
    entries[loaded.content_key] = entry
    record = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": entries}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        warnings.warn(f"could not write the engine cache {path} ({exc})", stacklevel=2)


# -- measuring -------------------------------------------------------------------------------


def _timed_levels(loaded: LoadedModel, digits: int) -> torch.Tensor | None:
    """The levels decoders are timed at: the first half of the digits at the reference level
    (a file coded at one level), the rest cycled over the ``F`` network levels nearest it
    (``F`` = the levels a bf16 decoder keeps folded), as a file coded at a few neighbouring
    levels is decoded."""
    if not loaded.variable_rate:
        return None
    reference = loaded.model.reference_level
    near = sorted(loaded.network_levels, key=lambda level: (abs(level - reference), level))[
        : E.FOLDED_LEVELS
    ]
    cycled = torch.tensor(near)[torch.arange(digits) % len(near)]
    return torch.where(torch.arange(digits) < digits // 2, reference, cycled)


#: Grey levels of uniform noise added to the encoders' calibration pictures (+-half of it).
PICTURE_NOISE_LEVELS = 16


def off_fixed_points(x: torch.Tensor) -> torch.Tensor:
    """The pictures ``x`` with uniform noise of :data:`PICTURE_NOISE_LEVELS` grey levels, in
    whole levels.

    The calibration's pictures are the float32 codec's own reconstructions, many of them
    reproduced exactly: there any latent an encoder changes is error from zero, and a
    0.1 % change of the latents cost a freshly trained model 0.35 dB on them while
    costing nothing measurable on digits. With the noise they are no longer fixed
    points, as digits are not.
    """
    generator = torch.Generator().manual_seed(1)
    noise = (torch.rand(x.shape, generator=generator) - 0.5) * (PICTURE_NOISE_LEVELS / 255)
    return torch.round((x + noise).clamp(0, 1) * 255) / 255


class EncoderCheck:
    """An encoder engine's bounds against ``torch`` on the calibration pictures ``x``.

    Both engines' latents are quantised at each digit's level; the candidate
    may raise the mean information content by at most
    :data:`~mnistcodec.coding.engine.ENCODER_INFO_SHARE`, lower the PSNR of the
    ``torch`` decoder's reconstructions (of their mean squared error: a few
    pictures reconstructed exactly would weigh without bound in a mean of
    PSNRs) by at most
    :data:`~mnistcodec.coding.engine.ENCODER_PSNR_DB` (fewer bits or a higher
    PSNR cost nothing), and change at most
    :data:`~mnistcodec.coding.engine.ENCODER_LATENT_SHARE` of the integers.
    """

    def __init__(self, loaded: LoadedModel, x: torch.Tensor, levels: torch.Tensor | None) -> None:
        self.x, self.levels = x, levels
        self.quantiser, self.decoder = Quantiser(loaded), E.Engine(loaded)
        #: :meth:`measure` of the ``torch`` latents, taken at the first call.
        self.reference: tuple[torch.Tensor, float, float] | None = None

    def measure(self, y: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """``(integers, mean information bits, PSNR of the mean squared error)`` of latents ``y``."""
        k, bits = self.quantiser.integers(y, self.levels)
        x_hat = self.decoder.synthesis(self.quantiser.dequantise(k, self.levels), self.levels)
        error = (torch.round(x_hat.clamp(0, 1) * 255) / 255 - self.x).square().mean()
        return k, float(bits.mean()), float(-10 * torch.log10(error.clamp_min(1e-10)))

    def __call__(self, y: torch.Tensor, y_reference: torch.Tensor) -> bool:
        """Whether latents ``y`` keep the bounds against ``torch``'s ``y_reference``."""
        if self.reference is None:
            self.reference = self.measure(y_reference)
        k_ref, bits_ref, psnr_ref = self.reference
        k, bits, psnr = self.measure(y)
        changed = torch.count_nonzero(k != k_ref) / max(k.numel(), 1)
        # One-sided: fewer bits or a higher PSNR cost nothing.
        return bool(
            changed <= E.ENCODER_LATENT_SHARE
            and bits - bits_ref <= E.ENCODER_INFO_SHARE * max(bits_ref, 1.0)
            and psnr_ref - psnr <= E.ENCODER_PSNR_DB
        )


def _decoder_conformant(candidate: torch.Tensor, reference: torch.Tensor) -> bool:
    pixels = torch.round(candidate.clamp(0, 1) * 255) - torch.round(reference.clamp(0, 1) * 255)
    return bool(torch.mean((pixels.abs() <= 1).float()) >= E.DECODER_CALIBRATION_SHARE)


def _candidates(names: tuple[str, ...]) -> list[tuple[str, int]]:
    return [
        (name, chunk)
        for name in names
        for chunk in (E.ORT_CHUNKS if name == "onnxruntime" else (E.ORT_CHUNKS[-1],))
    ]


def calibrate(loaded: LoadedModel, digits: int = CALIBRATION_DIGITS) -> dict:
    """Measure every available engine on both transforms and choose; returns the cache entry."""
    started = time.perf_counter()
    x, y_hat = E.digit_like_pictures(loaded, digits)
    x = off_fixed_points(x)
    levels, timed = E.cycled_levels(loaded, digits), _timed_levels(loaded, digits)
    ranges = _int8_ranges(loaded)
    measured: dict[str, dict] = {}
    best: dict[str, tuple[str, int]] = {}
    shares = []
    for side in ("encoder", "decoder"):
        runs: dict[tuple[str, int], Callable[[], torch.Tensor]] = {}
        checked: dict[tuple[str, int], Callable[[], torch.Tensor]] = {}
        for name, chunk in _candidates(E.candidate_engines()):
            if name in (E.ENCODER_ONLY if side == "decoder" else E.DECODER_MEASURED_ONLY):
                continue
            decoder = name if name not in E.ENCODER_ONLY else E.REFERENCE
            choice = E.Choice(encoder=name, decoder=decoder, chunk=chunk)
            engine = E.Engine(loaded, choice, graphs_dir=graphs_dir(), int8_ranges=ranges)
            if side == "encoder":
                runs[(name, chunk)] = checked[(name, chunk)] = lambda e=engine: e.analysis(x)
            else:  # checked at every level, timed as a file at a few levels is decoded
                checked[(name, chunk)] = lambda e=engine: e.synthesis(y_hat, levels)
                runs[(name, chunk)] = lambda e=engine: e.synthesis(y_hat, timed)
        check = EncoderCheck(loaded, x, levels) if side == "encoder" else _decoder_conformant
        measured[side], best[side], share = _measure(runs, check, checked)
        shares.append(share)
    choice = E.Choice(best["encoder"][0], best["decoder"][0], _chunk(best))
    return {
        "choice": choice.describe(),
        "machine": machine_record(),
        "measured_digits_per_s": measured,
        "int8_ranges": [list(r) for r in ranges] if choice.encoder == "torch-int8" else None,
        "calibration_seconds": round(time.perf_counter() - started, 2),
        "cpu_share": round(min(shares), 3),
        "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _int8_ranges(loaded: LoadedModel) -> tuple[tuple[float, float], ...] | None:
    """The int8 encoder's ranges, measured once for all its runs (None: no int8 here, or
    a model it cannot run, which its check then records)."""
    if "torch-int8" not in E.candidate_engines():
        return None
    try:
        return E.int8_ranges(loaded)
    except InputError:
        return None


def _chunk(best: dict[str, tuple[str, int]]) -> int:
    """The sub-batch of whichever side runs ONNX Runtime (the decoder's if both)."""
    for side in ("decoder", "encoder"):
        if best[side][0] == "onnxruntime":
            return best[side][1]
    return E.ORT_CHUNKS[-1]


def _measure(
    runs: dict, conformant: Callable[[torch.Tensor, torch.Tensor], bool], checked: dict
) -> tuple[dict, tuple[str, int], float]:
    """Check each engine (``checked``) and time it (``runs``) in alternation;
    ``({label: record}, the fastest conformant key, the CPU share while timed)``."""
    reference = checked[(E.REFERENCE, E.ORT_CHUNKS[-1])]()
    records: dict[str, dict] = {}
    usable = {}
    for key, run in runs.items():
        label = key[0] if key[0] != "onnxruntime" else f"onnxruntime@{key[1]}"
        try:
            ok = conformant(checked[key](), reference)
            run()  # the warm-up
        except Exception as exc:  # noqa: BLE001  # a broken runtime is not a candidate
            records[label] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        records[label] = {"conformant": ok, "times": []}
        if ok:
            usable[key] = (label, run)
    digits = None
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(CALIBRATION_ROUNDS):
        for label, run in usable.values():
            start = time.perf_counter()
            digits = run().shape[0]
            records[label]["times"].append(time.perf_counter() - start)
    elapsed = max(time.perf_counter() - wall, 1e-9)
    share = (time.process_time() - cpu) / (elapsed * torch.get_num_threads())
    speeds = {}
    for key, (label, _run) in usable.items():
        speed = digits / min(records[label].pop("times"))
        records[label]["digits_per_s"] = round(speed, 1)
        speeds[key] = speed
    reference_key = (E.REFERENCE, E.ORT_CHUNKS[-1])
    fastest = max(speeds, key=speeds.get)
    if speeds[fastest] < speeds[reference_key] * (1 + MIN_GAIN):
        fastest = reference_key
    return records, fastest, share


# -- choosing for a codec --------------------------------------------------------------------


def engine_override() -> E.Choice | None:
    """The choice ``MNISTCODEC_ENGINE`` forces, or None (unset or ``auto``)."""
    text = os.environ.get(ENGINE_ENV, "").strip()
    if not text or text == "auto":
        return None
    return E.parse_override(text)


def _remeasures(entry: dict) -> int:
    """How many busy calibrations in a row led to ``entry`` (0 for a first one)."""
    count = entry.get("remeasures", 0)
    return count if isinstance(count, int) and count >= 0 else MAX_REMEASURES


def _measured_busy(entry: dict) -> bool:
    """Whether ``entry`` was timed on shared cores and may still be measured again."""
    share = entry.get("cpu_share")
    busy = isinstance(share, (int, float)) and share < BUSY_CPU_SHARE
    return busy and _remeasures(entry) < MAX_REMEASURES


class AutoEngine(E.Engine):
    """``precision="auto"`` on the CPU: the override, the cached choice, or measure when worth it."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded, graphs_dir=graphs_dir())
        override = engine_override()
        self.source = "override" if override else "default"
        if override is not None:
            self.choice = override
        else:
            entry = cached_entry(loaded)
            self.remeasures = 0
            if entry is not None:
                self.choice, self.source = E.Choice.parse(entry["choice"]), "cached"
                self.int8_ranges = E.parse_int8_ranges(entry.get("int8_ranges"))
                if _measured_busy(entry):  # used, and measured again by the next large call
                    self.source, self.remeasures = "provisional", _remeasures(entry)
            elif P.bf16_matrix_units("cpu"):
                self.choice = E.Choice("torch-bf16-native", "torch-bf16-native")

    def describe(self) -> dict:
        return {**super().describe(), "engine_source": self.source}

    def _settle(self, digits: int) -> None:
        if self.source in ("default", "provisional") and digits >= CALIBRATION_MIN_DIGITS:
            entry = calibrate(self.loaded)
            if self.source == "provisional" and _measured_busy(entry):
                entry["remeasures"] = self.remeasures + 1
            store_entry(self.loaded, entry)
            self.choice, self.source = E.Choice.parse(entry["choice"]), "calibrated"
            self.int8_ranges = E.parse_int8_ranges(entry.get("int8_ranges"))

    def digit_analysis(self, digits: torch.Tensor) -> torch.Tensor:
        self._settle(digits.shape[0])
        return super().digit_analysis(digits)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        self._settle(x.shape[0])
        return super().analysis(x)

    def synthesis(self, y_hat: torch.Tensor, levels: torch.Tensor | None) -> torch.Tensor:
        self._settle(y_hat.shape[0])
        return super().synthesis(y_hat, levels)


def codec_engine(loaded: LoadedModel, device: torch.device, precision: str) -> E.Engine:
    """The engine of a codec: ``fp32``/``bf16`` fixed, ``auto`` chosen on the CPU (above)."""
    P.check_precision(precision)
    if precision != "auto" or device.type != "cpu":
        return E.Engine(loaded, precision=P.coding_precision(precision, device))
    return AutoEngine(loaded)


# -- what ``mnistcodec doctor`` shows ---------------------------------------------------------


def doctor_record(models: dict[str, LoadedModel], measure: bool = False) -> dict:
    """The machine, the engines, the cache and each model's choice (measured now if ``measure``).

    ``models`` maps a name to a loaded model. A model's ``choice`` is what a
    codec with ``precision="auto"`` on the CPU runs here, and ``source`` says
    why: ``override`` (``MNISTCODEC_ENGINE``), ``cached``, ``provisional`` (cached
    from a timing on busy cores, measured again by the next large call),
    ``calibrated`` (now) or ``default`` (not measured yet on this machine).
    """
    override = engine_override()
    record = {
        "machine": machine_record(),
        "bf16_matrix_units": P.bf16_matrix_units("cpu"),
        "bf16_vector_units": P.bf16_vector_units(),
        "engines": list(E.available_engines()),
        "calibrated_engines": list(E.candidate_engines()),
        "override": {ENGINE_ENV: os.environ.get(ENGINE_ENV)} if override else None,
        "cache": str(cache_path()),
        "models": {},
    }
    for name, loaded in models.items():
        if measure and override is None:
            entry = calibrate(loaded)
            store_entry(loaded, entry)
            source = "calibrated"
        else:
            entry = cached_entry(loaded)
            source = (
                "default" if entry is None else "provisional" if _measured_busy(entry) else "cached"
            )
        engine = AutoEngine(loaded) if entry is None or override else None
        choice = engine.choice.describe() if engine else entry["choice"]
        record["models"][name] = {
            "fingerprint": loaded.fingerprint,
            "choice": choice,
            "source": "override" if override else source,
            "measured_digits_per_s": (entry or {}).get("measured_digits_per_s"),
            "when": (entry or {}).get("when"),
            "cpu_share": (entry or {}).get("cpu_share"),
        }
    return record
