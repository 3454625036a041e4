"""The Dockerfile: hadolint passes, the three targets exist, each final stage runs as a
non-root user from a pinned base with nothing of the build in it, and the sources the
build copies are enough to build the package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field

import pytest

from shipping import REPO, run, tool

DOCKERFILE = REPO / "Dockerfile"
TARGETS = ("operator", "server", "server-cuda")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|cmake|clang|python3-dev|python3-pip|git)\b")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages by name, from a Dockerfile's text."""
    text = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
            base = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            current = Stage(m.group(2) or f"stage{len(stages)}", base)
            stages[current.name] = current
        elif current is None and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif current is not None:
            current.instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse(DOCKERFILE.read_text())


def lineage(stages: dict[str, Stage], name: str) -> list[Stage]:
    """A stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def test_hadolint_passes():
    proc = run([tool("hadolint"), "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
               check=False)
    assert proc.returncode == 0 and proc.stdout.strip() in ("", "[]"), proc.stdout


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nUSER root\n")
    proc = run([tool("hadolint"), "--format", "json", str(bad)], check=False)
    assert proc.returncode != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3002"} <= set(re.findall(r"DL\d{4}", proc.stdout))


def test_the_three_targets_exist(dockerfile):
    _, stages = dockerfile
    assert set(TARGETS) <= set(stages)


@pytest.mark.parametrize("target", TARGETS)
def test_final_stage_runs_as_non_root_from_a_pinned_base(dockerfile, target):
    args, stages = dockerfile
    chain = lineage(stages, target)
    root = chain[-1].base
    image, _, tag = root.partition(":")
    assert "@sha256:" in root or re.search(r"\d+\.\d+", tag), f"{target}: base {root} is not pinned"
    assert tag != "latest"
    users = [u for stage in chain for u in stage.all("USER")]
    assert users, f"{target} sets no USER"
    uid = users[0].split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, f"{target} runs as {users[0]}"
    assert not any(kw == "HEALTHCHECK" for stage in chain for kw, _ in stage.instructions)
    entrypoint = next(e for stage in chain for e in stage.all("ENTRYPOINT"))
    assert entrypoint == '["kubeinfer"]'


@pytest.mark.parametrize("target", TARGETS)
def test_final_stage_holds_no_build_tools(dockerfile, target):
    _, stages = dockerfile
    chain = lineage(stages, target)
    for stage in chain:
        for run_arg in stage.all("RUN"):
            assert "pip install" not in run_arg, f"{stage.name} installs packages: {run_arg}"
            assert not BUILD_TOOLS.search(run_arg.split("uninstall")[0]), f"{stage.name}: {run_arg}"
        for copy in stage.all("COPY"):
            # Only the finished virtual environment comes from the build.
            assert copy.startswith("--from=build-") and copy.endswith("/opt/kubeinfer /opt/kubeinfer"), copy


def test_torch_only_in_the_cuda_server_image(dockerfile):
    """The CPU server runs exported models on ONNX Runtime: neither it nor the operator
    installs torch, whose requirements come from the server extra alone."""
    args, stages = dockerfile
    build = {t: stages[stages[t].all("COPY")[0].split()[0].split("=")[1]] for t in TARGETS}
    requirements = {t: [c.split()[1] for c in build[t].all("COPY") if c.startswith("--from=requirements ")]
                    for t in TARGETS}
    assert requirements == {"operator": ["/requirements-base.txt"], "server": ["/requirements-cpu.txt"],
                            "server-cuda": ["/requirements-server.txt"]}
    assert not any("torch" in r for t in ("operator", "server") for r in build[t].all("RUN"))
    assert any("TORCH_CUDA_INDEX" in r and "torch==" in r for r in build["server-cuda"].all("RUN"))
    assert "/whl/cu" in args["TORCH_CUDA_INDEX"]
    assert lineage(stages, "server-cuda")[-1].base.startswith("nvidia/cuda:")
    # The torch version of the images is the one the tests run with.
    makefile = (REPO / "Makefile").read_text()
    assert f"TORCH_VERSION ?= {args['TORCH_VERSION']}" in makefile


def test_the_cpu_extra_carries_no_torch():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(re.match(r"(torch|transformers|sentence-transformers)\b", r) for r in extras["cpu"])
    assert {"onnxruntime", "tokenizers", "numpy"} <= {re.split(r"[<>=;\[ ]", r)[0] for r in extras["cpu"]}
    assert "kubeinfer[cpu]" in extras["server"]


def test_dockerignore_keeps_the_context_to_what_the_build_copies(dockerfile):
    _, stages = dockerfile
    copied = {src for kw, arg in stages["sources"].instructions if kw == "COPY" for src in arg.split()[:-1]}
    patterns = (REPO / ".dockerignore").read_text().split()
    assert patterns[patterns.index("**") if "**" in patterns else 0] == "**"
    for src in copied:
        assert f"!{src.rstrip('/')}" in patterns or f"!{src.rstrip('/')}/" in patterns, src


def test_the_copied_sources_build_a_package_without_torch(dockerfile, tmp_path):
    """Build the wheel from exactly what the sources stage copies, as `pip install /src` does."""
    _, stages = dockerfile
    src = tmp_path / "src"
    src.mkdir()
    for kw, arg in stages["sources"].instructions:
        if kw != "COPY":
            continue
        *sources, dest = arg.split()
        for name in sources:
            target = src / (name if dest == "./" else dest)
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(REPO / name, target)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "dist").glob("kubeinfer-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "kubeinfer_operator/__init__.py" in names and "kubeinfer/cli.py" in names
    assert "model_server/backends/registry.py" in names
    assert "kubeinfer = kubeinfer.cli:main" in entry_points
    base_requirements = [line for line in metadata.splitlines()
                         if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base_requirements and not any(re.search(r"\b(torch|transformers)\b", r) for r in base_requirements)
    assert any("torch" in r and 'extra == "server"' in r for r in metadata.splitlines())
