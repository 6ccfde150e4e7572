"""Where everything is: one `Course` built from grading/nbgrader_config.py.

The real course uses the config as it is. Tests build a `Course` on a temporary root with the SAME
config (same preprocessors, stubs, kernel arguments), only the root, the gradebook and the release
folder moved, so what CI grades is graded exactly as `make autograde` grades.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config, LoggingConfigurable
from traitlets.config.loader import PyFileConfigLoader

GRADING = Path(__file__).resolve().parent.parent
REPO = GRADING.parent
CONFIG_FILE = GRADING / "nbgrader_config.py"


def load_config(config_file: Path = CONFIG_FILE) -> Config:
    loader = PyFileConfigLoader(config_file.name, path=str(config_file.parent))
    return loader.load_config()


@dataclass
class Course:
    """The course directory as nbgrader sees it, plus the folders of our own reports."""

    config: Config
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("coursegrader"))

    @classmethod
    def default(cls) -> Course:
        return cls(load_config())

    @classmethod
    def at(cls, root: Path, release: str | None = None, timeout: int | None = None) -> Course:
        """The course config on another root (own gradebook under <root>/grading/)."""
        cfg = copy.deepcopy(load_config())
        root = Path(root).resolve()
        cfg.CourseDirectory.root = str(root)
        cfg.CourseDirectory.db_url = "sqlite:///" + str(root / "grading" / "gradebook.db")
        if release is not None:
            cfg.CourseDirectory.release_directory = release
        if timeout is not None:
            cfg.Execute.timeout = timeout
        return cls(cfg)

    # --- paths -------------------------------------------------------------------------------
    def _dir(self, key: str) -> Path:
        return Path(self.root, self.config.CourseDirectory[key])

    @property
    def root(self) -> Path:
        return Path(self.config.CourseDirectory.root)

    @property
    def source(self) -> Path:
        return self._dir("source_directory")

    @property
    def release(self) -> Path:
        return self._dir("release_directory")

    @property
    def submitted(self) -> Path:
        return self._dir("submitted_directory")

    @property
    def autograded(self) -> Path:
        return self._dir("autograded_directory")

    @property
    def feedback(self) -> Path:
        return self._dir("feedback_directory")

    @property
    def grading(self) -> Path:
        return self.root / "grading"

    @property
    def reports(self) -> Path:
        return self.grading / "reports"

    @property
    def db_url(self) -> str:
        return self.config.CourseDirectory.db_url

    @property
    def db_path(self) -> Path:
        return Path(self.db_url.split("sqlite:///", 1)[1])

    def assignments(self) -> list[str]:
        """Assignment ids: the folders of the source directory that hold a notebook."""
        if not self.source.is_dir():
            return []
        return sorted(
            p.name
            for p in self.source.iterdir()
            if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.ipynb"))
        )

    def source_notebooks(self, assignment: str) -> list[Path]:
        return sorted((self.source / assignment).glob("*.ipynb"))

    def release_notebooks(self, assignment: str) -> list[Path]:
        return sorted((self.release / assignment).glob("*.ipynb"))

    def submissions(self, assignment: str | None = None) -> list[tuple[str, str]]:
        """(assignment, student) pairs present under submitted/, sorted."""
        out = []
        if not self.submitted.is_dir():
            return out
        for student in sorted(self.submitted.iterdir()):
            if not student.is_dir() or student.name.startswith("."):
                continue
            for folder in sorted(student.iterdir()):
                if (
                    folder.is_dir()
                    and (assignment is None or folder.name == assignment)
                    and any(folder.glob("*.ipynb"))
                ):
                    out.append((folder.name, student.name))
        return sorted(out)

    # --- nbgrader objects --------------------------------------------------------------------
    def coursedir(self, parent: LoggingConfigurable | None = None):
        from nbgrader.coursedir import CourseDirectory

        return CourseDirectory(config=self.config, parent=parent)

    def gradebook(self):
        from nbgrader.api import Gradebook

        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        return Gradebook(self.db_url)


def ensure_venv_on_path() -> None:
    """nbgrader migrates its gradebook with the `alembic` executable, found on PATH only."""
    import sys

    bindir = os.path.dirname(sys.executable)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        os.environ["PATH"] = os.pathsep.join([bindir] + parts)
