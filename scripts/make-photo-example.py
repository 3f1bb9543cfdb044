#!/usr/bin/env python3
"""Make examples/photos, the small natural-photo example (issue 18), from data/tuxpaint.

data/tuxpaint is made by scripts/fetch-data.sh from Debian's tuxpaint-stamps-default
2022.06.04-1 (GPL-2): stamps rescaled to 160x160 on white, one class per stamp category. This
keeps 5 categories of animals, fruit and flowers (mostly cut-out photographs, some clip art), the
first 8 training and the first 6 test images of each (sorted by file name), as JPEG (quality 90).
Deterministic: the same data/tuxpaint gives the same bytes with the same Pillow.

    python3 scripts/make-photo-example.py data/tuxpaint examples/photos
"""
import os
import sys

from PIL import Image

CLASSES = ["animals-birds", "animals-insects", "animals-mammals", "food-fruit", "plants-flowers"]
KEEP = {"train": 8, "test": 6}


def main(src, dst):
    for split, k in KEEP.items():
        for c in CLASSES:
            d = os.path.join(src, split, c)
            if not os.path.isdir(d):
                sys.exit(f"{d}: missing; run scripts/fetch-data.sh tuxpaint first")
            out = os.path.join(dst, split, c)
            os.makedirs(out, exist_ok=True)
            for name in sorted(os.listdir(d))[:k]:
                im = Image.open(os.path.join(d, name)).convert("RGB")
                im.save(os.path.join(out, os.path.splitext(name)[0] + ".jpg"), quality=90)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
