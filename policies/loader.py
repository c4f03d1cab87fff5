"""Loads and validates the policy YAML files. Errors name the file and the key."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from policies.models import Elsewhere, Grids, Lexicon, Links, Policies, QuickReplies, Routing, Sla, Taxonomy

DEFAULT_DIR = Path(__file__).resolve().parent
FILES: dict[str, type[BaseModel]] = {
    "taxonomy": Taxonomy,
    "sla": Sla,
    "routing": Routing,
    "grids": Grids,
    "links": Links,
}
OPTIONAL: dict[str, type[BaseModel]] = {"lexicon": Lexicon, "quick_replies": QuickReplies,
                                        "elsewhere": Elsewhere}  # absent: empty


class PolicyError(ValueError):
    """One or more policy files are invalid; `problems` lists `file: key: message` lines."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError([f"{path.name}: file is missing"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise PolicyError([f"{path.name}{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None


def load_policies(directory: Path | str | None = None) -> Policies:
    """Read all policy files from `directory`; raise PolicyError listing every problem found."""
    folder = Path(directory) if directory else DEFAULT_DIR
    problems: list[str] = []
    parsed: dict[str, BaseModel] = {}
    for stem, model in (FILES | OPTIONAL).items():
        path = folder / f"{stem}.yaml"
        if stem in OPTIONAL and not path.exists():
            continue
        try:
            data = _read(path)
            parsed[stem] = model.model_validate(data)
        except PolicyError as exc:
            problems += exc.problems
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "(top level)"
                problems.append(f"{path.name}: {key}: {err['msg']}")
    if problems:
        raise PolicyError(problems)
    return Policies(**parsed)  # type: ignore[arg-type]


@lru_cache(maxsize=8)
def cached_policies(directory: str) -> Policies:
    """Policies are read once per directory per process."""
    return load_policies(directory)
