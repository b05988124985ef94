"""A/B verdicts with their statistics, so a reported winner can be trusted or doubted."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

# The confidence level of the intervals; a result is significant when p < 1 - CONFIDENCE.
CONFIDENCE = 0.95
# The fewest contacts an A/B test needs (the product's business rule): below it a verdict
# still names the best observed variant, but is never called significant.
MIN_TEST_CONTACTS = 100


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One variant's counts, its rate and the Wilson interval around that rate."""

    name: str
    # Sends that went out; of them, those delivered (`analytics.Metrics`), the rate's base.
    sent: int
    delivered: int
    engaged: int
    # engaged / delivered, as `cadence report` rates it; 0.0 when nothing was delivered.
    rate: float
    # The Wilson score interval at the verdict's confidence; None when nothing was delivered.
    ci_low: float | None
    ci_high: float | None

    @property
    def exact_rate(self) -> Decimal:
        """engaged / delivered as a decimal (0 with none), the form the audit log's rates keep."""
        return Decimal(self.engaged) / self.delivered if self.delivered else Decimal(0)


@dataclass(frozen=True, slots=True)
class AbVerdict:
    """An A/B test's outcome: the best observed variant and how far to trust that.

    A rate is engaged over delivered sends, as `cadence report` rates a variant. `winner` is
    the variant with the best observed rate, ties to the first declared, a variant nothing
    reached (no rate observed) after every one something reached; it is the winner whether
    or not the difference is significant. `p_value` is the two-sided two-proportion z-test
    of the winner against `runner_up` (the best other variant that was delivered) and
    decides `significant` (p < 1 - confidence, and at least
    `MIN_TEST_CONTACTS` contacts in the test). `chi2_p_value` is the
    chi-square test of independence across every variant that was delivered (no continuity
    correction, so with two variants it equals `p_value`). When a test is impossible its
    p-value is None, `significant` is False and `reason` says why.
    """

    winner: str
    variants: tuple[VariantResult, ...]
    runner_up: str | None
    p_value: float | None
    chi2_p_value: float | None
    significant: bool
    confidence: float
    reason: str | None

    def rates(self) -> dict[str, str]:
        """Every variant's exact rate as a decimal string, in declaration order."""
        return {v.name: str(v.exact_rate) for v in self.variants}

    def as_details(self) -> dict[str, Any]:
        """The verdict as JSON data, the `ab_winner` audit line's details.

        Keys: `winner` (str); `rates` (variant -> exact rate as a decimal string, as before
        statistics were added); `variants` (variant -> `sent`, `delivered`, `engaged` as ints,
        `rate`,
        `ci_low`, `ci_high` as floats or null); `runner_up` (str or null); `p_value` and
        `chi2_p_value` (floats or null); `significant` (bool); `confidence` (float);
        `reason` (str or null). Every other number than `rates` is a JSON number.
        """
        return {
            "winner": self.winner,
            "rates": self.rates(),
            "variants": {
                v.name: {
                    "sent": v.sent,
                    "delivered": v.delivered,
                    "engaged": v.engaged,
                    "rate": v.rate,
                    "ci_low": v.ci_low,
                    "ci_high": v.ci_high,
                }
                for v in self.variants
            },
            "runner_up": self.runner_up,
            "p_value": self.p_value,
            "chi2_p_value": self.chi2_p_value,
            "significant": self.significant,
            "confidence": self.confidence,
            "reason": self.reason,
        }


