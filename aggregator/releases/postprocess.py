"""Post-processing of one figure before publication, after the release-wide consistency step.

The figures themselves come from :mod:`aggregator.releases.consistency`: consistent across the
release's tables, non-negative and (when the recipe rounds) whole numbers whose cells add up to
their totals. What is left per figure (its interval, the rounding of its bounds and suppression)
is the rule in :mod:`protocol.publication`, which the CLI and the Python client (which depends on
``protocol`` only) apply too; this step of the release pipeline is that rule.

Everything here works on noisy, merged figures only, never on raw data, so it costs no privacy
(the post-processing property of differential privacy). See docs/explanation/releases.md.
"""

from __future__ import annotations

from protocol.publication import (
    Figure,
    is_too_wide,
    publish_figure,
    round_to,
    rounding_step,
    shown_from,
)

__all__ = ["Figure", "is_too_wide", "publish_figure", "round_to", "rounding_step", "shown_from"]
