"""Real photos shipped inside scikit-image and scikit-learn, cut into model-sized crops.

Calibration and evaluation crops come from *different* photos (``CALIBRATION_PHOTOS`` and
``EVALUATION_PHOTOS``), so a quantizer tuned on the first set is judged on images it never
saw. Crops are deterministic (a seeded grid with jitter), ImageNet-normalised NCHW float32.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

#: Photos (file names) used for calibration: natural scenes, objects, people.
CALIBRATION_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "china.jpg",
                      "motorcycle_left.png")
#: Photos used only for evaluation (disjoint from calibration).
EVALUATION_PHOTOS = ("horse.png", "motorcycle_right.png", "flower.jpg", "hubble_deep_field.jpg",
                     "retina.jpg", "coins.png", "camera.png", "brick.png", "grass.png",
                     "gravel.png", "color.png", "ihc.png", "page.png", "moon.png", "clock_motion.png")

#: Further scikit-image photos in neither set, for the *training* pool of QAT / distillation
#: only (``augmented_crops(names=CALIBRATION_PHOTOS + EXTRA_TRAINING_PHOTOS)``): microscopy,
#: a retina scan, text, a logo, a phantom, chessboards — never used for evaluation.
EXTRA_TRAINING_PHOTOS = ("cell.png", "microaneurysms.png", "text.png", "logo.png", "phantom.png",
                         "chessboard_RGB.png")
#: ``augmented_crops(mix=...)``: how a second crop is blended into each one
MIX_MODES = ("mixup", "cutmix")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _package_dir(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (skimage is heavy)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{package} is not installed: pip install 'edgequant[dev]'")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def photo_path(name: str) -> Path:
    """Where photo ``name`` lies (scikit-image's data folder, else scikit-learn's images)."""
    for folder in (_package_dir("skimage", "data"), _package_dir("sklearn", "datasets", "images")):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"photo {name!r} is in neither scikit-image nor scikit-learn")


def load_photo(name: str) -> np.ndarray:
    """Photo ``name`` as an (H, W, 3) uint8 RGB array (grey photos repeated to 3 channels)."""
    from PIL import Image

    with Image.open(photo_path(name)) as im:
        return np.asarray(im.convert("RGB"))


def crops(names: tuple[str, ...], n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``n`` crops of ``size``² from ``names`` at random scales: (n, 3, size, size) float32."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [load_photo(nm) for nm in names]
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.35, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        patch = Image.fromarray(img[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        a = np.asarray(patch, np.float32) / 255.0              # (size, size, 3)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        out[i] = ((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)  # (3, size, size)
    return out


def calibration_crops(n: int = 64, size: int = 224, seed: int = 0) -> np.ndarray:
    """Crops of the calibration photos: (n, 3, size, size) float32."""
    return crops(CALIBRATION_PHOTOS, n, size, seed)


def evaluation_crops(n: int = 128, size: int = 224, seed: int = 1) -> np.ndarray:
    """Crops of the evaluation photos (disjoint from calibration): (n, 3, size, size) float32."""
    return crops(EVALUATION_PHOTOS, n, size, seed)


def _augmented(rng: np.random.Generator, photos: list[np.ndarray], size: int,
               grey: float) -> np.ndarray:
    """One augmented crop in [0, 1]: (size, size, 3) float32 (see :func:`augmented_crops`)."""
    from PIL import Image

    luma_w = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma weights
    img = photos[rng.integers(len(photos))]
    h, w = img.shape[:2]
    for _ in range(10):  # torchvision RandomResizedCrop: retry, then fall back to a square
        area = h * w * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw = ch = min(h, w)
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    patch = Image.fromarray(img[y:y + ch, x:x + cw]).resize((size, size), Image.BILINEAR)
    a = np.asarray(patch, np.float32) / 255.0              # (size, size, 3) in [0, 1]
    if rng.random() < 0.5:
        a = a[:, ::-1]
    a = a * rng.uniform(0.7, 1.3)                                        # brightness
    mean = (a @ luma_w).mean()
    a = (a - mean) * rng.uniform(0.7, 1.3) + mean                        # contrast
    luma = (a @ luma_w)[..., None]                                       # (size, size, 1)
    a = np.clip((a - luma) * rng.uniform(0.7, 1.3) + luma, 0.0, 1.0)     # saturation
    if rng.random() < grey:
        a = np.repeat(a @ luma_w, 3).reshape(size, size, 3)              # grey, 3 channels
    return a


def _mix(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    """``a`` blended with ``b`` (both (size, size, 3)): mixup ``λa + (1−λ)b`` or cutmix (a box
    of area ``1−λ`` of ``b`` pasted into ``a``), ``λ ~ U(0, 1)``."""
    lam = rng.uniform(0.0, 1.0)
    if mode == "mixup":
        return lam * a + (1.0 - lam) * b
    size = a.shape[0]
    side = round(size * math.sqrt(1.0 - lam))  # square box of area (1 − λ)·size²
    y, x = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
    out = a.copy()
    out[y:y + side, x:x + side] = b[y:y + side, x:x + side]
    return out


def augmented_crops(n: int, size: int = 224, seed: int = 0,
                    names: tuple[str, ...] = CALIBRATION_PHOTOS, grey: float = 0.3,
                    mix: str | None = None, synthetic: float = 0.0) -> np.ndarray:
    """``n`` augmented training crops of ``names`` (default: the calibration photos, never the
    evaluation ones): (n, 3, size, size) float32, ImageNet-normalised.

    Each crop is an Inception-style random resized crop (8–100 % of the photo's area, aspect
    3/4–4/3), a horizontal flip with probability ½, a colour jitter of brightness,
    contrast and saturation by up to ±30 % each, and with probability ``grey`` (default 0.3)
    a conversion to grey — the standard ImageNet / SimCLR training augmentations, so a few
    colour photos give many distinct images (grey ones included) for QAT / distillation.
    ``mix``: ``"mixup"`` or ``"cutmix"`` blends every crop with a second augmented crop (of
    any photo of ``names``) — "function matching" (Beyer et al. 2022): the teacher labels
    each blend, so the student sees images off the photos' manifold; None (default): no blend.
    ``synthetic``: the fraction of crops replaced by procedural images (dead leaves, 1/f colour
    noise, blends: :mod:`edgequant_zoo.synthetic_images`), textures and edges at every scale
    that a few object photos lack; 0 (default): photos only.
    """
    if any(nm in EVALUATION_PHOTOS for nm in names):
        raise ValueError(f"augmented_crops: {sorted(set(names) & set(EVALUATION_PHOTOS))} are "
                         "evaluation photos; train only on CALIBRATION_PHOTOS")
    if not 0.0 <= grey <= 1.0:
        raise ValueError(f"augmented_crops: grey={grey!r} is not allowed: use a probability "
                         "in [0, 1]")
    if mix is not None and mix not in MIX_MODES:
        raise ValueError(f"augmented_crops: mix={mix!r} is not allowed: use one of {MIX_MODES} "
                         "or None")
    if not 0.0 <= synthetic <= 1.0:
        raise ValueError(f"augmented_crops: synthetic={synthetic!r} is not allowed: use a "
                         "fraction in [0, 1]")
    from edgequant_zoo.synthetic_images import synthetic_image

    rng = np.random.default_rng(seed)
    photos = [load_photo(nm) for nm in names]
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        if synthetic and rng.random() < synthetic:  # no draw at 0: photo crops stay as before
            a = synthetic_image(rng, size)                               # (size, size, 3)
        else:
            a = _augmented(rng, photos, size, grey)                      # (size, size, 3)
        if mix is not None:
            a = _mix(rng, a, _augmented(rng, photos, size, grey), mix)
        out[i] = ((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)  # (3, size, size)
    return out


__all__ = ["CALIBRATION_PHOTOS", "EVALUATION_PHOTOS", "EXTRA_TRAINING_PHOTOS", "MIX_MODES",
           "augmented_crops", "calibration_crops", "crops", "evaluation_crops", "load_photo",
           "photo_path"]
