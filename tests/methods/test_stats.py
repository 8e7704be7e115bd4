import math

import torch

from mhss_ray.methods.stats import SelectionStats

CLEAN = torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.uint8)
OBSERVED = torch.tensor([[0, 0], [0, 1], [1, 0]], dtype=torch.uint8)  # (0,0) and (2,1) wrong


def test_selection_and_correction_figures():
    s = SelectionStats(OBSERVED, CLEAN)
    idx = torch.arange(3)
    # trained on (0,0) with its wrong label, (0,1) right, (1,1) right, (2,0) right
    mask = torch.tensor([[1, 1], [0, 1], [1, 0]], dtype=torch.bool)
    s.add_training(idx, OBSERVED, mask)
    corrected = OBSERVED.clone()
    corrected[2, 1] = 1  # right
    corrected[1, 0] = 1  # wrong
    s.add_corrections(idx, OBSERVED, corrected)
    out = s.summary([corrected])
    assert out["selection_precision"] == 3 / 4
    assert out["selection_recall"] == 3 / 4  # 4 entries observed correctly, 3 of them trained on
    assert out["corrections"] == 2 and out["correction_precision"] == 1 / 2
    assert math.isclose(out["residual_noise"], 2 / 6, rel_tol=1e-6)  # (0,0) still wrong, (1,0) now wrong
    assert out["labels_changed"] == 2 and out["labels_changed_precision"] == 1 / 2
    s.reset()
    after = s.summary([OBSERVED, corrected])  # the run so far survives an epoch's reset
    assert math.isnan(after["correction_precision"])
    assert after["labels_changed"] == 2 and after["labels_changed_precision"] == 1 / 2