def wilson_interval(engaged: int, sent: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for `engaged` successes out of `sent` (sent > 0)."""
    if sent <= 0:
        raise ValueError("a Wilson interval needs at least one send")
    # scipy.stats takes about a second to import: only code that computes a verdict pays.
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = engaged / sent
    z2n = z * z / sent
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / sent + z2n / (4 * sent))
    # At 0% or 100% one end is exactly the rate; rounding must not leave it outside.
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def two_proportion_p_value(
    engaged_a: int, sent_a: int, engaged_b: int, sent_b: int
) -> float | None:
    """The two-sided pooled z-test p-value for two rates, or None when it cannot be computed."""
    if sent_a <= 0 or sent_b <= 0:
        return None
    pooled = (engaged_a + engaged_b) / (sent_a + sent_b)
    variance = pooled * (1 - pooled) * (1 / sent_a + 1 / sent_b)
    if variance <= 0:
        return None
    from scipy import stats

    z = (engaged_a / sent_a - engaged_b / sent_b) / math.sqrt(variance)
    return _finite(2 * float(stats.norm.sf(abs(z))))


def ab_verdict(
    counts: Mapping[str, tuple[int, int]],
    confidence: float = CONFIDENCE,
    *,
    audience: int | None = None,
    sent: Mapping[str, int] | None = None,
) -> AbVerdict:
    """The verdict from each variant's (delivered, engaged), in declaration order.

    The rate is engaged over delivered sends (`analytics.Metrics.rate`): a send that never
    arrived could not be read. `sent` is each variant's sends that went out (default: the
    delivered ones). `audience` is how many contacts reached the test: those sent a variant
    and those held for the winner (default: those delivered a variant). Under
    `MIN_TEST_CONTACTS` the verdict is not significant, whatever the p-value.
    """
    if not counts:
        raise ValueError("an A/B verdict needs at least one variant")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    went = {name: delivered for name, (delivered, _) in counts.items()} | dict(sent or {})
    for name, (delivered, engaged) in counts.items():
        if delivered < 0 or not 0 <= engaged <= delivered:
            raise ValueError(
                f"variant {name!r}: {engaged} engaged of {delivered} delivered is impossible"
            )
        if went[name] < delivered:
            raise ValueError(
                f"variant {name!r}: {delivered} delivered of {went[name]} sent is impossible"
            )
    variants = tuple(
        _variant(name, went[name], delivered, engaged, confidence)
        for name, (delivered, engaged) in counts.items()
    )
    order = list(counts)
    exact = {
        name: Fraction(engaged, delivered) if delivered else Fraction(0)
        for name, (delivered, engaged) in counts.items()
    }

    def best(names: list[str]) -> str:
        # A variant nothing reached has no rate: it wins only when none was reached.
        return max(names, key=lambda name: (counts[name][0] > 0, exact[name], -order.index(name)))

    winner = best(order)
    reached = [name for name in order if counts[name][0] > 0]
    others = [name for name in reached if name != winner]
    runner_up = best(others) if others else None
    reason = _no_test_reason(counts, went, reached)
    if reason is not None or runner_up is None:
        return AbVerdict(winner, variants, runner_up, None, None, False, confidence, reason)
    chi2_p = _chi2_p_value([counts[name] for name in reached])
    (delivered_w, engaged_w), (delivered_r, engaged_r) = counts[winner], counts[runner_up]
    p_value = two_proportion_p_value(engaged_w, delivered_w, engaged_r, delivered_r)
    if p_value is None:
        reason = f"{winner} and {runner_up} both engaged every send"
    contacts = max(sum(went[name] for name in order), audience or 0)
    if reason is None and contacts < MIN_TEST_CONTACTS:
        reason = f"only {contacts} contacts in the test; an A/B test needs {MIN_TEST_CONTACTS}"
    return AbVerdict(
        winner,
        variants,
        runner_up,
        p_value,
        chi2_p,
        p_value is not None and p_value < _alpha(confidence) and contacts >= MIN_TEST_CONTACTS,
        confidence,
        reason,
    )


def verdict_text(details: Mapping[str, Any]) -> str:
    """One line for people: `significant (p=0.003)`, `not significant (p=0.31)`, or why not."""
    if "significant" not in details:
        return "no statistics recorded"
    p_value = details.get("p_value")
    if not isinstance(p_value, int | float):
        return f"no test: {details.get('reason') or 'not enough data'}"
    shown = "p<0.001" if p_value < 0.001 else f"p={p_value:.2g}"
    if details["significant"]:
        return f"significant ({shown})"
    if details.get("reason"):
        return f"not significant ({shown}): {details['reason']}"
    return f"not significant ({shown})"


def _variant(
    name: str, sent: int, delivered: int, engaged: int, confidence: float
) -> VariantResult:
    if not delivered:
        return VariantResult(name, sent, 0, 0, 0.0, None, None)
    low, high = wilson_interval(engaged, delivered, confidence)
    return VariantResult(name, sent, delivered, engaged, engaged / delivered, low, high)


def _alpha(confidence: float) -> float:
    """1 - confidence without float residue: 1 - 0.95 is 0.050000000000000044, not 0.05."""
    return round(1 - confidence, 12)


def _no_test_reason(
    counts: Mapping[str, tuple[int, int]], sent: Mapping[str, int], reached: list[str]
) -> str | None:
    """Why no test can be made on these counts, or None when one can."""
    if len(counts) < 2:
        return "a single variant: nothing to compare"
    if not reached:
        return "no send was delivered" if any(sent.values()) else "no sends yet"
    if len(reached) < 2:
        went = "delivered" if sum(1 for n in sent.values() if n) > 1 else "sent"
        return f"only {reached[0]} was {went}"
    delivered = sum(counts[name][0] for name in reached)
    engaged = sum(counts[name][1] for name in reached)
    if engaged == 0:
        return "no send was engaged"
    if engaged == delivered:
        return "every send was engaged"
    return None


def _chi2_p_value(rows: list[tuple[int, int]]) -> float | None:
    """The chi-square test of independence on (engaged, not engaged) per variant."""
    from scipy import stats

    table = [[engaged, delivered - engaged] for delivered, engaged in rows]
    result = stats.chi2_contingency(table, correction=False)
    return _finite(float(result.pvalue))


def _finite(number: float) -> float | None:
    """The number, or None when it is NaN or infinite (never stored or shown)."""
    return number if math.isfinite(number) else None
