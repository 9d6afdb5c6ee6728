"""``manifest.json`` of an ONNX export: what the files are, and their SHA-256 to check on load.

The manifest records the format, the variant (fp32, int8, fp16), the model's config, the
tokenizer files, each graph's file and input/output names, the opset, the embedding table
and the parity or agreement report, and ``files``: the SHA-256 of every file of the export
directory (sub-directories hold other variants, each with its own manifest). An engine
refuses the directory when the manifest is missing or unreadable, when a listed file is
missing, or when its hash differs (tampered or corrupt): ``EngineError`` naming the file.
The manifest itself is not signed: the check catches corruption and swapped files, not an
attacker who rewrites the manifest too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pite_ros.engine.base import EngineError

MANIFEST_NAME = "manifest.json"
FORMAT = "pite-onnx"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file of ``directory`` (not sub-directories, not the manifest) into
    ``manifest["files"]`` and write ``manifest.json`` last, so a half-written export has none."""
    files = sorted(path for path in directory.iterdir() if path.is_file() and path.name != MANIFEST_NAME)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "files": {path.name: sha256_file(path) for path in files}}
    temporary = directory / (MANIFEST_NAME + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    temporary.replace(directory / MANIFEST_NAME)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of ``directory`` after checking every listed file's SHA-256.

    Raises ``EngineError`` naming the manifest (missing, unreadable, another format) or the
    file (missing, changed, or needed by a graph but not listed).
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise EngineError(f"{path}: missing: not a pite-export directory, or its export failed (see parity.json)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EngineError(f"{path}: cannot read the manifest: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EngineError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise EngineError(f"{path}: format version {manifest.get('format_version')}, this engine reads "
                          f"{FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise EngineError(f"{path}: lists no file hashes")
    for name, expected in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise EngineError(f"{path}: file entry {name!r} is not a plain file name in the export directory")
        file = path.parent / name
        if not file.is_file():
            raise EngineError(f"{file}: missing from the ONNX export (listed in {MANIFEST_NAME})")
        found = sha256_file(file)
        if found != expected:
            raise EngineError(f"{file}: SHA-256 {found[:16]}… differs from {MANIFEST_NAME} "
                              f"({str(expected)[:16]}…): the file was changed or is corrupt; export again")
    needed = [graph["file"] for graph in manifest.get("graphs", {}).values()]
    needed.append(manifest.get("embeddings", {}).get("file"))
    for name in [*needed, "config.json", *manifest.get("tokenizer_files", [])]:
        if name not in files:
            raise EngineError(f"{path}: {name!r} is needed but has no hash in the manifest")
    return manifest
