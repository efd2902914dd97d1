"""Write scikit-learn's handwritten digits (1,797 real 8x8 images, 10 classes) as a class/image.png zip.

Usage: .venv/bin/python scripts/make_digits_zip.py digits.zip
"""

import io
import sys
import zipfile

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(dst: str) -> None:
    digits = load_digits()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            img = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), mode="L").resize((32, 32))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            zf.writestr(f"{label}/{i:04d}.png", buf.getvalue())
    print(f"wrote {len(digits.images)} images in 10 classes to {dst}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "digits.zip")
