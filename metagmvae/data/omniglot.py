"""Omniglot: archive verification, the character split, 28x28 preprocessing and rotations.

Archive layout (official and mirror alike): ``<top>/<Alphabet>/characterNN/NNNN_DD.png``, each a
105x105 1-bit PNG with black strokes on white.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from metagmvae.runtime.progress import progress as progress_bar
from metagmvae.schema.data import IMAGES_PER_CHARACTER, ROTATIONS
from metagmvae.schema.data import RESIZE_FILTERS as RESIZE_FILTER_NAMES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FORMAT = "metagmvae.omniglot.v1"
MEMBER_DIGESTS = Path(__file__).with_name("omniglot_members.json.gz")
"""Expected per-member digests of the official archives, keyed by their content digest (written
by ``python -m benchmarks.member_digests``): they name the first member of a modified
archive whose bytes differ."""
MEMBER_DIGEST_HEX = 8  # hex digits kept of each member's SHA-256 (enough to point at a change)

RESIZE_FILTERS = {name: Image.Resampling[name.upper()] for name in RESIZE_FILTER_NAMES}  # the `resize_filter` choices


class ArchiveError(ValueError):
    """An Omniglot archive is unreadable, incomplete or not the expected one."""


@dataclass(frozen=True)
class ArchiveSummary:
    """What :func:`verify_archive` found: character count, image count and content digest."""

    characters: int
    images: int
    content_sha256: str


def safe_member_name(name: str, archive: str | Path) -> PurePosixPath:
    """Return ``name`` as a relative path, refusing absolute paths and ``..`` (zip-slip)."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ArchiveError(f"{archive}: unsafe member name {name!r} (absolute or '..' path)")
    return path


def _character_key(path: PurePosixPath) -> tuple[str, str]:
    """(alphabet, character) of ``<top>/<alphabet>/<character>/<file>.png``."""
    return path.parts[1], path.parts[2]


