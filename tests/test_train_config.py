"""Config loading, overrides, defaults, schema validation and saving."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.errors import ConfigError
from slimdepth.train.config import (
    Field,
    apply_overrides,
    load_config,
    merge_defaults,
    parse_value,
    save_config,
    validate_config,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- load_config


def test_load_config_reads_mapping_and_yaml12_floats(tmp_path: Path) -> None:
    path = write(tmp_path / "run.yaml", "train:\n  lr: 1e-3\n  wd: 5E-4\n  epochs: 30\nname: 2024-01-31\n")
    cfg = load_config(path)
    assert cfg == {"train": {"lr": 0.001, "wd": 0.0005, "epochs": 30}, "name": "2024-01-31"}
    assert isinstance(cfg["train"]["lr"], float)


def test_load_config_empty_file_is_empty_mapping(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "e.yaml", "# only a comment\n")) == {}


def test_load_config_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "a: 1\nb:\n  c: 2\n d: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 4, column 2"):
        load_config(path)


def test_load_config_unclosed_flow_list_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path / "flow.yaml", "x: 1\nterms: [1, 2\nnext: 3\n")
    with pytest.raises(ConfigError, match=r"flow\.yaml, line 3"):
        load_config(path)


def test_load_config_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.yaml", "train:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml, line 3.*duplicate key 'lr'"):
        load_config(path)


def test_load_config_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", "base: &b {lr: 1, wd: 2}\nrun:\n  <<: *b\n  lr: 3\n")
    assert load_config(path)["run"] == {"lr": 3, "wd": 2}


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_load_config_non_mapping_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level .* mapping.*got list"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="got string"):
        load_config(write(tmp_path / "s.yaml", "just text\n"))


def test_load_config_refuses_python_tags(tmp_path: Path) -> None:
    path = write(tmp_path / "evil.yaml", "a: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml, line 1"):
        load_config(path)


def test_load_config_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        load_config(tmp_path)


# --------------------------------------------------------------------------- overrides


BASE = {"train": {"lr": 0.1, "epochs": 3}, "loss": {"terms": [{"type": "silog", "weight": 1.0}]}, "model": None}


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("train.lr=1e-3", ("train", "lr"), 0.001),
        ("train.lr=0.5", ("train", "lr"), 0.5),
        ("train.epochs=30", ("train", "epochs"), 30),
        ("train.epochs=-2", ("train", "epochs"), -2),
        ("train.amp=true", ("train", "amp"), True),
        ("train.amp=False", ("train", "amp"), False),
        ("train.clip=null", ("train", "clip"), None),
        ("train.clip=~", ("train", "clip"), None),
        ("train.clip=", ("train", "clip"), None),
        ("train.sizes=[1, 2, 3]", ("train", "sizes"), [1, 2, 3]),
        ("train.crop={h: 240, w: 384}", ("train", "crop"), {"h": 240, "w": 384}),
        ("model.name=litedepth", ("model", "name"), "litedepth"),
        ("model.name='30'", ("model", "name"), "30"),
        ('model.name="true"', ("model", "name"), "true"),
        ("data.root=/data/a=b/c", ("data", "root"), "/data/a=b/c"),
        ("data.query=x==y", ("data", "query"), "x==y"),
        ("data.url=http://host:8080/p?q=1", ("data", "url"), "http://host:8080/p?q=1"),
        ("data.tag=#1", ("data", "tag"), "#1"),
        ("data.note=a: b", ("data", "note"), "a: b"),
        ("data.at=@latest", ("data", "at"), "@latest"),
        ("data.date=2024-01-31", ("data", "date"), "2024-01-31"),
        ("data.train.num=200", ("data", "train", "num"), 200),
        (" train.lr = 2e-4 ", ("train", "lr"), 0.0002),
        ("train.max=.inf", ("train", "max"), math.inf),
    ],
)
def test_override_values(item: str, key: tuple[str, ...], value: object) -> None:
    cfg = apply_overrides(BASE, [item])
    node = cfg
    for k in key:
        node = node[k]
    assert node == value and type(node) is type(value)


def test_overrides_example_from_the_brief_and_input_untouched() -> None:
    before = repr(BASE)
    cfg = apply_overrides(BASE, ["train.lr=1e-3", "model.name=litedepth", "data.train.num=200",
                                 "loss.terms=[{type: silog}]"])
    assert cfg["train"] == {"lr": 0.001, "epochs": 3}
    assert cfg["model"] == {"name": "litedepth"}  # null section replaced by a mapping
    assert cfg["data"] == {"train": {"num": 200}}
    assert cfg["loss"]["terms"] == [{"type": "silog"}]
    assert repr(BASE) == before


def test_override_list_indexing_and_append() -> None:
    cfg = apply_overrides(BASE, ["loss.terms.0.weight=2", "loss.terms.1={type: grad, weight: 0.5}",
                                 "loss.terms.-1.weight=0.25", "loss.terms.2.type=vnl"])
    assert cfg["loss"]["terms"] == [{"type": "silog", "weight": 2}, {"type": "grad", "weight": 0.25}, {"type": "vnl"}]


def test_overrides_apply_in_order() -> None:
    assert apply_overrides({}, ["a.b=1", "a.b=2", "a.c=3"]) == {"a": {"b": 2, "c": 3}}


def test_override_single_string_is_one_override() -> None:
    assert apply_overrides({}, "a=1") == {"a": 1}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.lr", "must look like key=value"),
        ("=3", "dotted names"),
        ("train..lr=1", "dotted names"),
        ("train.lr.x=1", r"'train\.lr' is a float \(0\.1\), it cannot hold the key 'x'"),
        ("loss.terms.first.weight=1", r"'loss\.terms' is a list, index it with an integer, not 'first'"),
        ("loss.terms.5=1", r"index 5 is out of range for 'loss\.terms'"),
        ("train.sizes=[1, 2", "cannot parse value"),
        ("train.crop={h: 1", "cannot parse value"),
        ("model.name='abc", "cannot parse value"),
    ],
)
def test_override_errors(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(BASE, [item])
    assert "\n" not in str(info.value)


def test_parse_value_keeps_plain_text_verbatim() -> None:
    assert parse_value("- a") == "- a"
    assert parse_value("hello  world") == "hello  world"
    assert parse_value("[a, b]") == ["a", "b"]


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False), st.booleans(), st.none()))
def test_override_round_trips_scalars(value: object) -> None:
    text = {True: "true", False: "false", None: "null"}.get(value, repr(value)) if not isinstance(value, float) \
        else repr(value).replace("inf", ".inf")
    assert apply_overrides({}, [f"x={text}"])["x"] == value


# --------------------------------------------------------------------------- defaults


def test_merge_defaults_is_deep_and_does_not_alias() -> None:
    defaults = {"train": {"lr": 0.1, "epochs": 3, "sizes": [1, 2]}, "model": {"name": "tiny", "args": {"w": 1}}}
    cfg = {"train": {"lr": 0.5, "sizes": [7]}, "model": None, "extra": 1}
    merged = merge_defaults(cfg, defaults)
    assert merged == {"train": {"lr": 0.5, "epochs": 3, "sizes": [7]},
                      "model": {"name": "tiny", "args": {"w": 1}}, "extra": 1}
    merged["model"]["args"]["w"] = 99
    merged["train"]["sizes"].append(8)
    assert defaults["model"]["args"]["w"] == 1 and cfg["train"]["sizes"] == [7]


def test_merge_defaults_scalar_replaces_mapping() -> None:
    assert merge_defaults({"model": "tiny"}, {"model": {"name": "x"}}) == {"model": "tiny"}
    assert merge_defaults(None, {"a": 1}) == {"a": 1}


# --------------------------------------------------------------------------- validation


SCHEMA = {
    "train": {
        "lr": Field(float, required=True, min=0.0),
        "epochs": Field(int, min=1),
        "clip": (float, None),
        "optim": {"adamw", "sgd"},
    },
    "model": {"name": Field(str, required=True), "args": dict},
    "loss": {"terms": [{"type": Field(str, choices={"silog", "grad"}, required=True), "weight": float}]},
    "weights": {"*": float},
    "notes": object,
}


def test_validate_accepts_good_config_and_returns_it() -> None:
    cfg = {"train": {"lr": 1, "epochs": 3, "clip": None, "optim": "sgd"}, "model": {"name": "m", "args": {"k": [1]}},
           "loss": {"terms": [{"type": "silog", "weight": 2}]}, "weights": {"silog": 1.0, "grad": 0.5},
           "notes": ["anything"]}
    assert validate_config(cfg, SCHEMA) is cfg


def test_validate_unknown_key_suggests_and_lists_accepted() -> None:
    cfg = {"train": {"lr": 1.0, "optimm": "sgd"}, "model": {"name": "m"}}
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, SCHEMA, where="run.yaml")
    msg = str(info.value)
    assert msg.startswith("run.yaml: invalid config: unknown key 'train.optimm' (did you mean 'train.optim'?)")
    assert "accepted keys in 'train': lr, epochs, clip, optim" in msg
    assert "\n" not in msg


def test_validate_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'modle' \(did you mean 'model'\?\); accepted keys: train"):
        validate_config({"train": {"lr": 1.0}, "model": {"name": "m"}, "modle": {}}, SCHEMA)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"train": {}, "model": {"name": "m"}}, "missing required key 'train.lr'"),
        ({"train": {"lr": "fast"}, "model": {"name": "m"}}, r"'train\.lr' must be float, got string 'fast'"),
        ({"train": {"lr": True}, "model": {"name": "m"}}, r"'train\.lr' must be float, got bool"),
        ({"train": {"lr": -1.0}, "model": {"name": "m"}}, r"'train\.lr' must be >= 0\.0"),
        ({"train": {"lr": 1.0, "epochs": 0}, "model": {"name": "m"}}, r"'train\.epochs' must be >= 1"),
        ({"train": {"lr": 1.0, "optim": "adam"}, "model": {"name": "m"}},
         r"'train\.optim' must be one of 'adamw', 'sgd', got 'adam' \(did you mean 'adamw'\?\)"),
        ({"train": {"lr": 1.0}, "model": {"name": "m"}, "loss": {"terms": [{"type": "silgo"}]}},
         r"'loss\.terms\.0\.type' must be one of 'grad', 'silog', got 'silgo' \(did you mean 'silog'\?\)"),
        ({"train": {"lr": 1.0}, "model": {"name": "m"}, "loss": {"terms": [{"weight": 1.0}]}},
         r"missing required key 'loss\.terms\.0\.type'"),
        ({"train": {"lr": 1.0}, "model": {"name": "m"}, "loss": {"terms": {"type": "silog"}}},
         r"'loss\.terms' must be a list, got mapping"),
        ({"train": 3, "model": {"name": "m"}}, r"'train' must be a mapping, got int"),
        ({"train": {"lr": 1.0}, "model": {"name": "m"}, "weights": {"grad": "x"}}, r"'weights\.grad' must be float"),
    ],
)
def test_validate_errors(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, SCHEMA)


def test_validate_reports_all_problems_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({"train": {"lr": "x", "epochs": 1.5}, "model": {}}, SCHEMA)
    msg = str(info.value)
    assert "'train.lr' must be float" in msg and "'train.epochs' must be int" in msg
    assert "missing required key 'model.name'" in msg


def test_validate_tuple_alternatives_with_literals() -> None:
    schema = {"name": ("adamw", "sgd"), "amp": (bool, "auto"), "clip": (float, None), "k": (1, 2)}
    validate_config({"name": "sgd", "amp": "auto", "clip": None, "k": 2}, schema)
    validate_config({"name": "adamw", "amp": False, "clip": 1}, schema)
    with pytest.raises(ConfigError, match=r"'name' must be one of 'adamw', 'sgd', got string 'adam' \(did you mean"):
        validate_config({"name": "adam"}, schema)
    with pytest.raises(ConfigError, match=r"'amp' must be bool or one of 'auto', got string 'yes'"):
        validate_config({"amp": "yes"}, schema)
    with pytest.raises(ConfigError, match=r"'k' must be one of 1, 2, got bool True"):
        validate_config({"k": True}, schema)
    with pytest.raises(ConfigError, match=r"'name' must be one of"):
        validate_config({"name": ["sgd"]}, schema)  # unhashable values are fine
    with pytest.raises(ConfigError, match=r"'name' must be one of"):
        validate_config({"name": ["sgd"]}, {"name": {"sgd", "adamw"}})


def test_validate_bad_schema_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        validate_config({"a": [1]}, {"a": [int, str]})


# --------------------------------------------------------------------------- save_config


def test_save_config_round_trip_and_atomic(tmp_path: Path) -> None:
    cfg = {"train": {"lr": 1e-5, "big": 1e20, "inf": math.inf, "epochs": 30, "amp": True, "clip": None},
           "strings": {"exp": "1e-3", "yes": "yes", "null": "null", "date": "2024-01-31", "time": "1:30",
                       "int": "42", "empty": "", "colon": "a: b", "unicode": "métres"},
           "seq": (1, 2), "path": tmp_path / "x", "nested": [{"a": [1, {"b": None}]}]}
    out = tmp_path / "sub" / "config.yaml"
    save_config(cfg, out)
    loaded = load_config(out)
    assert loaded["strings"] == cfg["strings"]
    assert loaded["train"] == cfg["train"]
    assert loaded["seq"] == [1, 2] and loaded["path"] == str(tmp_path / "x")
    assert loaded["nested"] == cfg["nested"]
    assert list(loaded) == list(cfg)  # key order kept
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]


def test_save_config_rejects_unrepresentable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'model\.fn' holds a function"):
        save_config({"model": {"fn": test_save_config_rejects_unrepresentable}}, tmp_path / "c.yaml")
    assert not list(tmp_path.iterdir())


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
              st.text(max_size=12)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), json_like, max_size=5))
def test_save_load_round_trip_property(tmp_path_factory: pytest.TempPathFactory, cfg: dict) -> None:
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg


def test_package_exports_resolve() -> None:
    import slimdepth.train as train

    assert sorted(train.__all__) == sorted(name for names in train._EXPORTS.values() for name in names)
    assert all(getattr(train, name) is not None for name in train.__all__)
    assert set(train.__all__) <= set(dir(train))
