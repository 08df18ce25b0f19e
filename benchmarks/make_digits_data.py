"""Write ``edgeopt/examples/digits_data.npz``: the built-in example's data, so edgeopt needs no scikit-learn.

    python -m benchmarks.make_digits_data

The data are scikit-learn's ``load_digits`` (1797 8x8 images, pixel values 0..16, 10 classes): the test
set of the UCI "Optical Recognition of Handwritten Digits" data (Alpaydin and Kaynak, 1998), licensed
CC BY 4.0 (https://doi.org/10.24432/C50P49). The file holds the example's fixed stratified 70/30 split
(``train_test_split(test_size=0.3, random_state=0, stratify=labels)``) as uint8 arrays, so that
``edgeopt.examples.digits.example_data`` returns exactly the images it returned when it called
scikit-learn (scikit-learn is needed only here, once).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edgeopt.examples.digits import DATA_FILE, SPLIT_SEED, TEST_SIZE
from edgeopt.fileio import atomic_write_bytes

OUT = Path(__file__).resolve().parents[1] / "edgeopt" / "examples" / DATA_FILE


def main() -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images, digits.target, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=digits.target)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, train_images=x_train.astype(np.uint8), train_labels=y_train.astype(np.uint8),
                        test_images=x_test.astype(np.uint8), test_labels=y_test.astype(np.uint8))
    atomic_write_bytes(OUT, buffer.getvalue())
    print(f"{OUT}: {len(x_train)} train and {len(x_test)} test images, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
