"""Synthetic brain-MRI slices in the figshare tumour layout (REFERENCE.md §6a): ``N.mat`` files
in MATLAB v7.3 (HDF5 with MATLAB's 512-byte header) holding ``cjdata`` with label, PID, the
16-bit image, tumorBorder and tumorMask, all stored transposed as MATLAB does, and
``cvind.mat`` with each slice's fold of 5, whole patients per fold.

Each patient has one tumour type and several slices; the type shows in the image as the
published set's types do, roughly: a meningioma as a round, bright mass at the brain's edge, a
glioma as a larger, irregular, dimmer mass inside the brain, a pituitary tumour as a small mass
at the centre-bottom (the sella).  Positions, sizes and the slice through the mass vary and
overlap between types, intensities span a 16-bit range: a model has to learn the shapes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

MATLAB_73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 01 00:00:00 2024 HDF5 schema 1.00 ."
LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}


def write_matlab73(path: Path, group_name: str, datasets: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte user block and header."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        group = handle.create_group(group_name) if group_name else handle
        if group_name:
            group.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, value in datasets.items():
            group.create_dataset(name, data=value)
    with open(path, "r+b") as handle:
        handle.write(MATLAB_73_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02" + b"IM")


def tumour_slice(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(16-bit image, 0/1 tumour mask) of one slice with a tumour of type ``label``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    head = ((yy - 0.5) / 0.45) ** 2 + ((xx - 0.5) / 0.38) ** 2 < 1
    texture = rng.normal(0, 1, (size // 4 + 1, size // 4 + 1)).repeat(4, 0).repeat(4, 1)[:size, :size]
    image = np.where(head, 900 + 300 * texture + 300 * rng.random(), 40 + 20 * rng.random((size, size)))
    angle = rng.uniform(0, 2 * np.pi)
    if label == 1:  # meningioma: round, bright, at the edge of the brain, anywhere around it
        distance, radius_of_mass, brightness = rng.uniform(0.24, 0.33), rng.uniform(0.07, 0.11), 1.6
    elif label == 2:  # glioma: larger, irregular, dimmer, inside the brain (sometimes near its edge)
        distance, radius_of_mass, brightness = rng.uniform(0.05, 0.28), rng.uniform(0.09, 0.15), 1.4
    else:  # pituitary: small, round, at the centre-bottom (the sella)
        angle, distance = rng.normal(0, 0.5), rng.uniform(0.15, 0.3)
        radius_of_mass, brightness = rng.uniform(0.04, 0.07), 1.6
    centre = (0.5 + distance * np.cos(angle), 0.5 + 0.85 * distance * np.sin(angle))
    section = rng.uniform(0.6, 1.1)  # the slice cuts the mass off-centre, or near its middle
    radius = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (section * radius_of_mass) ** 2
    if label == 2:
        radius = radius * (1 + 0.35 * np.sin(6 * np.arctan2(yy - centre[0], xx - centre[1]) + angle))
    mask = (radius < 1) & head
    image = np.where(mask, image * brightness, image) * rng.uniform(0.8, 1.25)
    return np.clip(image, 0, 32767).astype(np.int16), mask.astype(np.uint8)


def write_figshare_layout(root: Path, patients: int = 30, slices_per_patient: int = 6, size: int = 96,
                          seed: int = 0) -> dict[str, int]:
    """``patients`` patients (types in turn) with ``slices_per_patient`` slices each, in the two
    unpacked-zip folders of the published set; returns patient id -> label."""
    rng = np.random.default_rng(seed)
    labels, index = {}, 0
    folds: list[int] = []
    for patient in range(patients):
        pid, label = f"{100000 + 37 * patient}", patient % 3 + 1
        labels[pid] = label
        folder = root / ("brainTumorDataPublic_1-766" if patient < patients // 2 else "brainTumorDataPublic_767-1532")
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(slices_per_patient):
            index += 1
            image, mask = tumour_slice(label, size, rng)
            rows, columns = np.nonzero(mask)
            border = np.stack([rows, columns], 1)[:: max(1, len(rows) // 8)].ravel().astype(float)[None]
            write_matlab73(folder / f"{index}.mat", "cjdata", {
                "label": np.array([[float(label)]]),
                "PID": np.array([[ord(c)] for c in pid], dtype=np.uint16),
                "image": image.T, "tumorBorder": border, "tumorMask": mask.T})
            folds.append(patient % 5 + 1)
    write_matlab73(root / "cvind.mat", "", {"cvind": np.array([folds], dtype=float)})
    return labels
