"""The method interface: the registry, each method's objectives at hand-computed cases, the
harness free of method switches, and older workdirs' configs compared by what matters."""

import dataclasses
import json
import math
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

from sgan_jax import methods
from sgan_jax.methods.base import DiscriminatorBatch
from sgan_jax.runs import workdir
from sgan_jax.runs.errors import ConfigError
from sgan_jax.training import config as config_lib

from .conftest import REPO, load_config

PACKAGE = pathlib.Path(REPO) / "sgan_jax"


def test_methods_are_found_by_module_name():
    assert {"sgan", "improved_gan", "ct_gan"} <= set(methods.names())
    for name in methods.names():
        assert methods.get(name).name == name
    with pytest.raises(ConfigError, match="method: must be one of .*; got 'bad_gann'"):
        methods.get("bad_gann")


def test_a_method_key_never_shadows_a_harness_key():
    harness = set(config_lib.harness_defaults())
    for name in methods.names():
        assert not harness & set(methods.get(name).config_defaults), name


def test_no_method_switch_outside_the_methods():
    """The harness is generic: no `method ==` or `generator_loss ==` anywhere but methods/."""
    switch = re.compile(r"\b(method|generator_loss)\s*[!=]=|==\s*\"(sgan|improved_gan|ct_gan)\"")
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name != "methods":
            assert not switch.search(path.read_text()), path


@dataclasses.dataclass
class _KnownNets:
    """Stands in for the harness's networks with fixed outputs: the objectives alone are under
    test. `features` maps a batch's first pixel to the features it gets."""

    logits: jnp.ndarray
    features: dict = dataclasses.field(default_factory=dict)

    def discriminate(self, d_params, images, key, return_features=False):
        logits = self.logits[: images.shape[0]]
        if return_features:
            return logits, self.features[float(images.reshape(-1)[0])]
        return logits

    def generate(self, g_params, z_key):
        return jnp.full((2, 28, 28, 1), 0.5)


def test_sgan_objectives_at_zero_logits():
    """Zero logits: softmax cross-entropy log 10; D(x) = 10/11, so -log D = log 1.1 and
    -log(1 - D) = log 11; the generator's -log D(G(z)) = log(11/10)."""
    config = load_config("sgan_mnist")
    images, labels = jnp.zeros((2, 28, 28, 1)), jnp.asarray([3, 7])
    batch = DiscriminatorBatch(images, labels, images, images)
    nets = _KnownNets(jnp.zeros((6, 10)))
    for weight in (0.0, 1.0, 2.5):
        with config.unlocked():
            config.unlabeled_weight = weight
        loss, metrics = methods.get("sgan").discriminator_loss(config, nets, None, batch, None)
        expected = math.log(10) + weight * 0.5 * (math.log(1.1) + math.log(11))
        assert math.isclose(float(loss), expected, rel_tol=1e-6)
        assert set(metrics) | {"g_loss"} == set(methods.get("sgan").metric_names)
    loss, metrics = methods.get("sgan").generator_loss(config, nets, None, None, {}, None, None)
    assert math.isclose(float(loss), math.log(1.1), rel_tol=1e-6)
    assert metrics == {"g_loss": loss}


def test_feature_matching_is_the_squared_distance_of_mean_features():
    """Real features (1, 2), (3, 4) average (2, 3); generated (0, 0), (2, 2) average (1, 1): the
    loss is mean((1, 2)^2) = 2.5, whatever the logits."""
    real = jnp.zeros((2, 28, 28, 1))  # its first pixel 0.0; generate() gives 0.5
    nets = _KnownNets(
        jnp.ones((2, 10)),
        {0.0: jnp.asarray([[1.0, 2.0], [3.0, 4.0]]), 0.5: jnp.asarray([[0.0, 0.0], [2.0, 2.0]])},
    )
    method = methods.get("improved_gan")
    assert set(method.streams) == {"unlabeled_g"}
    loss, metrics = method.generator_loss(
        load_config("improved_mnist"),
        nets,
        None,
        None,
        {"unlabeled_g": real},
        None,
        jax.random.key(0),
    )
    assert float(loss) == 2.5 and metrics == {"g_loss": loss}


@pytest.mark.parametrize("name", ["sgan_mnist", "improved_mnist", "ct_gan_mnist"])
def test_every_recipe_config_passes_its_checks(name):
    config_lib.check_config(load_config(name))


def test_a_method_checks_its_own_keys():
    config = load_config("ct_gan_mnist")
    with config.unlocked():
        config.consistency_weight = -0.1
    with pytest.raises(ConfigError, match="consistency_weight: must be >= 0"):
        config_lib.check_config(config)


def _current(name: str) -> dict:
    return json.loads(json.dumps(load_config(name).to_dict()))


def test_config_json_from_before_config_method_still_resumes():
    """Workdirs written before config.method (generator_loss chose the objective) compare
    equal to today's recipe: the tutorial run of 5de7cb8 and the improved recipe of 4c79ab6."""
    tutorial = os.path.join(REPO, "docs", "results", "make_train_5de7cb8", "config.json")
    improved = os.path.join(REPO, "tests", "data", "config_4c79ab6_improved_mnist.json")
    for path, name in ((tutorial, "sgan_mnist"), (improved, "improved_mnist")):
        with open(path) as f:
            saved = json.load(f)
        assert "method" not in saved and "generator_loss" in saved
        assert workdir.compare(saved, _current(name), config_lib.comparable) == {}
    with open(improved) as f:
        saved = json.load(f)
    with pytest.raises(ConfigError, match=r"method='improved_gan' \(saved 'sgan'\)"):
        workdir.compare(
            {**saved, "generator_loss": "non_saturating"},
            _current("improved_mnist"),
            config_lib.comparable,
        )


def test_a_key_an_older_config_lacks_counts_at_its_default():
    """A config.json from before supervised_ema_decay existed ran without an EMA (0.0): the
    same as 0.0 now, and refused against the improved recipe's 0.99."""
    with open(os.path.join(REPO, "tests", "data", "config_4c79ab6_improved_mnist.json")) as f:
        saved = json.load(f)
    del saved["supervised_ema_decay"]
    current = _current("improved_mnist")
    with pytest.raises(ConfigError, match="supervised_ema_decay=0.99 \\(saved 0.0\\)"):
        workdir.compare(saved, current, config_lib.comparable)
    assert (
        workdir.compare(saved, {**current, "supervised_ema_decay": 0.0}, config_lib.comparable)
        == {}
    )


def test_only_the_keys_of_the_runs_method_are_compared():
    """A CT-GAN key left in a tutorial run's config matters to no part of that run."""
    current = _current("sgan_mnist")
    assert (
        workdir.compare({**current, "consistency_weight": 0.3}, current, config_lib.comparable)
        == {}
    )
    ct = _current("ct_gan_mnist")
    with pytest.raises(ConfigError, match="consistency_weight=0.1 \\(saved 0.3\\)"):
        workdir.compare({**ct, "consistency_weight": 0.3}, ct, config_lib.comparable)
