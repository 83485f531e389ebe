"""Config dataclass fields with their ranges (config_fields)."""
import dataclasses

import pytest

from iaemu_likelihood.config_fields import checked_fields, setting, with_default
from iaemu_likelihood.errors import ConfigError


@dataclasses.dataclass(kw_only=True)
class Base:
    steps: int = setting(10, 1)
    rate: float = setting(0.5, 0.0, 1.0, min_inclusive=False)
    device: str = setting("cpu")
    tags: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Derived(Base):
    name: str
    steps: int = with_default(Base, "steps", 3)


def test_checked_fields_normalises_every_setting_and_skips_the_rest():
    config = Derived("x", steps=4.0, rate=1, tags=["anything"])
    assert checked_fields(config) == {"steps": 4, "rate": 1.0, "device": "cpu"}
    assert isinstance(checked_fields(config)["steps"], int)
    assert Derived("x").steps == 3 and Base().steps == 10


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "file.yaml: steps = 0: must be an integer >= 1"),
    ({"steps": 2.5}, "file.yaml: steps = 2.5: must be an integer >= 1"),
    ({"rate": 0.0}, "file.yaml: rate = 0.0: must be a finite number > 0.0 and <= 1.0"),
    ({"rate": float("nan")}, "file.yaml: rate = nan: must be a finite number > 0.0 and <= 1.0"),
    ({"device": ""}, "file.yaml: device = '': must be a non-empty string"),
])
def test_checked_fields_names_the_key_the_value_and_the_range(changes, message):
    with pytest.raises(ConfigError) as info:
        checked_fields(Derived("x", **changes), "file.yaml")
    assert str(info.value) == message


def test_with_default_keeps_the_base_range():
    with pytest.raises(ConfigError, match="steps = 0: must be an integer >= 1"):
        checked_fields(Derived("x", steps=0))
    with pytest.raises(TypeError, match="has no setting 'tags'"):
        with_default(Base, "tags", [1])


def test_setting_refuses_defaults_it_cannot_check():
    for default in (True, None, [1]):
        with pytest.raises(TypeError, match="must be an int, float or str"):
            setting(default)
