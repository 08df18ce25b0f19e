"""The automatic recipe on a per-tensor-weight target (snapdragon-845-hexagon-dsp) with a MobileNet-style
net that collapses there: equalization across ReLU6 is the step that reaches the budget, and the recipe
says so; a budget missed returns the cheapest program within the screen's sampling error."""
from __future__ import annotations

import numpy as np

from edgeopt.device_profiles import load_profile
from edgeopt.pipeline.quantize.adaround import AdaRoundConfig
from edgeopt.pipeline.target import Target
from edgeopt.workflows.recipe import RecipeConfig, run_recipe
from edgeopt.workflows.recipe.run import _cheapest_within_error
from tests.builders.per_tensor import collapsing_graph, images


def test_recipe_reaches_the_budget_by_equalizing_across_relu6() -> None:
    target = Target(load_profile("snapdragon-845-hexagon-dsp"))
    result = run_recipe(collapsing_graph(), images(0, 64), images(1, 128), None, target=target, max_drop=15.0,
                        adaround_config=AdaRoundConfig(iterations=40, samples=32))
    names = [s.step for s in result.steps]
    assert names == ["min/max", "+ CLE", "+ CLE across ReLU6"]
    drops = {s.step: s.drop for s in result.steps}
    assert drops["min/max"] > 15.0 and drops["+ CLE"] > 15.0 and drops["+ CLE across ReLU6"] <= 15.0
    assert result.met and result.chosen == "+ CLE across ReLU6" and result.config.cle == "clip"
    assert result.report()["recipe_budget"]["chosen"] == "+ CLE across ReLU6"
    assert "MINIMUM" in [op.kind for op in result.program.ops]
    # The MINIMUMs are priced: the equalized program is estimated slower than min/max's.
    assert result.steps[2].latency_ms > result.steps[0].latency_ms


def test_a_missed_budget_keeps_the_cheapest_program_within_sampling_error() -> None:
    def built(latency: float) -> tuple:
        return (None, None, latency)

    tried = [(80.0, "a", RecipeConfig(), built(2.0)), (81.0, "b", RecipeConfig(), built(1.0)),
             (81.5, "c", RecipeConfig(), built(5.0)), (78.0, "d", RecipeConfig(), built(0.5))]
    # One standard error of 1.8 points: a, b and c are within it of c (81.5); b is the cheapest of them.
    assert _cheapest_within_error(tried, lambda acc: 1.8)[1] == "b"
    assert _cheapest_within_error(tried, lambda acc: 0.0)[1] == "c"
    assert np.isclose(_cheapest_within_error(tried, lambda acc: 10.0)[3][2], 0.5)


def test_a_step_short_of_the_budget_by_less_than_the_screens_error_is_confirmed() -> None:
    target = Target(load_profile("snapdragon-845-hexagon-dsp"))
    result = run_recipe(collapsing_graph(), images(0, 64), images(1, 128), None, target=target, max_drop=15.0,
                        screen_samples=32, adaround_config=AdaRoundConfig(iterations=40, samples=32))
    step = next(s for s in result.steps if s.step == "+ CLE across ReLU6")
    # On the 32-sample screen it misses the budget (by less than one standard error, ~7 points there) ...
    assert 15.0 < step.drop < 15.0 + 100 * np.sqrt(0.8 * 0.2 / 32)
    # ... and on the whole tuning split it meets it: the recipe stops there instead of rejecting it.
    assert step.confirmed is not None and 100.0 - step.confirmed <= 15.0
    assert result.met and result.chosen == "+ CLE across ReLU6"
