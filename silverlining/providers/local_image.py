"""Base images for local nodes: a bare Debian built with mmdebstrap, cached on disk.

An image is an unpacked root directory used read-only as the overlayfs lower
layer of every node. It is keyed by suite and package list, built once under a
flock (two processes asking at once build it once) into a temp dir that is
renamed into place, so a half-built image is never used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from silverlining.errors import SilverError
from silverlining.providers.local_apt import AptSource
from silverlining.providers.local_host import find_tool, flocked

# A bare server: nothing of ours, only what a provider's stock image would have.
PACKAGES = ("openssh-server", "python3", "systemd-sysv", "dbus", "rsync", "sudo",
            "iproute2", "ca-certificates", "curl")


@dataclass(frozen=True)
class ImageSpec:
    id: str
    name: str
    suite: str
    packages: tuple[str, ...] = PACKAGES

    @property
    def key(self) -> str:
        digest = hashlib.sha256(" ".join((self.suite, *sorted(self.packages))).encode())
        return f"{self.id}-{digest.hexdigest()[:12]}"


IMAGES = {
    "debian-13": ImageSpec("debian-13", "Debian 13 (trixie)", "trixie"),
    "debian-12": ImageSpec("debian-12", "Debian 12 (bookworm)", "bookworm"),
}
DEFAULT_IMAGE = "debian-13"


def image_spec(image_id: str | None) -> ImageSpec:
    wanted = image_id or DEFAULT_IMAGE
    spec = IMAGES.get(wanted) or next((i for i in IMAGES.values() if i.name == wanted), None)
    if spec is None:
        raise SilverError(f"unknown local image {image_id!r} (images: {', '.join(IMAGES)})")
    return spec


def image_root(cache_dir: Path, spec: ImageSpec) -> Path:
    return cache_dir / spec.key / "rootfs"


def is_cached(cache_dir: Path, spec: ImageSpec) -> bool:
    return (image_root(cache_dir, spec) / "etc" / "os-release").exists()


def ensure_image(cache_dir: Path, spec: ImageSpec, sources: list[AptSource],
                 progress: Callable[[str], None],
                 status: Callable[[str], None] = lambda _text: None) -> Path:
    """The image's root dir, building it first if it is not cached yet.

    ``progress`` gets lasting lines (building, built); ``status`` each phase
    mmdebstrap reports while it works (downloading, extracting, ...).
    """
    root = image_root(cache_dir, spec)
    if is_cached(cache_dir, spec):
        return root
    cache_dir.mkdir(parents=True, exist_ok=True)
    def waiting() -> None:
        progress(f"waiting for image {spec.name}: another process is building it")

    with flocked(cache_dir / f".{spec.key}.lock", on_wait=waiting):
        if is_cached(cache_dir, spec):       # another process built it while we waited
            return root
        if not find_tool("mmdebstrap"):
            raise SilverError("building local images needs mmdebstrap: run "
                              "scripts/host-setup.sh or apt-get install mmdebstrap")
        progress(f"building image {spec.name} (first use, about a minute)")
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key}.build-", dir=cache_dir))
        try:
            _build(tmp / "rootfs", spec, sources, status)
            _prepare(tmp / "rootfs")
            final = cache_dir / spec.key
            if final.exists():                   # leftovers of an incomplete old layout
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        progress(f"built image {spec.name} in {time.monotonic() - started:.0f} s")
    return root


def _build(target: Path, spec: ImageSpec, sources: list[AptSource],
           status: Callable[[str], None]) -> None:
    """Run mmdebstrap; its ``I: ...`` phase lines go to ``status`` as they come."""
    argv = [find_tool("mmdebstrap") or "mmdebstrap", "--variant=apt",
            f"--include={','.join(spec.packages)}", spec.suite, str(target)]
    argv += [s.line() for s in sources]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                lines.append(line)
                if line.startswith("I: "):
                    status(f"building image {spec.name}: {line[3:]}")
        returncode = proc.wait(timeout=1800)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise SilverError(f"building image {spec.name} with mmdebstrap took over 30 "
                          "minutes; stopped it") from None
    if returncode != 0:
        tail = lines[-1] if lines else f"exit {returncode}"
        raise SilverError(f"building image {spec.name} with mmdebstrap failed: {tail}")


def _prepare(root: Path) -> None:
    """Strip what must be unique per node: machine id and SSH host keys."""
    (root / "etc" / "machine-id").write_text("")
    (root / "var" / "lib" / "dbus" / "machine-id").unlink(missing_ok=True)
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()


def cached_images(cache_dir: Path) -> set[str]:
    return {spec.id for spec in IMAGES.values() if is_cached(cache_dir, spec)}
