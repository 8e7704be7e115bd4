"""ASHA's rungs after the warm-up (mhss_ray.tune.rungs): where they fall, and the spaces refused."""

import copy

import pytest
import yaml
from ray.tune.schedulers.async_hyperband import _Bracket

from mhss_ray.errors import UserError
from mhss_ray.tune.rungs import asha_rungs
from mhss_ray.tune.space import load_space

from ..conftest import REPO


@pytest.mark.parametrize("grace, rf, max_t", [(1, 2, 4), (6, 2, 9), (17, 2, 30), (3, 3, 30), (5, 2, 5), (2, 4, 100)])
def test_rungs_are_where_rays_own_bracket_puts_them(grace, rf, max_t):
    bracket = _Bracket(grace, max_t, rf, 0)
    assert asha_rungs(grace, rf, max_t) == sorted(int(milestone) for milestone, _ in bracket._rungs)


def demo(tmp_path, **changes) -> dict:
    data = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    data = copy.deepcopy(data)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_spaces_compare_trials_after_their_longest_warm_up(tmp_path, capsys):
    spec = load_space(REPO / "search_spaces" / "demo.yaml", ["tune.storage_path=" + str(tmp_path)])
    assert "ASHA compares trials at epochs 6 (the longest warm-up ends at epoch 5)" in spec.describe()
    for name in ("treesat", "ucmerced", "sewerml"):  # their data are absent here: the YAML's own figures
        data = yaml.safe_load((REPO / "search_spaces" / f"{name}.yaml").read_text())
        longest = data["search"]["method.warmup"]["high"] - 1  # randint: high excluded
        assert data["tune"]["scheduler"]["grace_period"] > longest, name


def test_a_rung_inside_the_warm_up_is_refused_unless_a_searched_key_acts_there(tmp_path):
    inside = {"tune/scheduler": {"name": "asha", "grace_period": 4, "reduction_factor": 2}}
    with pytest.raises(UserError, match=r"first rung, epoch 4, compares trials still in their warm-up .*until epoch 5\): set it to 6"):
        load_space(demo(tmp_path, **inside))
    # the learning rate changes training from the first epoch: trials differ inside the warm-up, so it may be compared there
    lr = {"dist": "loguniform", "low": 3e-4, "high": 3e-3}
    point = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())["tune"]["search_alg"]["points_to_evaluate"][0]
    spec = load_space(
        demo(tmp_path, **inside, **{"search/optim.lr": lr, "tune/search_alg/points_to_evaluate": [{**point, "optim.lr": 1e-3}]})
    )
    assert "ASHA compares trials at epochs 4, 8 (the longest warm-up ends at epoch 5; optim.lr acts during it)" in spec.describe()


def test_the_longest_warm_up_follows_a_searched_q_when_the_warm_up_is_its_default(tmp_path):
    # warm-up unsearched and unset: max(q + ceil(9/10), ceil(9/3)) = q + 1, up to 6 for q 5
    data = yaml.safe_load((REPO / "search_spaces" / "demo.yaml").read_text())
    del data["search"]["method.warmup"]
    del data["method"]["warmup"]
    data["search"]["method.q"] = {"dist": "randint", "low": 3, "high": 6}
    data["tune"]["search_alg"]["points_to_evaluate"] = [
        {k: v for k, v in data["tune"]["search_alg"]["points_to_evaluate"][0].items() if k != "method.warmup"} | {"method.q": 3}
    ]
    data["tune"]["scheduler"]["grace_period"] = 6
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"until epoch 6\): set it to 7"):
        load_space(path)


def test_methods_without_a_warm_up_may_be_cut_from_the_first_epoch(tmp_path):
    every_epoch = {"name": "asha", "grace_period": 1, "reduction_factor": 2}
    spec = load_space(demo(tmp_path, **{"method/name": "coteaching", "tune/scheduler": every_epoch}))
    assert "ASHA compares trials at epochs 1, 2, 4, 8 (coteaching has no warm-up)" in spec.describe()
