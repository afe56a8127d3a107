"""Evaluators as plug-ins: what pre-training measures on the side, one module per kind.

`config.evals` maps a name of your choice to a section whose `type` names a module here
(`imu_fewshot`, `imu_validation`). The module has `default_config()` (the section's keys),
`validate(section)`, `describe(section)` (a sentence for reports) and `Evaluator(section,
config)`, which prepares everything that does not
depend on the weights once; its `run(train_state)` returns `{metric: value}` for the current
training state, and the trainer logs each as `<name>/<metric>` (metrics.jsonl, TensorBoard)
every `section.every` steps, at step 0 (the random-init reference) and at the end. `every = 0`
turns one off. Adding an evaluator is one new module and a section in a recipe.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import ml_collections

EVALUATORS = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__)
                          if not info.name.startswith("_")))


def evaluator_module(kind: str) -> ModuleType:
    """The module of evaluator `kind`; a ValueError naming the known ones otherwise."""
    if kind not in EVALUATORS:
        raise ValueError(f"unknown evaluator type {kind!r}; known: {', '.join(EVALUATORS)}")
    return importlib.import_module(f"{__name__}.{kind}")


def validate(evals: ml_collections.ConfigDict) -> None:
    """Checks every section of `config.evals`; errors name the section (`evals.<name>`)."""
    for name, section in evals.items():
        try:
            if section.every < 0:
                raise ValueError(f"every must be >= 0 (0 = off); got {section.every}")
            evaluator_module(section.type).validate(section)
        except ValueError as error:
            raise ValueError(f"invalid config: evals.{name}: {error}") from None


class Evaluators:
    """The evaluators `config.evals` turns on, each run on its own schedule."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.every = {name: int(section.every) for name, section in config.evals.items()
                      if section.every > 0}
        self.evaluators = {name: evaluator_module(config.evals[name].type).Evaluator(
            config.evals[name], config) for name in self.every}

    def __bool__(self) -> bool:
        return bool(self.evaluators)

    def due(self, step: int, total_steps: int) -> bool:
        return any(self._due(name, step, total_steps) for name in self.every)

    def run(self, train_state: dict, step: int, total_steps: int) -> dict[str, float]:
        """`<name>/<metric>` of every evaluator due at `step` (all of them at step 0)."""
        metrics = {}
        for name, evaluator in self.evaluators.items():
            if self._due(name, step, total_steps):
                metrics.update({f"{name}/{key}": value
                                for key, value in evaluator.run(train_state).items()})
        return metrics

    def _due(self, name: str, step: int, total_steps: int) -> bool:
        return step % self.every[name] == 0 or step == total_steps
