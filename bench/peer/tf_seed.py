#!/usr/bin/env python3
"""The seed's own TensorFlow stack, runnable side by side with mnistcodec.

This is the TensorFlow Compression MNIST tutorial (the lab's listings 1,
11-15 and 21-22) as written there, with one change only: MNIST is read from
local IDX files instead of ``tfds.load`` (no network here). It is run with
the peer virtualenv's python (``bench/peer/setup_peer.sh``), never with the
project's environment.

Subcommands::

    train --epochs E --lmbda 2000 --latent-dims 50 [--limit N] --json OUT
        Trains as the tutorial does (``fit(..., verbose=2)``) and records,
        per epoch, wall-clock seconds (and the validation part of them),
        train and validation rate / distortion, and the peak RSS.

    code [--weights CKPT | --epochs 1 [--limit N]] --json OUT
        Builds the codec (``compression=True``) from a trainer, then times
        compressing and decompressing the whole 10,000-digit test set in one
        call each (repeated), single-digit latency, and reports the real
        string length (8 * len(string)) against the information content.

    sample [--weights CKPT | --epochs 1] --count 16 [--bytes 8]
        Decodes random strings with the sanity check off (listing 22).

Threads: by default TensorFlow picks its own intra-op and inter-op pool
sizes (``tf.config.threading`` left at 0, which means one intra-op thread per
core and an inter-op pool sized from the cores); ``--threads N`` sets both.
The values in force and ``os.cpu_count()`` are written to the JSON.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class PeerError(Exception):
    """A clear, user-facing failure (printed without a traceback)."""


# --------------------------------------------------------------------------
# Data: IDX files (gzipped or raw) -> numpy, no tfds.
# --------------------------------------------------------------------------


def _read_sums(data_dir):
    path = os.path.join(data_dir, "SHA256SUMS.raw")
    sums = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def _read_idx(data_dir, name, sums):
    import numpy as np

    gz = os.path.join(data_dir, name + ".gz")
    raw = os.path.join(data_dir, name)
    if os.path.isfile(gz):
        with gzip.open(gz, "rb") as f:
            data = f.read()
        where = gz
    elif os.path.isfile(raw):
        with open(raw, "rb") as f:
            data = f.read()
        where = raw
    else:
        raise PeerError(f"MNIST file missing: neither {gz} nor {raw} exists")
    if name in sums and hashlib.sha256(data).hexdigest() != sums[name]:
        raise PeerError(f"{where}: SHA-256 of the uncompressed data does not match SHA256SUMS.raw")
    magic = int.from_bytes(data[0:4], "big")
    if magic == 2051:  # images: magic, count, rows, cols (16-byte header)
        n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
        body = data[16:]
        if len(body) != n * rows * cols:
            raise PeerError(f"{where}: truncated image file")
        return np.frombuffer(body, np.uint8).reshape(n, rows, cols, 1)
    if magic == 2049:  # labels: magic, count (8-byte header)
        n = int.from_bytes(data[4:8], "big")
        body = data[8:]
        if len(body) != n:
            raise PeerError(f"{where}: truncated label file")
        return np.frombuffer(body, np.uint8).copy()
    raise PeerError(f"{where}: not an IDX image/label file (magic {magic})")


def load_mnist(data_dir):
    """Returns dict of the four arrays; images (N, 28, 28, 1) uint8."""
    if not data_dir:
        raise PeerError(
            "no MNIST directory: pass --data-dir or set "
            "MNISTCODEC_DATA_DIR (it must hold the four IDX "
            "files, e.g. train-images-idx3-ubyte.gz)"
        )
    if not os.path.isdir(data_dir):
        raise PeerError(f"MNIST directory {data_dir!r} does not exist")
    sums = _read_sums(data_dir)
    out = {k: _read_idx(data_dir, v, sums) for k, v in IDX_FILES.items()}
    for split in ("train", "test"):
        if len(out[f"{split}_images"]) != len(out[f"{split}_labels"]):
            raise PeerError(f"{split} images and labels differ in count")
    return out


# --------------------------------------------------------------------------
# The seed, as in the tutorial / lab.
# --------------------------------------------------------------------------


def build_seed():
    """Defines the tutorial's classes; imports TF lazily (after arg parsing)."""
    import tensorflow as tf
    import tensorflow_compression as tfc

    def make_analysis_transform(latent_dims):
        """Creates the analysis (encoder) transform."""
        return tf.keras.Sequential(
            [
                tf.keras.layers.Conv2D(
                    20,
                    5,
                    use_bias=True,
                    strides=2,
                    padding="same",
                    activation="leaky_relu",
                    name="conv_1",
                ),
                tf.keras.layers.Conv2D(
                    50,
                    5,
                    use_bias=True,
                    strides=2,
                    padding="same",
                    activation="leaky_relu",
                    name="conv_2",
                ),
                tf.keras.layers.Flatten(),
                tf.keras.layers.Dense(500, use_bias=True, activation="leaky_relu", name="fc_1"),
                tf.keras.layers.Dense(latent_dims, use_bias=True, activation=None, name="fc_2"),
            ],
            name="analysis_transform",
        )

    def make_synthesis_transform():
        """Creates the synthesis (decoder) transform."""
        return tf.keras.Sequential(
            [
                tf.keras.layers.Dense(500, use_bias=True, activation="leaky_relu", name="fc_1"),
                tf.keras.layers.Dense(2450, use_bias=True, activation="leaky_relu", name="fc_2"),
                tf.keras.layers.Reshape((7, 7, 50)),
                tf.keras.layers.Conv2DTranspose(
                    20,
                    5,
                    use_bias=True,
                    strides=2,
                    padding="same",
                    activation="leaky_relu",
                    name="conv_1",
                ),
                tf.keras.layers.Conv2DTranspose(
                    1,
                    5,
                    use_bias=True,
                    strides=2,
                    padding="same",
                    activation="leaky_relu",
                    name="conv_2",
                ),
            ],
            name="synthesis_transform",
        )

    class MNISTCompressionTrainer(tf.keras.Model):
        """Model that trains a compressor/decompressor for MNIST."""

        def __init__(self, latent_dims):
            super().__init__()
            self.analysis_transform = make_analysis_transform(latent_dims)
            self.synthesis_transform = make_synthesis_transform()
            self.prior_log_scales = tf.Variable(tf.zeros((latent_dims,)))

        @property
        def prior(self):
            return tfc.NoisyLogistic(loc=0.0, scale=tf.exp(self.prior_log_scales))

        def call(self, x, training):
            """Computes rate and distortion losses."""
            # Ensure inputs are floats in the range (0, 1).
            x = tf.cast(x, self.compute_dtype) / 255.0
            x = tf.reshape(x, (-1, 28, 28, 1))

            # Compute latent space representation y, perturb it and model its
            # entropy, then compute the reconstructed pixel-level
            # representation x_hat.
            y = self.analysis_transform(x)
            entropy_model = tfc.ContinuousBatchedEntropyModel(
                self.prior, coding_rank=1, compression=False
            )
            y_tilde, rate = entropy_model(y, training=training)
            x_tilde = self.synthesis_transform(y_tilde)

            # Average number of bits per MNIST digit.
            rate = tf.reduce_mean(rate)

            # Mean absolute difference across pixels.
            distortion = tf.reduce_mean(abs(x - x_tilde))

            return dict(rate=rate, distortion=distortion)

    def pass_through_loss(_, x):
        # Since rate and distortion are unsupervised, the loss doesn't need a
        # target.
        return x

    def make_mnist_compression_trainer(lmbda, latent_dims=50):
        trainer = MNISTCompressionTrainer(latent_dims)
        trainer.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate=1e-3),
            # Just pass through rate and distortion as losses/metrics.
            loss=dict(rate=pass_through_loss, distortion=pass_through_loss),
            metrics=dict(rate=pass_through_loss, distortion=pass_through_loss),
            loss_weights=dict(rate=1.0, distortion=lmbda),
        )
        return trainer

    def add_rd_targets(image, label):
        # Training is unsupervised, so labels aren't necessary here. However,
        # we need to add "dummy" targets for rate and distortion.
        return image, dict(rate=0.0, distortion=0.0)

    class MNISTCompressor(tf.keras.Model):
        """Compresses MNIST images to strings."""

        def __init__(self, analysis_transform, entropy_model):
            super().__init__()
            self.analysis_transform = analysis_transform
            self.entropy_model = entropy_model

        def call(self, x):
            # Ensure inputs are floats in the range (0, 1).
            x = tf.cast(x, self.compute_dtype) / 255.0
            y = self.analysis_transform(x)
            # Also return the exact information content of each digit.
            _, bits = self.entropy_model(y, training=False)
            return self.entropy_model.compress(y), bits

    class MNISTDecompressor(tf.keras.Model):
        """Decompresses MNIST images from strings."""

        def __init__(self, entropy_model, synthesis_transform):
            super().__init__()
            self.entropy_model = entropy_model
            self.synthesis_transform = synthesis_transform

        def call(self, string):
            y_hat = self.entropy_model.decompress(string, ())
            x_hat = self.synthesis_transform(y_hat)
            # Scale and cast back to 8-bit integer.
            return tf.saturate_cast(tf.round(x_hat * 255.0), tf.uint8)

    def make_mnist_codec(trainer, **kwargs):
        # The entropy model must be created with `compression=True` and the
        # same instance must be shared between compressor and decompressor.
        entropy_model = tfc.ContinuousBatchedEntropyModel(
            trainer.prior, coding_rank=1, compression=True, **kwargs
        )
        compressor = MNISTCompressor(trainer.analysis_transform, entropy_model)
        decompressor = MNISTDecompressor(entropy_model, trainer.synthesis_transform)
        return compressor, decompressor

    return argparse.Namespace(
        tf=tf,
        tfc=tfc,
        MNISTCompressionTrainer=MNISTCompressionTrainer,
        make_mnist_compression_trainer=make_mnist_compression_trainer,
        add_rd_targets=add_rd_targets,
        make_mnist_codec=make_mnist_codec,
    )


