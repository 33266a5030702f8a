"""The ensemble YAML's JSON Schema, generated from the pydantic model so the two can never disagree.

Editors that speak JSON Schema (VS Code's YAML extension, JetBrains) complete and check an ensemble
file against docs/ensemble.schema.json; a test keeps that committed copy equal to this output.
Regenerate it with `python -m launcher.schema > docs/ensemble.schema.json`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from protocol.ensemble import Ensemble

__all__ = ["SCHEMA_DIALECT", "ensemble_json_schema", "schema_text"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what pydantic 2 emits


def ensemble_json_schema() -> dict[str, Any]:
    """The schema of what a YAML file may say (validation mode: defaults are optional, not required)."""
    schema = Ensemble.model_json_schema(mode="validation")
    # YAML reads `output: {type: null}` (as ensembles/default.yaml writes it) as a null, which the
    # model's before-validator accepts; say so here, or an editor flags the shipped examples.
    out_type = schema["$defs"]["OutputConfig"]["properties"]["type"]
    out_type["enum"] = [*out_type["enum"], None]
    out_type["type"] = ["string", "null"]
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Barcelona ensemble",
        "description": (
            "An ensemble file: tempo, meter, key, chord plan, bus, control surface, human part and "
            "agents. See ensembles/default.yaml and README.md."
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def schema_text() -> str:
    """Stable text (sorted keys, trailing newline) so the committed file diffs only on real changes."""
    return json.dumps(ensemble_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
