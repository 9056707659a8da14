"""Image data: folders of PNG/JPEG files (one sub-folder per class) and ``.npz`` arrays, preprocessed once.

Every split goes through the same steps, so every check sees the same tensors: convert to the policy's number
of channels, resize to its size, scale 8-bit values to [0, 1], then standardise with its mean and std. Regions
(``data.regions``, ``data.forbidden_regions``) become one boolean mask per image at the preprocessed size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audit.artifacts.data import sha256_file
from audit.errors import ArtifactError, Issue

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
IMAGE_FORMATS = ("image_folder", "npz")


def infer_image_format(path: Path) -> str | None:
    """``image_folder`` for a folder, ``npz`` for a ``.npz`` file, else ``None``."""
    if path.is_dir():
        return "image_folder"
    if path.suffix.lower() == ".npz":
        return "npz"
    return None


@dataclass
class Preprocessing:
    """The preprocessing resolved for this audit: fixed size, channels, and per-channel mean and std."""

    size: tuple[int, int]
    channels: int
    mean: np.ndarray
    std: np.ndarray
    scaled: bool = True  # whether raw values were 8-bit (scaled to [0, 1]) rather than given as floats

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the provenance."""
        return {"size": list(self.size), "channels": self.channels, "mean": self.mean.tolist(),
                "std": self.std.tolist()}


@dataclass
class ImageSplit:
    """One split of image data: raw arrays before preprocessing, labels and where each image came from."""

    raw: np.ndarray  # (N, H, W, C) float32: 0..1 for 8-bit sources, else as stored
    y: np.ndarray
    files: list[str]
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    eight_bit: bool = True
    provenance: dict[str, Any] = field(default_factory=dict)


def read_image_split(path: Path, fmt: str, *, where: str, key: str, channels: int | None,
                     size: tuple[int, int] | None, layout: str = "auto") -> ImageSplit:
    """Read an image folder or an npz file into raw ``(N, H, W, C)`` arrays at the target size and channels."""
    if fmt == "image_folder":
        if not path.is_dir():
            raise ArtifactError([Issue(where, key, f"image folder not found: {path}")])
        return _read_folder(path, where=where, key=key, channels=channels, size=size)
    if not path.is_file():
        raise ArtifactError([Issue(where, key, f"data file not found: {path}")])
    return _read_npz(path, where=where, key=key, channels=channels, size=size, layout=layout)


def _read_folder(path: Path, *, where: str, key: str, channels: int | None,
                 size: tuple[int, int] | None) -> ImageSplit:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ArtifactError([Issue(where, key, f"{path} has no sub-folders: an image folder holds one sub-folder "
                                   "per class (e.g. cat/, dog/) with the images of that class")])
    arrays, labels, files = [], [], []
    h = hashlib.sha256()
    for label in classes:
        for f in sorted((path / label).iterdir()):
            if f.name.startswith(".") or f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    if channels is None:
                        channels = 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3
                    img = im.convert("L" if channels == 1 else "RGB")
                    if size is None:
                        size = (img.height, img.width)
                    if (img.height, img.width) != size:
                        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    a = np.asarray(img, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise ArtifactError([Issue(where, key, f"cannot read image {f}: {type(exc).__name__}: {exc}")]
                                    ) from None
            arrays.append(a[..., None] if a.ndim == 2 else a)
            rel = f"{label}/{f.name}"
            labels.append(label)
            files.append(rel)
            h.update(rel.encode())
            h.update(bytes.fromhex(sha256_file(f)))
    if not arrays:
        raise ArtifactError([Issue(where, key, f"no images (PNG/JPEG) found in the class folders of {path}")])
    return ImageSplit(raw=np.stack(arrays), y=np.asarray(labels, dtype=object), files=files,
                      provenance={"path": str(path), "sha256": h.hexdigest(), "rows": len(arrays),
                                  "classes": classes, "format": "image_folder"})


def _read_npz(path: Path, *, where: str, key: str, channels: int | None, size: tuple[int, int] | None,
              layout: str) -> ImageSplit:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ArtifactError([Issue(where, key, f"cannot read {path.name} as npz: {type(exc).__name__}: {exc}")]
                            ) from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ArtifactError([Issue(where, key, f"{path.name} lacks the array(s) {missing}; an npz data file holds "
                                   f"images `x` and labels `y` (it has: {', '.join(arrays) or 'nothing'})")])
    x, y = arrays.pop("x"), arrays.pop("y")
    got = split_from_arrays(x, y, arrays, name=path.name, where=where, key=key, channels=channels, size=size,
                            layout=layout)
    got.provenance = {"path": str(path), "sha256": sha256_file(path), "rows": len(got.y), "format": "npz"}
    return got


def split_from_arrays(x: np.ndarray, y: np.ndarray, extra: dict[str, np.ndarray], *, name: str, where: str,
                      key: str, channels: int | None, size: tuple[int, int] | None, layout: str) -> ImageSplit:
    """Images ``x`` and labels ``y``, as an npz file ``name`` holds them, as raw ``(N, H, W, C)`` arrays.

    Converted to ``channels`` and resized to ``size`` where given; the 1-d per-image arrays of ``extra`` are kept
    (e.g. sensitive attributes).
    """
    y = np.asarray(y).ravel()
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim == 4:
        nchw = layout == "nchw" or (layout == "auto" and x.shape[1] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4))
        if nchw:
            x = np.moveaxis(x, 1, -1)
    else:
        raise ArtifactError([Issue(where, key, f"`x` in {name} has shape {x.shape}; expected (N, H, W), "
                                   "(N, H, W, C) or (N, C, H, W)")])
    if len(x) != len(y):
        raise ArtifactError([Issue(where, key, f"{name}: `x` has {len(x)} images but `y` {len(y)} labels")])
    if len(x) == 0:
        raise ArtifactError([Issue(where, key, f"{name} has no images")])
    eight_bit = x.dtype == np.uint8
    raw = x.astype(np.float32) / 255.0 if eight_bit else x.astype(np.float32)
    raw = convert_channels(raw, channels)
    if size is not None and raw.shape[1:3] != size:
        raw = resize(raw, size)
    extra = {k: v for k, v in extra.items() if v.ndim == 1 and len(v) == len(y)}
    return ImageSplit(raw=raw, y=y, files=[f"{name}[{i}]" for i in range(len(y))], extra=extra,
                      eight_bit=eight_bit)


