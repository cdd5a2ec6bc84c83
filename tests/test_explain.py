"""The backpropagation explainer: the notes' numbers, chain rule == autograd, spec validation."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from regulab.errors import ConfigError
from regulab.explain import NOTES_SPEC, backprop_trace, explain_backprop, format_trace, load_spec

from .conftest import EXAMPLES


def sig9(x: float) -> str:
    return f"{x:.9g}"


def numpy_sgd(W1, b1, W2, b2, x, t, lr, steps):
    """Independent recomputation: sigmoid 2-layer net, squared error, biases fixed.
    Returns [E before each step] + [E final]."""
    s = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    W1, W2 = np.array(W1), np.array(W2)
    errors = []
    for _ in range(steps + 1):
        h = s(W1 @ x + b1)
        o = s(W2 @ h + b2)
        errors.append(0.5 * np.sum((t - o) ** 2))
        d2 = (o - t) * o * (1 - o)
        d1 = (W2.T @ d2) * h * (1 - h)
        W2, W1 = W2 - lr * np.outer(d2, h), W1 - lr * np.outer(d1, x)
    return errors


@pytest.fixture(scope="module")
def notes_trace():
    return backprop_trace(iterations=2)


def by_name(rows):
    return {r["name"]: r for r in rows}


# --- the notes' numbers ------------------------------------------------------------------------------

def test_forward_pass_matches_notes(notes_trace):
    it = notes_trace["iterations"][0]
    units = {u["name"]: u for layer in it["layers"] for u in layer["units"]}
    assert units["h1"]["net"] == pytest.approx(0.3775, abs=1e-15)
    assert units["h2"]["net"] == pytest.approx(0.3925, abs=1e-15)
    expected = {"h1": 0.593269992, "h2": 0.596884378, "o1": 0.75136507, "o2": 0.772928465}
    for name, out in expected.items():
        assert units[name]["out"] == pytest.approx(out, abs=5e-10)
    assert sig9(it["total_error"]) == "0.298371109"


def test_first_update_matches_notes(notes_trace):
    g = by_name(notes_trace["iterations"][0]["weight_grads"])
    assert sig9(g["w5"]["chain"]) == "0.0821670406"          # the notes' 0.082167041
    assert g["w5"]["chain"] == pytest.approx(0.082167041, abs=5e-10)
    # the three chain-rule factors of dE/dw5: (out_o1 - t1) * out_o1 (1 - out_o1) * out_h1
    o1, h1 = 0.7513650695523157, 0.5932699921071872
    assert g["w5"]["dE_dout"] == pytest.approx(o1 - 0.01, rel=1e-14)
    assert g["w5"]["dout_dnet"] == pytest.approx(o1 * (1 - o1), rel=1e-14)
    assert g["w5"]["dnet_dw"] == pytest.approx(h1, rel=1e-14)
    quoted = {"w5": 0.35891648, "w6": 0.408666186, "w7": 0.511301270, "w8": 0.561370121,
              "w1": 0.149780716, "w2": 0.19956143, "w3": 0.24975114, "w4": 0.29950229}
    for name, value in quoted.items():   # quoted to 8 or 9 significant digits
        assert g[name]["updated"] == pytest.approx(value, abs=5e-9), name
    assert sig9(g["w8"]["updated"]) == "0.561370121"
    assert sig9(g["w1"]["updated"]) == "0.149780716"


def test_hidden_gradients_use_the_original_output_weights(notes_trace):
    it = notes_trace["iterations"][0]
    units = {u["name"]: u for layer in it["layers"] for u in layer["units"]}
    d_o1, d_o2 = units["o1"]["delta"], units["o2"]["delta"]
    assert units["h1"]["dE_dout"] == pytest.approx(d_o1 * 0.40 + d_o2 * 0.50, rel=1e-14)
    assert units["h2"]["dE_dout"] == pytest.approx(d_o1 * 0.45 + d_o2 * 0.55, rel=1e-14)
    assert units["h1"]["dE_dout_is"] == "delta_o1*w5 + delta_o2*w7"


def test_second_iteration_error_recomputed(notes_trace):
    ref = numpy_sgd([[.15, .2], [.25, .3]], .35, [[.4, .45], [.5, .55]], .6,
                    np.array([.05, .1]), np.array([.01, .99]), 0.5, steps=2)
    its = notes_trace["iterations"]
    assert [it["total_error"] for it in its] == pytest.approx(ref[:2], rel=1e-13)
    assert notes_trace["final_error"] == pytest.approx(ref[2], rel=1e-13)
    assert sig9(its[1]["total_error"]) == "0.291027774"
    assert its[0]["total_error_after"] == its[1]["total_error"]
    assert sig9(notes_trace["final_error"]) == "0.283547133"
    assert its[1]["weights"] == its[0]["updated_weights"]


def test_biases_kept_by_default_and_updated_on_request(notes_trace):
    it = notes_trace["iterations"][1]
    assert it["biases"] == [0.35, 0.6]
    assert {b["name"] for b in it["bias_grads"]} == {"b1", "b2"}
    spec = dict(NOTES_SPEC, update_biases=True)
    tr = backprop_trace(spec, iterations=1)
    b = by_name(tr["iterations"][0]["bias_grads"])
    deltas = [u["delta"] for u in tr["iterations"][0]["layers"][1]["units"]]
    assert b["b2"]["chain"] == pytest.approx(sum(deltas), rel=1e-14)          # shared bias: sum of deltas
    assert b["b2"]["updated"] == pytest.approx(0.6 - 0.5 * sum(deltas), rel=1e-14)
    assert tr["iterations"][0]["total_error_after"] < notes_trace["iterations"][0]["total_error_after"]


def test_chain_rule_equals_autograd(notes_trace):
    for it in notes_trace["iterations"]:
        for p in it["weight_grads"] + it["bias_grads"]:
            assert abs(p["chain"] - p["autograd"]) <= 1e-12, p["name"]
        for w in it["weight_grads"]:      # dE/dw is the product of its three factors
            assert w["dE_dout"] * w["dout_dnet"] * w["dnet_dw"] == pytest.approx(w["chain"], rel=1e-14)
        assert it["max_abs_diff"] <= 1e-12


def test_names_follow_the_notes(notes_trace):
    g = notes_trace["iterations"][0]["weight_grads"]
    assert [(w["name"], w["from"], w["to"], w["value"]) for w in g] == [
        ("w1", "i1", "h1", .15), ("w2", "i2", "h1", .20), ("w3", "i1", "h2", .25), ("w4", "i2", "h2", .30),
        ("w5", "h1", "o1", .40), ("w6", "h2", "o1", .45), ("w7", "h1", "o2", .50), ("w8", "h2", "o2", .55)]
    assert by_name(g)["w2"]["notes"] == "w_21^1" and by_name(g)["w7"]["notes"] == "w_12^2"


def test_formatted_text_contains_the_notes_numbers():
    text = explain_backprop()
    for s in ["0.3775", "0.593269992", "0.596884378", "0.751365070", "0.772928465", "E_total = 0.298371109",
              "0.0821670406", "0.358916480", "0.408666186", "0.511301270", "0.561370121",
              "0.149780716", "0.199561432", "0.249751144", "0.299502287", "E_total = 0.291027774",
              "=== iteration 1", "=== iteration 2", "NOT updated",
              "dE/dw5 = dE/dout_o1 * dout_o1/dnet_o1 * dnet_o1/dw5 = 0.741365070 * 0.186815602 * 0.593269992"]:
        assert s in text, s
    assert "=== iteration 3" not in text
    assert json.loads(json.dumps(backprop_trace()))  # the trace is plain data


def test_iterations_validated():
    with pytest.raises(ConfigError, match=r"'iterations' must be an integer from 1 to 1000 \(MAX_ITERATIONS\); got 0"):
        backprop_trace(iterations=0)
    assert len(backprop_trace(iterations=3)["iterations"]) == 3


# --- examples -------------------------------------------------------------------------------------

def test_toml_example_equals_default():
    assert load_spec(EXAMPLES / "backprop_net.toml") == backprop_trace(iterations=1)["spec"]
    assert explain_backprop(str(EXAMPLES / "backprop_net.toml")) == explain_backprop()


def test_json_example_runs():
    tr = backprop_trace(load_spec(EXAMPLES / "backprop_net.json"), iterations=3)
    assert tr["spec"]["sizes"] == [3, 2, 1]
    errors = [it["total_error"] for it in tr["iterations"]] + [tr["final_error"]]
    assert all(b < a for a, b in zip(errors, errors[1:]))          # small lr: the error falls
    assert all(it["max_abs_diff"] <= 1e-12 for it in tr["iterations"])
    text = explain_backprop(str(EXAMPLES / "backprop_net.json"), iterations=1)
    assert "3 -> 2 (tanh) -> 1 (linear)" in text and "b1[2]" in text


# --- a deeper random net ---------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "linear"])
def test_deep_net_chain_rule_equals_autograd(act):
    g = torch.Generator().manual_seed(0)
    sizes = [4, 5, 3, 2]                                              # 3 layers
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).tolist()  # noqa: E731
    spec = {"sizes": sizes, "inputs": rnd(4), "targets": rnd(2), "learning_rate": 0.1, "update_biases": True,
            "layers": [{"activation": act, "weights": rnd(sizes[l + 1], sizes[l]),
                        "bias": rnd(sizes[l + 1]) if l % 2 == 0 else 0.1} for l in range(3)]}
    tr = backprop_trace(spec, iterations=2)
    assert tr["naming"] == "indices"
    for it in tr["iterations"]:
        assert len(it["weight_grads"]) == 4 * 5 + 5 * 3 + 3 * 2
        for p in it["weight_grads"] + it["bias_grads"]:
            assert abs(p["chain"] - p["autograd"]) <= 1e-12, p["name"]
    names = [w["name"] for w in tr["iterations"][0]["weight_grads"]]
    assert names[0] == "W1[1,1]" and names[-1] == "W3[2,3]"
    assert tr["iterations"][0]["layers"][1]["units"][0]["name"] == "h2.1"
    assert "W2[1,1]" in format_trace(tr)


# --- bad specs -------------------------------------------------------------------------------------

def bad(**changes):
    spec = copy.deepcopy(NOTES_SPEC)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = spec
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return spec


@pytest.mark.parametrize("changes, message", [
    ({"layers__1__weights": [[.4, .45], [.5, .55], [.1, .2]]},
     r"^spec key 'layers\[1\]\.weights' must be 2x2 \(\[out\]\[in\]\); got 3x2$"),
    ({"layers__0__weights": [[.15, .2], [.25]]}, r"'layers\[0\]\.weights' must be 2x2 .*got rows of lengths \[2, 1\]"),
    ({"layers__0__activation": "softmax"},
     r"^spec key 'layers\[0\]\.activation' must be one of sigmoid, tanh, relu, linear; got 'softmax'$"),
    ({"layers__0__activation": "Sigmod"}, r"got 'Sigmod'; did you mean 'sigmoid'"),
    ({"layers__1__weights__0__1": math.nan},
     r"^spec key 'layers\[1\]\.weights\[0\]\[1\]' must be a finite number; got nan$"),
    ({"inputs__0": math.inf}, r"'inputs\[0\]' must be a finite number; got inf"),
    ({"learning_rate": KeyError}, r"^spec key 'learning_rate' is missing; it is a number > 0$"),
    ({"layers__0__bias": KeyError}, r"^spec key 'layers\[0\]\.bias' is missing"),
    ({"learning_rate": -0.5}, r"'learning_rate' must be a number > 0.0; got -0.5"),
    ({"targets": [0.01]}, r"'targets' must be a list of 2 numbers \(sizes\[-1\]\); got \[0.01\]"),
    ({"layers__0__bias": [0.35]}, r"'layers\[0\]\.bias' must be a list of 2 numbers"),
    ({"loss": "cross_entropy"}, r"'loss' must be one of squared_error; got 'cross_entropy'"),
    ({"update_biases": "yes"}, r"'update_biases' must be true or false; got 'yes'"),
    ({"learning_rte": 0.5}, r"unknown spec key 'learning_rte'; did you mean 'learning_rate'\?"),
    ({"sizes": [2, 2]}, r"'layers' must be a list of 1 tables"),
])
def test_bad_spec_raises_one_line_config_error(changes, message):
    with pytest.raises(ConfigError, match=message) as e:
        backprop_trace(bad(**changes))
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match=r"spec file '.*nope\.toml' not found"):
        load_spec(tmp_path / "nope.toml")
    (tmp_path / "net.yaml").write_text("x: 1")
    with pytest.raises(ConfigError, match=r"net\.yaml' must end in \.json or \.toml; got '\.yaml'"):
        load_spec(tmp_path / "net.yaml")
    (tmp_path / "net.json").write_text('{"sizes": [2, 2, 2],')
    with pytest.raises(ConfigError, match=r"spec file '.*net\.json' is not valid JSON: ") as e:
        load_spec(tmp_path / "net.json")
    assert "\n" not in str(e.value)
    (tmp_path / "net.toml").write_text("sizes = [2, 2\n")
    with pytest.raises(ConfigError, match=r"spec file '.*net\.toml' is not valid TOML: "):
        load_spec(tmp_path / "net.toml")
    # a field error from a file names the file and the field
    text = (EXAMPLES / "backprop_net.toml").read_text().replace("[[0.40, 0.45], [0.50, 0.55]]",
                                                                "[[0.40, nan], [0.50, 0.55]]")
    (tmp_path / "nan.toml").write_text(text)
    with pytest.raises(ConfigError,
                       match=r"nan\.toml: spec key 'layers\[1\]\.weights\[0\]\[1\]' must be a finite number; got nan"):
        load_spec(tmp_path / "nan.toml")