# --------------------------------------------------------------------------
# Measurement helpers.
# --------------------------------------------------------------------------


def peak_rss_mib():
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def setup_tf(args):
    seed = build_seed()
    tf = seed.tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.seed is not None:
        tf.keras.utils.set_random_seed(args.seed)
    return seed


def environment(seed, args):
    import importlib.metadata as md

    import numpy as np

    tf = seed.tf
    versions = {}
    for pkg in (
        "tensorflow-cpu",
        "tensorflow",
        "tensorflow-compression",
        "tensorflow-probability",
        "keras",
        "numpy",
        "scipy",
    ):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "python": platform.python_version(),
        "versions": versions,
        "tf_version": tf.__version__,
        "numpy_version": np.__version__,
        "cpu_count": os.cpu_count(),
        "threads_requested": args.threads or "tensorflow default",
        # 0 means "let TensorFlow choose" (one intra-op thread per core).
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "seed": args.seed,
        # The machines are shared: a load above the core count at the start
        # means the timings that follow are contended.
        "loadavg_start": list(os.getloadavg()),
    }


def make_datasets(seed, data, limit, batch):
    tf = seed.tf
    x_train, y_train = data["train_images"], data["train_labels"]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    training_dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    validation_dataset = tf.data.Dataset.from_tensor_slices(
        (data["test_images"], data["test_labels"])
    )
    train = training_dataset.map(seed.add_rd_targets).batch(batch).prefetch(8)
    val = validation_dataset.map(seed.add_rd_targets).batch(batch).cache()
    return train, val, len(x_train)


