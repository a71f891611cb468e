"""One Hydra entry point shape for grud-predict and grud-evaluate: pre-check, run, one error line."""
from __future__ import annotations

import sys
from typing import Callable

import hydra

from grud.cli.allocator import keep_freed_memory
from grud.cli.config import CONFIG_PATH, plain, precheck
from grud.cli.errors import report


def hydra_entry(config_name: str, work: Callable[[dict], object],
                aliases: dict[str, str] | None = None) -> Callable[[], None]:
    """A console-script ``main`` that composes ``config_name`` and calls ``work(plain config)``.

    A bad override, or any failure of ``work``, ends with one ``error: ...`` line and a non-zero exit.
    ``aliases``: command-line arguments read as others (``task=impute`` -> ``task.name=impute``),
    replaced in ``sys.argv`` before Hydra parses it.
    """

    @hydra.main(config_path=CONFIG_PATH, config_name=config_name, version_base="1.3")
    def _run(cfg) -> None:
        from grud.cli.known_warnings import log_metric_warnings

        log_metric_warnings()
        try:
            work(plain(cfg))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise SystemExit(report(exc))

    def main() -> None:
        keep_freed_memory()
        if aliases:
            sys.argv[1:] = [aliases.get(a, a) for a in sys.argv[1:]]
        try:
            precheck(config_name, sys.argv[1:])
        except Exception as exc:
            raise SystemExit(report(exc, code=2)) from None
        try:
            _run()
        except Exception as exc:  # Hydra's own argument errors; work's are reported inside _run
            raise SystemExit(report(exc, code=2)) from None

    return main