def read_archive(path: str | Path, label: str | None = None) -> dict[tuple[str, str], list[tuple[str, bytes]]]:
    """Read every PNG of an Omniglot archive, grouped by (alphabet, character).

    Returns ``{(alphabet, character): [(member name, png bytes), ...]}`` with members sorted by
    name. Raises :class:`ArchiveError` naming the archive (``label``, default ``path``: the
    download names the source it read, not its temporary copy) and the problem for anything
    that is not a complete, well-formed Omniglot archive (bad zip, CRC error, unsafe or
    symlinked members, unexpected files, wrong image counts).
    """
    path, archive = Path(path), label or str(path)
    groups: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                path = safe_member_name(info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ArchiveError(f"{archive}: member {info.filename!r} is a symbolic link")
                if info.is_dir():
                    continue
                if path.suffix.lower() != ".png" or len(path.parts) != 4:
                    raise ArchiveError(
                        f"{archive}: unexpected member {info.filename!r}; expected "
                        "<top>/<alphabet>/<character>/<image>.png"
                    )
                data = zf.read(info)  # checks the CRC
                if not data.startswith(PNG_SIGNATURE):
                    raise ArchiveError(f"{archive}: member {info.filename!r} is not a PNG image")
                groups[_character_key(path)].append((info.filename, data))
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{archive}: corrupt or truncated zip archive ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ArchiveError(f"{archive}: cannot be read ({exc})") from exc
    if not groups:
        raise ArchiveError(f"{archive}: holds no PNG images")
    for key, members in groups.items():
        if len(members) != IMAGES_PER_CHARACTER:
            raise ArchiveError(
                f"{archive}: character {'/'.join(key)} has {len(members)} images, expected {IMAGES_PER_CHARACTER}"
            )
        members.sort()
    return dict(sorted(groups.items()))


def _members(groups: dict[tuple[str, str], list[tuple[str, bytes]]]) -> list[tuple[str, bytes]]:
    return sorted(m for members in groups.values() for m in members)


def _feed(h, name: str, data: bytes) -> None:
    h.update(name.encode())
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def content_digest(groups: dict[tuple[str, str], list[tuple[str, bytes]]]) -> str:
    """SHA-256 over the sorted member names and bytes: identical images give identical digests
    however the zip itself was packed."""
    h = hashlib.sha256()
    for name, data in _members(groups):
        _feed(h, name, data)
    return h.hexdigest()


def member_digests(groups: dict[tuple[str, str], list[tuple[str, bytes]]]) -> str:
    """The first :data:`MEMBER_DIGEST_HEX` hex digits of each member's SHA-256 (over its name and
    bytes), in sorted member order, concatenated."""
    out = []
    for name, data in _members(groups):
        h = hashlib.sha256()
        _feed(h, name, data)
        out.append(h.hexdigest()[:MEMBER_DIGEST_HEX])
    return "".join(out)


def known_member_digests(content_sha256: str) -> str | None:
    """The expected :func:`member_digests` of the archive with this content digest, if shipped."""
    if not MEMBER_DIGESTS.exists():
        return None
    with gzip.open(MEMBER_DIGESTS, "rt") as f:
        return json.load(f).get(content_sha256, {}).get("members")


def first_changed_member(groups: dict[tuple[str, str], list[tuple[str, bytes]]], expected: str) -> str:
    """Where an archive with the expected member count departs from the expected
    :func:`member_digests`: the first member, in sorted order, whose name or bytes differ."""
    got, width = member_digests(groups), MEMBER_DIGEST_HEX
    for i, (name, _) in enumerate(_members(groups)):
        if got[i * width : (i + 1) * width] != expected[i * width : (i + 1) * width]:
            return f"the first member whose bytes differ is {name}"
    return "every member matches its short digest"  # a change that the 32-bit digests cannot see


def verify_archive(
    archive: str | Path, characters: int | None = None, content_sha256: str | None = None, label: str | None = None
) -> ArchiveSummary:
    """Check an archive's contents against the expected character count and digest.

    ``None`` skips that check. Raises :class:`ArchiveError` on any mismatch, naming the archive
    as ``label`` (default: its path) and, for changed images, the first member whose bytes
    differ (when :data:`MEMBER_DIGESTS` knows the expected archive).
    """
    groups = read_archive(archive, label)
    label = label or str(archive)
    summary = ArchiveSummary(
        characters=len(groups),
        images=sum(len(m) for m in groups.values()),
        content_sha256=content_digest(groups),
    )
    if characters is not None and summary.characters != characters:
        raise ArchiveError(f"{label}: holds {summary.characters} characters, expected {characters}")
    if content_sha256 is not None and summary.content_sha256 != content_sha256:
        expected = known_member_digests(content_sha256)
        where = first_changed_member(groups, expected) if expected else "no per-member digests are known for it"
        raise ArchiveError(
            f"{label}: content digest {summary.content_sha256} does not match the expected "
            f"{content_sha256} (different or modified images; {where})"
        )
    return summary


def split_characters(n_characters: int, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Deterministic split of character indices: ``RandomState(seed).permutation``, then cut.

    ``sizes`` is ordered (e.g. train, val, test) and must sum to ``n_characters``.
    Returns ``{split name: int64 indices [n_split]}`` in permutation order.
    """
    if sum(sizes.values()) != n_characters:
        raise ValueError(
            f"split sizes {dict(sizes)} sum to {sum(sizes.values())}, but the archives hold {n_characters} characters"
        )
    order = np.random.RandomState(seed).permutation(n_characters)
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = order[start : start + size].astype(np.int64)
        start += size
    return out


def preprocess_png(data: bytes, size: int, resize_filter: str) -> np.ndarray:
    """Decode one Omniglot PNG to ``uint8 [size, size]`` ink: strokes 255, background 0.

    The 1-bit image is converted to 8-bit grey first, so the filter really interpolates; the
    ink is ``255 - grey``. Divide by 255 for values in [0, 1] (see :func:`load_split`).
    """
    with Image.open(io.BytesIO(data)) as img:
        grey = img.convert("L").resize((size, size), resample=RESIZE_FILTERS[resize_filter])
    return 255 - np.asarray(grey, dtype=np.uint8)


def rotations(images: np.ndarray) -> np.ndarray:
    """Exact quarter turns: ``[..., H, W]`` -> ``[4, ..., H, W]`` rotated by 0/90/180/270 degrees
    counter-clockwise."""
    return np.stack([np.rot90(images, k, axes=(-2, -1)) for k in range(ROTATIONS)])


def character_names(archives: list[str | Path]) -> tuple[list[str], list[list[bytes]]]:
    """Read the archives in order; characters of each sorted by (alphabet, character).

    Returns ``(names ["<top>/<alphabet>/<character>"], pngs [[20 png bytes], ...])``.
    """
    names, pngs = [], []
    for archive in archives:
        for (alphabet, character), members in read_archive(archive).items():
            top = PurePosixPath(members[0][0]).parts[0]
            names.append(f"{top}/{alphabet}/{character}")
            pngs.append([data for _, data in members])
    return names, pngs


def build_dataset(
    archives: list[str | Path],
    out_path: str | Path,
    split_sizes: dict[str, int],
    seed: int,
    size: int,
    resize_filter: str,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Split the characters, resize every image, add the four rotations, write one HDF5 file.

    Layout of ``out_path`` (format ``metagmvae.omniglot.v1``), per split ``<s>``:
    ``<s>/images`` uint8 ``[4 * chars, 20, size, size]`` (ink, divide by 255; class
    ``4 * c + r`` is character ``c`` rotated by ``r`` quarter turns counter-clockwise),
    ``<s>/characters`` (names) and ``<s>/character_index`` (position in the sorted list).

    Returns the split as ``{split: [character names]}``.
    """
    from metagmvae.data import hdf5

    names, pngs = character_names(archives)
    split = split_characters(len(names), split_sizes, seed)
    attrs = {"image_size": size, "resize_filter": resize_filter, "split_seed": seed, "value_scale": 1 / 255}
    with hdf5.create(out_path, FORMAT, attrs) as f:
        for split_name, idx in split.items():
            images = np.stack(
                [
                    [preprocess_png(png, size, resize_filter) for png in pngs[i]]
                    for i in progress_bar(idx, desc=f"augment {split_name}", disable=not progress, unit="char")
                ]
            )  # [chars, 20, size, size]
            classes = rotations(images).transpose(1, 0, 2, 3, 4).reshape(-1, *images.shape[1:])
            group = f.create_group(split_name)
            hdf5.write_array(group, "images", classes, chunks=(1, *classes.shape[1:]))
            hdf5.write_strings(group, "characters", [names[i] for i in idx])
            hdf5.write_array(group, "character_index", idx)
    return {split_name: [names[i] for i in idx] for split_name, idx in split.items()}


def load_split(path: str | Path, split: str) -> np.ndarray:
    """All images of one split as float32 ``[classes, 20, 1, H, W]`` in [0, 1] (strokes = 1)."""
    from metagmvae.data import hdf5

    with hdf5.open_store(path, FORMAT) as f:
        if split not in f:
            raise hdf5.StoreError(f"{path}: has no split {split!r} (found {sorted(f)})")
        images = f[split]["images"][()]
    return (images.astype(np.float32) / 255.0)[:, :, None]
