"""`model-serving eval NAME --against REF`: two served versions compared on the user's evals (lifecycle/evals.py)."""

from __future__ import annotations

import click

from model_serving import verbs
from model_serving.cli.app import App
from model_serving.cli.options import from_model
from model_serving.requests import EvalRequest


@click.command("eval")
@from_model(EvalRequest, positional=("name",))
def eval_cmd(app: App, req: EvalRequest) -> None:
    """Compare served version NAME (NAME@N) with --against REF (e.g. NAME@live) on --set EVALS.jsonl (default: the built-in prompts).

    Each JSONL line: prompt (or messages) and one of expected, contains, regex or reference. Reports pass rates, reference
    agreement (token F1), perplexity on --text FILE and a short bench, each with its interval, the paired difference and a
    verdict: better, worse or not distinguishable; then whether to promote.
    """
    result = app.run(f"eval {req.name} against {req.against}", lambda p: verbs.eval_versions(app.settings, req, p))
    app.show(result)


def register(group: click.Group) -> None:
    group.add_command(eval_cmd)
