"""Offline demo footage: OpenCV's ``vtest.avi`` from Debian's ``opencv-doc`` package.

``apt-get download`` needs no root; the file is extracted with ``dpkg-deb`` and cached
under the project's data folder. Where apt is missing, callers fall back to the synthetic
scene (:mod:`reid_demo.scene`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
VTEST_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


def fetch_vtest(data_dir: str | Path = "data") -> Path | None:
    """``<data_dir>/vtest.avi``, downloading the package on first use; None if impossible."""
    target = Path(data_dir) / "vtest.avi"
    if target.is_file():
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        log.warning("apt-get/dpkg-deb not found: cannot fetch vtest.avi")
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(
            ["apt-get", "download", "opencv-doc"], cwd=tmp, capture_output=True, text=True
        )
        debs = list(Path(tmp).glob("opencv-doc_*.deb"))
        if got.returncode != 0 or not debs:
            log.warning("apt-get download opencv-doc failed: %s", got.stderr.strip()[-300:])
            return None
        payload = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True, check=True
        ).stdout
        archive = Path(tmp) / "data.tar"
        archive.write_bytes(payload)
        with tarfile.open(archive) as tar:
            member = tar.extractfile(VTEST_MEMBER)
            if member is None:
                log.warning("opencv-doc has no %s", VTEST_MEMBER)
                return None
            partial = target.with_suffix(".part")
            partial.write_bytes(member.read())
            partial.replace(target)
    log.info("fetched %s", target)
    return target
