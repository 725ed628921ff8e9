"""Print the files deploy/kubernetes/kustomization.yaml is made of, one a line.

kustomize is not needed to check the manifests: the kustomization is kept to a plain
list of resources, so rendering it is those files, unchanged. This refuses anything
else (patches, generators, namespace or label transformers), so `make lint` never
checks files that differ from what `kubectl apply -k` would send.
"""

import sys
from pathlib import Path

import yaml

PLAIN = {"apiVersion", "kind", "resources"}


def resource_files(directory: Path) -> list[Path]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    extra = set(kustomization) - PLAIN
    if extra:
        raise SystemExit(
            f"{directory}/kustomization.yaml uses {sorted(extra)}: render it with kustomize "
            "before validating, or keep it a plain list of resources"
        )
    files = [directory / name for name in kustomization["resources"]]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise SystemExit(f"kustomization.yaml lists missing files: {missing}")
    return files


if __name__ == "__main__":
    for path in resource_files(Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/kubernetes")):
        sys.stdout.write(f"{path}\n")
