"""An image's program started as the chart starts it, without an engine: in the image's
own root file system (buildah's storage, mounted), as its user, with its entrypoint and
environment, the root read-only, a tmpfs on /tmp and a host folder as the model cache.
It shares the host's network, so its servers answer on loopback.

An OCI runtime cannot set its limits on every machine; chroot in a mount namespace of its
own (util-linux's unshare) needs no more than root.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from shipping import REPO

CACHE_DIR = "/var/cache/kubeinfer"  # the image's cache folder, owned by its user


def image_names() -> dict[str, str]:
    """Target -> the image `make images` builds for it (REGISTRY, TAG as it takes them)."""
    names = subprocess.run([str(REPO / "images" / "build.sh"), "--names"], check=True, capture_output=True,
                           text=True).stdout
    return dict(line.split() for line in names.splitlines())


@dataclass
class Image:
    """A built image, mounted read-only for the programs started from it."""

    name: str
    container: str
    rootfs: Path
    config: dict

    @classmethod
    def mount(cls, name: str) -> "Image":
        config = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", name], check=True,
                                           capture_output=True, text=True).stdout)["OCIv1"]["config"]
        container = subprocess.run(["buildah", "from", "--pull-never", "--quiet", name], check=True,
                                   capture_output=True, text=True).stdout.strip()
        rootfs = subprocess.run(["buildah", "mount", container], check=True, capture_output=True,
                                text=True).stdout.strip()
        return cls(name, container, Path(rootfs), config)

    def remove(self) -> None:
        subprocess.run(["buildah", "rm", self.container], capture_output=True)

    @property
    def user(self) -> str:
        return self.config.get("User") or "0:0"

    def command(self, args: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
                binds: Mapping[str | Path, str] | None = None, cache: Path | None = None,
                entrypoint: Sequence[str] | None = None) -> list[str]:
        """The command line that runs the image's entrypoint with ``args`` (the image's CMD
        when None). ``binds``: host paths mounted read-only under /tmp; ``cache``: a host
        folder mounted read-write at the image's cache folder."""
        root = shlex.quote(str(self.rootfs))
        steps = [f"mount --bind {root} {root}", f"mount -t proc proc {root}/proc",
                 f"mount --rbind /dev {root}/dev", f"mount -t tmpfs -o mode=1777 tmpfs {root}/tmp"]
        for host, target in (binds or {}).items():
            assert target.startswith("/tmp/"), target
            inside = shlex.quote(f"{self.rootfs}{target}")
            kind = "mkdir -p" if Path(host).is_dir() else "mkdir -p $(dirname " + inside + ") && touch"
            steps += [f"{kind} {inside}", f"mount --bind {shlex.quote(str(host))} {inside}",
                      f"mount -o remount,bind,ro {inside}"]
        if cache is not None:
            steps.append(f"mount --bind {shlex.quote(str(cache))} {root}{CACHE_DIR}")
        steps.append(f"mount -o remount,bind,ro {root}")
        environment = [e for e in self.config.get("Env") or []]
        environment += [f"{k}={v}" for k, v in (env or {}).items()]
        program = list(entrypoint if entrypoint is not None else self.config.get("Entrypoint") or [])
        program += list(args if args is not None else self.config.get("Cmd") or [])
        run = ["chroot", f"--userspec={self.user}", str(self.rootfs), "/usr/bin/env", "-i",
               "-C", self.config.get("WorkingDir") or "/", *environment, *program]
        steps.append("exec " + shlex.join(run))
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", " && ".join(steps)]

    def run(self, args: Sequence[str] | None = None, timeout: float = 120, **options) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args, **options), capture_output=True, text=True, timeout=timeout)

    def start(self, args: Sequence[str] | None = None, log: Path | None = None, **options) -> subprocess.Popen:
        out = open(log, "w") if log is not None else subprocess.DEVNULL
        return subprocess.Popen(self.command(args, **options), stdout=out, stderr=subprocess.STDOUT)
