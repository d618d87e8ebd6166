"""The Dockerfile, read with BuildKit's own parser (PyPI `dockerfile`): no docker engine
here, so the image is not built; these check what the build would do and that it agrees
with the Kubernetes manifests and the install scripts.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
import pytest

from stack.process_group import DEFAULT_PORTS
from tests.test_deploy_k8s import K8S, Rendered, render

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stage:
    image: str
    name: str = ""
    commands: list[dockerfile.Command] = field(default_factory=list)

    def of(self, instruction: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == instruction.upper()]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for command in self.of("env"):
            pairs = command.value
            env.update(zip(pairs[::2], pairs[1::2], strict=True))
        return env


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    args: dict[str, str] = {}
    found: list[Stage] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "ARG" and not found:
            name, _, default = command.value[0].partition("=")
            args[name] = default.strip('"')
        elif command.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], command.value[0])
            name = command.value[2] if len(command.value) == 3 else ""
            found.append(Stage(image, name))
        else:
            found[-1].commands.append(command)
    return found


def rendered_base() -> Rendered:
    return Rendered(render(K8S / "base"))


def test_every_stage_is_python_3_11_slim(stages: list[Stage]) -> None:
    assert len(stages) == 2
    for stage in stages:
        assert stage.image.startswith("python:3.11-slim"), stage.image


def test_the_build_installs_the_lock_without_resolving(stages: list[Stage]) -> None:
    build = stages[0]
    copied = [c.value[0] for c in build.of("copy")]
    assert "requirements.lock" in copied and "scripts/install-python.sh" in copied
    (install,) = [c for c in build.of("run") if "install-python.sh" in c.value[0]]
    assert "requirements.lock" in install.value[0]
    # The portable llama.cpp build: one tuned to the build machine may not run elsewhere.
    assert "CMAKE_ARGS" in install.value[0]
    assert any("GGML_NATIVE=OFF" in c.value[0] for c in build.of("arg"))
    script = (ROOT / "scripts" / "install-python.sh").read_text()
    assert re.search(r'pip" install .*--no-deps .*-r "\$lock"', script), (
        "install-python.sh must use --no-deps"
    )


def test_the_model_is_joined_into_the_image_where_the_llm_looks(stages: list[Stage]) -> None:
    build, final = stages
    (join,) = [c for c in build.of("run") if "-m services.llm.model" in c.value[0]]
    cache_dir = build.env()["LLM_MODEL_CACHE_DIR"]
    assert join.start_line > next(c for c in build.of("env") if "LLM_MODEL_CACHE_DIR" in c.value).start_line
    assert final.env()["LLM_MODEL_CACHE_DIR"] == cache_dir
    from_build = [c.value for c in final.of("copy") if f"--from={build.name}" in c.flags]
    assert [cache_dir, cache_dir] in [list(v) for v in from_build]
    (llm,) = [c for c in rendered_base().of("ConfigMap") if c["metadata"]["name"].startswith("llm-config")]
    assert llm["data"]["LLM_MODEL_CACHE_DIR"] == cache_dir


def test_it_runs_as_the_non_root_user_of_the_pods(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.of("user")[-1].value[0]
    uid = int(user.split(":")[0])
    assert uid != 0
    for deployment in rendered_base().of("Deployment"):
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsUser"] == uid and context["runAsNonRoot"] is True
    (cmd,) = final.of("cmd")
    assert list(cmd.value[:2]) == ["python", "-m"] and cmd.value[2].startswith("services.")
    exposed = {int(p) for c in final.of("expose") for p in c.value}
    assert exposed == set(DEFAULT_PORTS.values())
    assert final.env()["PATH"].startswith("/opt/venv/bin:")


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
            result = not negate
    return result


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more(stages: list[Stage]) -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = {c.value[0] for s in stages for c in s.of("copy") if not c.flags}
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/"), patterns), source
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in tracked:
        needed = any(path == s.rstrip("/") or path.startswith(s) for s in sources)
        assert ignored(path, patterns) != needed, f"{path}: {'left out' if needed else 'sent'}"
    assert ignored(".venv/bin/python", patterns) and ignored("services/edge/__pycache__/x.pyc", patterns)