def train_model(seed, data, args, log=print):
    """Trains as the tutorial's train_mnist_model; returns (trainer, record)."""
    tf = seed.tf
    train_ds, val_ds, n_train = make_datasets(seed, data, args.limit, args.batch_size)
    trainer = seed.make_mnist_compression_trainer(args.lmbda, args.latent_dims)

    class EpochTimer(tf.keras.callbacks.Callback):
        """Wall-clock seconds per epoch, and the validation share of them."""

        def __init__(self):
            super().__init__()
            self.epochs = []
            self._t0 = self._v0 = None
            self._val = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._val = 0.0
            self._t0 = time.perf_counter()

        def on_test_begin(self, logs=None):
            self._v0 = time.perf_counter()

        def on_test_end(self, logs=None):
            self._val += time.perf_counter() - self._v0

        def on_epoch_end(self, epoch, logs=None):
            total = time.perf_counter() - self._t0
            self.epochs.append(
                {
                    "epoch": epoch + 1,
                    "seconds": total,
                    "validation_seconds": self._val,
                    "train_seconds": total - self._val,
                    "peak_rss_mib": peak_rss_mib(),
                }
            )

    timer = EpochTimer()
    t0 = time.perf_counter()
    history = trainer.fit(
        train_ds,
        epochs=args.epochs,
        validation_data=val_ds,
        validation_freq=1,
        verbose=2,
        callbacks=[timer],
    )
    fit_seconds = time.perf_counter() - t0
    h = history.history
    epochs = []
    for i, rec in enumerate(timer.epochs):
        row = dict(rec)
        row.update(
            {
                "rate": h["rate_pass_through_loss"][i],
                "distortion": h["distortion_pass_through_loss"][i],
                "loss": h["loss"][i],
            }
        )
        if "val_loss" in h and i < len(h["val_loss"]):
            row.update(
                {
                    "val_rate": h["val_rate_pass_through_loss"][i],
                    "val_distortion": h["val_distortion_pass_through_loss"][i],
                    "val_loss": h["val_loss"][i],
                }
            )
        row["history"] = {k: float(v[i]) for k, v in h.items() if i < len(v)}
        epochs.append(row)
    record = {
        "lmbda": args.lmbda,
        "latent_dims": args.latent_dims,
        "batch_size": args.batch_size,
        "train_digits": n_train,
        "steps_per_epoch": -(-n_train // args.batch_size),
        "epochs": epochs,
        "fit_seconds": fit_seconds,
        "peak_rss_mib": peak_rss_mib(),
    }
    return trainer, record


def get_trainer(seed, data, args, log=print):
    """A trainer from --weights, else a brief training run (--epochs)."""
    if args.weights:
        trainer = seed.make_mnist_compression_trainer(args.lmbda, args.latent_dims)
        trainer(data["test_images"][:1], training=False)  # build variables
        index = args.weights + ".index"
        if not os.path.exists(index) and not os.path.exists(args.weights):
            raise PeerError(
                f"weights {args.weights!r} not found (expected a TF checkpoint, e.g. {index})"
            )
        trainer.load_weights(args.weights).expect_partial()
        return trainer, {"weights": args.weights}
    trainer, record = train_model(seed, data, args, log=log)
    return trainer, record


def psnr_stats(originals, reconstructions):
    import numpy as np

    a = originals.reshape(len(originals), -1).astype(np.float64)
    b = reconstructions.reshape(len(reconstructions), -1).astype(np.float64)
    mse = ((a - b) ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        per = 10 * np.log10(255.0**2 / mse)
    finite = np.isfinite(per)
    return {
        "psnr_mean_of_per_digit_db": float(per[finite].mean()) if finite.any() else None,
        "digits_with_infinite_psnr": int((~finite).sum()),
        "psnr_of_mean_mse_db": float(10 * np.log10(255.0**2 / mse.mean())),
        "mad": float(np.abs(a - b).mean() / 255.0),
    }


# --------------------------------------------------------------------------
# Subcommands.
# --------------------------------------------------------------------------


def write_json(path, obj):
    if not path:
        return
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def cmd_train(args):
    data = load_mnist(args.data_dir)
    seed = setup_tf(args)
    env = environment(seed, args)
    trainer, record = train_model(seed, data, args)
    if args.save_weights:
        trainer.save_weights(args.save_weights)
        record["saved_weights"] = args.save_weights
    out = {"command": "train", "environment": env, **record, "loadavg_end": list(os.getloadavg())}
    write_json(args.json, out)
    print(
        f"\nTF {env['tf_version']}, {env['cpu_count']} CPUs, threads: "
        f"{env['threads_requested']}, load {env['loadavg_start'][0]:.1f}; "
        f"lambda {args.lmbda}, "
        f"{args.latent_dims} latents, {record['train_digits']} training digits"
    )
    print(
        f"{'epoch':>5} {'s':>7} {'val s':>6} {'rate':>8} {'dist':>7} "
        f"{'val rate':>9} {'val dist':>8}"
    )
    for e in record["epochs"]:
        print(
            f"{e['epoch']:>5} {e['seconds']:7.1f} {e['validation_seconds']:6.1f} "
            f"{e['rate']:8.2f} {e['distortion']:7.4f} "
            f"{e.get('val_rate', float('nan')):9.2f} "
            f"{e.get('val_distortion', float('nan')):8.4f}"
        )
    print(f"peak RSS {record['peak_rss_mib']:.0f} MiB")
    if args.json:
        print(f"wrote {args.json}")
    return 0


def cmd_code(args):
    import numpy as np

    data = load_mnist(args.data_dir)
    seed = setup_tf(args)
    tf = seed.tf
    env = environment(seed, args)
    trainer, train_record = get_trainer(seed, data, args)

    t0 = time.perf_counter()
    compressor, decompressor = seed.make_mnist_codec(trainer)
    build_seconds = time.perf_counter() - t0

    images = data["test_images"]
    n = len(images)
    x_all = tf.constant(images)

    comp_times, decomp_times = [], []
    strings = entropies = recon = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        strings, entropies = compressor(x_all)
        comp_times.append(time.perf_counter() - t)
    for _ in range(args.repeats):
        t = time.perf_counter()
        recon = decompressor(strings)
        decomp_times.append(time.perf_counter() - t)

    lengths = np.array([len(s) for s in strings.numpy()])
    bits = 8 * lengths
    info = entropies.numpy()
    recon = recon.numpy()

    # Single-digit latency: one digit per call, median of --latency-calls.
    one = x_all[:1]
    one_string, _ = compressor(one)
    decompressor(one_string)  # warm
    enc1, dec1 = [], []
    for _ in range(args.latency_calls):
        t = time.perf_counter()
        compressor(one)
        enc1.append(time.perf_counter() - t)
    for _ in range(args.latency_calls):
        t = time.perf_counter()
        decompressor(one_string)
        dec1.append(time.perf_counter() - t)

    quality = psnr_stats(images, recon)
    out = {
        "command": "code",
        "environment": env,
        "training": train_record,
        "codec": {"range_coder_precision": 12, "tail_mass": 2**-8, "build_seconds": build_seconds},
        "test_digits": n,
        "repeats": args.repeats,
        "compress_seconds": comp_times,
        "decompress_seconds": decomp_times,
        "compress_digits_per_s": [n / t for t in comp_times],
        "decompress_digits_per_s": [n / t for t in decomp_times],
        "single_digit": {
            "calls": args.latency_calls,
            "compress_median_ms": 1e3 * statistics.median(enc1),
            "decompress_median_ms": 1e3 * statistics.median(dec1),
            "compress_min_ms": 1e3 * min(enc1),
            "decompress_min_ms": 1e3 * min(dec1),
        },
        "string_bits_mean": float(bits.mean()),
        "string_bytes_min": int(lengths.min()),
        "string_bytes_max": int(lengths.max()),
        "information_bits_mean": float(info.mean()),
        "string_overhead_percent": float(100 * (bits.mean() / info.mean() - 1)),
        **quality,
        "peak_rss_mib": peak_rss_mib(),
        "loadavg_end": list(os.getloadavg()),
    }
    write_json(args.json, out)

    print(
        f"\nTF {env['tf_version']}, {env['cpu_count']} CPUs, threads: "
        f"{env['threads_requested']}, load {env['loadavg_start'][0]:.1f}; "
        f"codec tables built in {build_seconds:.2f} s"
    )

    def fmt(xs):
        return ", ".join(f"{x:,.0f}" for x in xs)

    print(
        f"compress   {n} digits in one call: "
        f"{', '.join(f'{t:.3f}' for t in comp_times)} s  "
        f"({fmt(out['compress_digits_per_s'])} digits/s)"
    )
    print(
        f"decompress {n} digits in one call: "
        f"{', '.join(f'{t:.3f}' for t in decomp_times)} s  "
        f"({fmt(out['decompress_digits_per_s'])} digits/s)"
    )
    sd = out["single_digit"]
    print(
        f"one digit (median of {args.latency_calls}): compress "
        f"{sd['compress_median_ms']:.2f} ms, decompress "
        f"{sd['decompress_median_ms']:.2f} ms"
    )
    print(
        f"string {out['string_bits_mean']:.2f} bits/digit vs information "
        f"{out['information_bits_mean']:.2f} bits/digit "
        f"({out['string_overhead_percent']:+.1f} %)"
    )
    print(
        f"PSNR {quality['psnr_mean_of_per_digit_db']:.2f} dB (mean of per-digit), "
        f"{quality['psnr_of_mean_mse_db']:.2f} dB (of mean MSE); "
        f"MAD {quality['mad']:.4f}; peak RSS {out['peak_rss_mib']:.0f} MiB"
    )
    if args.json:
        print(f"wrote {args.json}")
    return 0


def cmd_sample(args):
    import numpy as np

    data = load_mnist(args.data_dir)
    seed = setup_tf(args)
    tf = seed.tf
    trainer, _ = get_trainer(seed, data, args)
    _, decompressor = seed.make_mnist_codec(trainer, decode_sanity_check=False)
    strings = tf.constant([os.urandom(args.bytes) for _ in range(args.count)])
    samples = decompressor(strings).numpy()
    if args.out:
        np.save(args.out, samples)
        print(f"wrote {args.out} {samples.shape} uint8")
    for img in samples[: min(4, len(samples))]:
        for row in img[::2, :, 0]:
            print("".join(" .:-=+*#%@"[v * 10 // 256] for v in row))
        print()
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(
        description="The seed's TensorFlow Compression MNIST model (benchmark peer for mnistcodec)."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, epochs_default):
        sp.add_argument(
            "--data-dir",
            default=os.environ.get("MNISTCODEC_DATA_DIR"),
            help="directory with the four MNIST IDX files (default: $MNISTCODEC_DATA_DIR)",
        )
        sp.add_argument("--epochs", type=int, default=epochs_default)
        sp.add_argument("--lmbda", type=float, default=2000.0)
        sp.add_argument("--latent-dims", type=int, default=50)
        sp.add_argument("--batch-size", type=int, default=128)
        sp.add_argument(
            "--limit", type=int, default=0, help="train on the first N training digits only"
        )
        sp.add_argument(
            "--threads",
            type=int,
            default=0,
            help="intra- and inter-op threads (default 0: TensorFlow's own choice)",
        )
        sp.add_argument(
            "--seed",
            type=int,
            default=None,
            help="tf.keras.utils.set_random_seed (default: none, as in the tutorial)",
        )
        sp.add_argument("--json", default=None, help="write results here")

    sp = sub.add_parser("train", help="train and time epochs")
    common(sp, 5)
    sp.add_argument(
        "--save-weights", default=None, help="save the trained weights (TF checkpoint prefix)"
    )
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("code", help="time compress/decompress of the test set")
    common(sp, 1)
    sp.add_argument(
        "--weights",
        default=None,
        help="load trained weights (checkpoint prefix from "
        "train --save-weights) instead of training",
    )
    sp.add_argument("--repeats", type=int, default=3)
    sp.add_argument("--latency-calls", type=int, default=50)
    sp.set_defaults(func=cmd_code)

    sp = sub.add_parser("sample", help="decode random strings (generative use)")
    common(sp, 1)
    sp.add_argument("--weights", default=None)
    sp.add_argument("--count", type=int, default=16)
    sp.add_argument("--bytes", type=int, default=8)
    sp.add_argument("--out", default=None, help="save samples as .npy")
    sp.set_defaults(func=cmd_sample)

    args = p.parse_args(argv)
    if args.epochs < 1 and not getattr(args, "weights", None):
        p.error("--epochs must be at least 1")
    try:
        return args.func(args)
    except PeerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(
            f"error: {e}\nrun this script with the peer venv's python "
            f"(bash bench/peer/setup_peer.sh prints its path)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