def convert_channels(raw: np.ndarray, channels: int | None) -> np.ndarray:
    """``(N, H, W, C)`` to the wanted channels: grey to RGB repeats, RGB to grey by luma, alpha dropped."""
    c = raw.shape[-1]
    if c == 4:
        raw, c = raw[..., :3], 3
    if channels is None or channels == c:
        return raw
    if channels == 3 and c == 1:
        return np.repeat(raw, 3, axis=-1)
    if channels == 1 and c == 3:
        return (raw @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    raise ValueError(f"cannot convert {c} channels to {channels}")


def resize(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (antialiased when shrinking) of ``(N, H, W, C)`` arrays."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual alias

    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(raw, -1, 1)))
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return np.moveaxis(out.numpy(), 1, -1).astype(np.float32)


def standardise(raw: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Raw ``(N, H, W, C)`` to the model's ``(N, C, H, W)`` float32 input: ``(x - mean) / std`` per channel."""
    x = (raw - prep.mean.reshape(1, 1, 1, -1)) / prep.std.reshape(1, 1, 1, -1)
    return np.ascontiguousarray(np.moveaxis(x, -1, 1).astype(np.float32))


def for_display(x: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Model inputs ``(N, C, H, W)`` back to displayable ``(N, H, W, C)`` values in [0, 1]."""
    raw = np.moveaxis(np.asarray(x, dtype=np.float32), 1, -1) * prep.std.reshape(1, 1, 1, -1)
    raw = raw + prep.mean.reshape(1, 1, 1, -1)
    lo, hi = float(raw.min()), float(raw.max())
    if lo < -1e-3 or hi > 1 + 1e-3:  # not a [0, 1] image (floats stored on another scale): stretch
        raw = (raw - lo) / max(hi - lo, 1e-12)
    return np.clip(raw, 0, 1)


def channel_stats(value: float | list[float], channels: int, *, where: str, key: str) -> np.ndarray:
    """A scalar or per-channel mean/std as an array of length ``channels``."""
    arr = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if len(arr) == 1:
        arr = np.repeat(arr, channels)
    if len(arr) != channels:
        raise ArtifactError([Issue(where, key, f"has {len(arr)} values for {channels} channel(s); give one value "
                                   "or one per channel")])
    return arr


def frame_for(split: ImageSplit, target: str, sensitive: list[str]) -> pd.DataFrame:
    """The split's table: the label, the image's source (``file``) and any per-image columns of the npz."""
    cols: dict[str, Any] = {target: split.y, "file": split.files}
    for name in sensitive:
        if name in split.extra:
            cols[name] = split.extra[name]
    return pd.DataFrame(cols)


def region_masks(regions: list[Any], *, n: int, size: tuple[int, int], y: np.ndarray, split: str,
                 resolve: Any, where: Any, key: str) -> np.ndarray | None:
    """Union of the regions that apply to each image, ``(N, H, W)`` bool, or ``None`` when none are given.

    ``regions`` are boxes ``[x0, y0, x1, y1]`` (pixels of the preprocessed input of ``size``, end exclusive) or
    mask files, each optionally for one class (compared with the true labels ``y`` of the ``n`` images of
    ``split``). ``resolve`` resolves paths against the policy folder; ``where(key, i, ...)`` gives
    ``file:line:col`` for errors.
    """
    if not regions:
        return None
    h, w = size
    masks = np.zeros((n, h, w), dtype=bool)
    issues = []
    for i, r in enumerate(regions):
        applies = np.ones(n, dtype=bool) if r.class_ is None else np.asarray(
            [str(v) == str(r.class_) for v in y])
        if r.box is not None:
            x0, y0, x1, y1 = r.box
            if x1 > w or y1 > h:
                issues.append(Issue(where(key, i, "box"), f"data.{key}[{i}].box", (
                    f"box {list(r.box)} reaches outside the preprocessed image ({w} wide, {h} high); boxes are "
                    "[x0, y0, x1, y1] in pixels of the preprocessed input, end exclusive")))
                continue
            box = np.zeros((h, w), dtype=bool)
            box[y0:y1, x0:x1] = True
            masks[applies] |= box
            continue
        path = resolve(r.mask)
        try:
            with np.load(path, allow_pickle=False) as z:
                arr = z[split] if split in z.files else (z["mask"] if "mask" in z.files else None)
        except Exception as exc:
            issues.append(Issue(where(key, i, "mask"), f"data.{key}[{i}].mask",
                                f"cannot read {path}: {type(exc).__name__}: {exc}"))
            continue
        if arr is None:
            continue  # no mask for this split
        arr = np.asarray(arr).astype(bool)
        if arr.shape == (h, w):
            masks[applies] |= arr
        elif arr.shape == (n, h, w):
            masks[applies] |= arr[applies]
        else:
            issues.append(Issue(where(key, i, "mask"), f"data.{key}[{i}].mask", (
                f"mask {split!r} in {Path(path).name} has shape {arr.shape}; expected ({h}, {w}) or ({n}, {h}, {w}) "
                "(one mask per image of the split, at the preprocessed size)")))
    if issues:
        raise ArtifactError(issues)
    return masks
