"""Operating-point stage: the validation split carved from training rows and the report section."""
import numpy as np
import pytest

from prefill_router.stages import operating_point as op


def test_validation_rows_partition_training_rows_seeded():
    train = np.arange(3, 23)  # 20 training rows
    fit, val = op.validation_rows(train, 0.2, seed=0)
    assert val.size == 4 and fit.size == 16
    assert np.array_equal(np.sort(np.concatenate([fit, val])), train)
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)
    again = op.validation_rows(train, 0.2, seed=0)
    assert np.array_equal(again[1], val)
    assert any(not np.array_equal(op.validation_rows(train, 0.2, seed=s)[1], val) for s in (1, 2, 3))


@pytest.mark.parametrize("fraction, train", [(0.0, np.arange(10)), (1.0, np.arange(10)), (0.01, np.arange(10)),
                                             (0.99, np.arange(10))])
def test_validation_rows_bad_fraction(fraction, train):
    with pytest.raises(ValueError, match="operating_val_fraction"):
        op.validation_rows(train, fraction, seed=0)


def test_report_lines():
    ci = lambda v: {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.1}  # noqa: E731
    result = {"n_val": 40, "n_fit": 160, "best_single": "big", "most_expensive_price": "big", "routers": {
        "SharedTrunkNet": {"validation": {"tolerance": 0.125, "reached": True, "acc": 0.8, "best_single_acc": 0.75},
                           "test": {"router_acc": ci(0.7), "acc_minus_best_single": ci(0.02),
                                    "cost_savings_price_pct": ci(60.0)}}}}
    text = "\n".join(op.report_lines(result))
    assert "| SharedTrunkNet | 0.125 | yes | 0.800 / 0.750 | 0.700 [0.600, 0.800] | 0.020 [-0.080, 0.120] | " \
           "60.000 [59.900, 60.100] | – |" in text
    assert "40 validation rows" in text and "other 160" in text
