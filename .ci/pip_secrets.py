"""Give pip inside the image build this machine's pip settings, as build secrets.

pip in the build must reach the package index the way pip here does: through the same
index mirror, with the same CA bundle (a proxy that re-signs TLS needs its own CA).
The settings are read at run time (environment first, then pip's config files, as pip
does), written to DIR/pip.conf, and handed to `podman build` as secrets: the Dockerfile
mounts them for the one pip step only, so nothing of them stays in any layer or in the
image's history. Local `file://` indexes are left out: they do not exist in the build.

Usage: python3 .ci/pip_secrets.py DIR  -> prints the `podman build` arguments.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

SETTINGS = ("index-url", "extra-index-url", "trusted-host", "cert")
CERT_IN_BUILD = "/run/secrets/pip-cert"  # where the Dockerfile mounts the `pip-cert` secret


def pip_setting(name: str) -> str:
    from_env = os.environ.get("PIP_" + name.upper().replace("-", "_"), "")
    if from_env:
        return from_env
    for section in ("install", "global"):
        found = subprocess.run(  # noqa: S603 (this interpreter's pip, fixed arguments)
            [sys.executable, "-m", "pip", "config", "get", f"{section}.{name}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
    return ""


def secrets(directory: Path) -> list[str]:
    lines, args = ["[global]"], []
    for name in SETTINGS:
        value = pip_setting(name)
        if name.endswith("index-url"):
            value = " ".join(url for url in value.split() if not url.startswith("file:"))
        if name == "cert":
            if not Path(value).is_file():
                continue
            args += ["--secret", f"id=pip-cert,src={value}"]
            value = CERT_IN_BUILD
        if value:
            lines.append(f"{name} = {value}")
    if len(lines) > 1:
        conf = directory / "pip.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args += ["--secret", f"id=pip-conf,src={conf}"]
    return args


if __name__ == "__main__":
    sys.stdout.write(shlex.join(secrets(Path(sys.argv[1]))) + "\n")
