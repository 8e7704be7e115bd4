"""`make notebook` asks this first: can the analysis notebook explore MHSS_STUDY? One line and exit 2 when it
cannot (no study there, or no trial has reported an epoch yet: every trial errored, or none has finished one),
instead of a notebook that stops in its third cell with a traceback."""

from __future__ import annotations

import os
import sys

from ..errors import UserError


def check(value: str) -> str:
    from .load import load_studies, study_paths

    paths = study_paths(value)
    tables = load_studies(paths)
    if tables.epochs.empty:
        outcomes = tables.trials["outcome"].value_counts().to_dict() if not tables.trials.empty else {}
        said = ", ".join(f"{n} {o}" for o, n in outcomes.items()) or "no trials"
        raise UserError(
            f"MHSS_STUDY {value}: no trial has reported an epoch yet ({said}); nothing to explore "
            f"(mhss-analyze {paths[0]} says why each trial stopped)"
        )
    return f"exploring {', '.join(paths)}: {len(tables.trials)} trials, {len(tables.epochs)} epoch rows"


def main() -> None:
    try:
        print(check(os.environ.get("MHSS_STUDY", "runs/studies/demo")), flush=True)
    except UserError as exc:
        print(f"make notebook: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
