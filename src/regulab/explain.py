"""Backpropagation, step by step: the chain rule for a small fully connected net, checked by autograd.

The lecture notes (after Matt Mazur, "A step by step backpropagation example", 2015) walk a
2-2-2 network with sigmoid units through one gradient-descent step: inputs i1 = 0.05,
i2 = 0.10, targets 0.01 and 0.99, weights w1..w8 = 0.15 ... 0.55, one bias per layer
(b1 = 0.35, b2 = 0.60), learning rate 0.5 and the squared error::

    E = sum_k 1/2 (target_k - out_k)^2            so  dE/dout_k = out_k - target_k

Forward, for each layer l (``W_l`` is [out][in], ``b_l`` a scalar shared by the layer or
one value per unit)::

    net_l = W_l out_{l-1} + b_l        out_l = act(net_l)        out_0 = inputs

Backward, the chain rule one layer at a time (L is the output layer)::

    delta_L = dE/dout_L * act'(net_L)
    delta_l = (W_{l+1}^T delta_{l+1}) * act'(net_l)       (the ORIGINAL W_{l+1}, before its update)
    dE/dW_l[j, k] = dE/dout_j * dout_j/dnet_j * dnet_j/dw = delta_l[j] * out_{l-1}[k]
    dE/db_l = delta_l (one bias per unit) or sum_j delta_l[j] (a bias shared by the layer)
    w <- w - learning_rate * dE/dw

with act'(net) = out (1 - out) for sigmoid, 1 - out^2 for tanh, [net > 0] for relu and 1 for
linear. The notes do not update the biases; ``update_biases = true`` does.

Naming: a net with one hidden layer is named like the notes: units i1.., h1.., o1.. and weights
w1, w2, ... numbered row-major per layer (w1: i1->h1, w2: i2->h1, w3: i1->h2, w4: i2->h2,
w5: h1->o1, w6: h2->o1, w7: h1->o2, w8: h2->o2); the notes' own symbol w_{kj}^l (k the
input, j the unit) is shown beside it. Deeper nets use indices: unit h2.1 is unit 1 of layer 2,
weight W2[j,k] goes from unit k of layer 1 to unit j of layer 2.

Recomputed in float64, the notes' example gives E = 0.298371109 before the update and
E = 0.291027774 after it (the second iteration's forward pass; Mazur's post quotes
0.291027924), then 0.283547133 after the second update.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
import torch

from regulab.checks import REQUIRED, Section, boolean, choice, key, number, text
from regulab.errors import ConfigError, invalid
from regulab.limits import check_text_depth
from regulab.paths import SPEC_BYTES, read_text

__all__ = ["NOTES_SPEC", "ACTIVATIONS", "MAX_ITERATIONS", "load_spec", "validate_spec", "backprop_trace",
           "format_trace", "explain_backprop"]

# name -> (act(net), act'(net) from net and out, the derivative's formula)
ACTIVATIONS = {
    "sigmoid": (torch.sigmoid, lambda net, out: out * (1 - out), "out*(1-out)"),
    "tanh": (torch.tanh, lambda net, out: 1 - out * out, "1-out^2"),
    "relu": (torch.relu, lambda net, out: (net > 0).to(net.dtype), "[net>0]"),
    "linear": (lambda net: net, lambda net, out: torch.ones_like(net), "1"),
}
LOSSES = ("squared_error",)
MAX_ITERATIONS = 1000     # gradient steps a trace records (each holds every number of the network)

NOTES_SPEC: dict[str, Any] = {
    "name": "the notes' 2-2-2 network (Mazur's example)",
    "sizes": [2, 2, 2],
    "inputs": [0.05, 0.10],
    "targets": [0.01, 0.99],
    "learning_rate": 0.5,
    "update_biases": False,
    "loss": "squared_error",
    "layers": [
        {"activation": "sigmoid", "weights": [[0.15, 0.20], [0.25, 0.30]], "bias": 0.35},
        {"activation": "sigmoid", "weights": [[0.40, 0.45], [0.50, 0.55]], "bias": 0.60},
    ],
}

KIND = "spec key"


def _finite(field: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise invalid(field, "a finite number", v, kind=KIND)
    return float(v)


def _sizes(field: str, v: Any) -> list[int]:
    if (not isinstance(v, list) or len(v) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v)):
        raise invalid(field, "a list of >= 2 integers >= 1 (inputs, hidden..., outputs)", v, kind=KIND)
    return list(v)


def _matrix_shape(v: Any) -> str:
    if not isinstance(v, list):
        return repr(v)
    if not all(isinstance(r, list) for r in v):
        return f"a flat list of {len(v)}"
    lens = {len(r) for r in v}
    return f"{len(v)}x{lens.pop()}" if len(lens) == 1 else f"rows of lengths {[len(r) for r in v]}"


def _numbers(field: str, v: Any, n: int | None = None, why: str = "") -> list[float]:
    if not isinstance(v, list) or (n is not None and len(v) != n):
        raise invalid(field, f"a list of {n} numbers ({why})" if n is not None else "a list of numbers", v,
                      kind=KIND)
    return [_finite(f"{field}[{i}]", x) for i, x in enumerate(v)]


@dataclass
class LayerSpec(Section):
    """One layer of a spec: ``activation``, ``weights`` ([out][in]) and ``bias``."""
    SECTION, KIND = "layers[i]", KIND
    activation: str = key(REQUIRED, choice(*ACTIVATIONS), "one of " + ", ".join(ACTIVATIONS))
    weights: list = key(REQUIRED, lambda f, v: v, "a nested list [out][in]")
    bias: Any = key(REQUIRED, lambda f, v: v, "a number, or a list with one per unit")

    def shaped(self, where: str, n_out: int, n_in: int) -> dict[str, Any]:
        """The layer with its weights and bias checked against ``n_out`` x ``n_in`` units."""
        if _matrix_shape(self.weights) != f"{n_out}x{n_in}":
            raise ConfigError(f"{KIND} '{where}.weights' must be {n_out}x{n_in} ([out][in]); got "
                              f"{_matrix_shape(self.weights)}")
        weights = [[_finite(f"{where}.weights[{j}][{k}]", x) for k, x in enumerate(row)]
                   for j, row in enumerate(self.weights)]
        bias = (_numbers(f"{where}.bias", self.bias, n_out, "one per unit, or a single shared number")
                if isinstance(self.bias, list) else _finite(f"{where}.bias", self.bias))
        return {"activation": self.activation, "weights": weights, "bias": bias}


@dataclass
class NetworkSpec(Section):
    """A spec's top level: the network's sizes, one example, the learning rate and its layers."""
    SECTION, KIND = "", KIND
    sizes: list = key(REQUIRED, _sizes, "a list of >= 2 integers >= 1 (inputs, hidden..., outputs)")
    inputs: list = key(REQUIRED, _numbers, "a list of numbers, one per input")
    targets: list = key(REQUIRED, _numbers, "a list of numbers, one per output")
    learning_rate: float = key(REQUIRED, number(gt=0.0), "a number > 0")
    layers: list = key(REQUIRED, lambda f, v: v, "a list of tables, one per layer")
    name: str = key("a network", text, "a string")
    update_biases: bool = key(False, boolean, "update the biases too (the notes do not)")
    loss: str = key("squared_error", choice(*LOSSES), "the loss (" + ", ".join(LOSSES) + ")")

    def relations(self) -> None:
        for name, v, n, why in (("inputs", self.inputs, self.sizes[0], "sizes[0]"),
                                ("targets", self.targets, self.sizes[-1], "sizes[-1]")):
            _numbers(name, v, n, why)
        if not isinstance(self.layers, list) or len(self.layers) != len(self.sizes) - 1:
            raise invalid("layers", f"a list of {len(self.sizes) - 1} tables (one per entry of sizes "
                          "after the first)", self.layers, kind=KIND)


def validate_spec(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check a network spec and return it normalised (floats, defaults filled in).

    Raises ``ConfigError`` naming the field, the value and what is allowed, e.g.
    ``spec key 'layers[1].weights' must be 2x2 ([out][in]); got 3x2``.
    """
    spec = NetworkSpec.from_table(raw)
    layers = [LayerSpec.from_table(layer, f"layers[{i}]").shaped(f"layers[{i}]", spec.sizes[i + 1],
                                                                  spec.sizes[i])
              for i, layer in enumerate(spec.layers)]
    return {"name": spec.name, "sizes": spec.sizes, "inputs": spec.inputs, "targets": spec.targets,
            "learning_rate": spec.learning_rate, "update_biases": spec.update_biases, "loss": spec.loss,
            "layers": layers}


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a network spec from a ``.json`` or ``.toml`` file and validate it (see ``validate_spec``).

    Keys: ``sizes`` ([inputs, hidden..., outputs]), ``inputs``, ``targets``, ``learning_rate``,
    optional ``update_biases`` (default false, as in the notes), ``loss`` ("squared_error") and
    ``name``; one ``layers`` table per layer with ``activation`` (sigmoid | tanh | relu | linear),
    ``weights`` ([out][in]) and ``bias`` (one number shared by the layer, or one per unit).
    """
    p = Path(path)
    kind = p.suffix.lower()
    if kind not in (".json", ".toml"):
        raise ConfigError(f"spec file '{p}' must end in .json or .toml; got {p.suffix or 'no extension'!r}")
    if not p.exists():
        raise ConfigError(f"spec file '{p}' not found")
    text = read_text(p, "spec file", max_bytes=SPEC_BYTES, error=ConfigError)   # no FIFO, no device
    check_text_depth(text, f"spec file '{p}'", kind[1:])
    try:
        raw = json.loads(text) if kind == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:   # JSONDecodeError; an integer of > 4300 digits
        msg = " ".join(str(e).split())
        raise ConfigError(f"spec file '{p}' is not valid {kind[1:].upper()}: {msg}") from None
    try:
        return validate_spec(raw)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


# --- the trace -----------------------------------------------------------------------------------

class _Names:
    """Unit, weight and bias names: the notes' (i1, h1, o1, w1..) for one hidden layer, else indices."""

    def __init__(self, sizes: list[int]):
        self.L = len(sizes) - 1
        self.notes = self.L == 2
        self.first_w = [sum(sizes[i] * sizes[i + 1] for i in range(l)) for l in range(self.L)]
        self.sizes = sizes
        self.sep = "," if max(sizes) > 9 else ""

    def unit(self, l: int, j: int) -> str:            # l = 0 is the input layer
        if l == 0:
            return f"i{j + 1}"
        if l == self.L:
            return f"o{j + 1}"
        return f"h{j + 1}" if self.notes else f"h{l}.{j + 1}"

    def weight(self, l: int, j: int, k: int) -> tuple[str, str]:   # (name, the notes' symbol)
        if self.notes:
            n = self.first_w[l - 1] + j * self.sizes[l - 1] + k + 1
            return f"w{n}", f"w_{k + 1}{self.sep}{j + 1}^{l}"
        return f"W{l}[{j + 1},{k + 1}]", ""

    def bias(self, l: int, j: int | None) -> str:
        return f"b{l}" if j is None else f"b{l}[{j + 1}]"


def _forward(spec: dict, weights: list, biases: list) -> tuple[list, list, torch.Tensor]:
    """nets, outs (outs[0] = inputs) and E, in float64; differentiable in weights and biases."""
    outs = [torch.tensor(spec["inputs"], dtype=torch.float64)]
    nets = []
    for layer, W, b in zip(spec["layers"], weights, biases):
        nets.append(W @ outs[-1] + b)                                  # (out,)
        outs.append(ACTIVATIONS[layer["activation"]][0](nets[-1]))
    target = torch.tensor(spec["targets"], dtype=torch.float64)
    return nets, outs, 0.5 * ((target - outs[-1]) ** 2).sum()


def _step(spec: dict, weights: list, biases: list, names: _Names, n: int) -> tuple[dict, list, list]:
    """One iteration: forward, chain-rule backward, autograd check, update. Returns (record, W', b')."""
    lr, L = spec["learning_rate"], names.L
    W_ag = [W.clone().requires_grad_(True) for W in weights]
    b_ag = [b.clone().requires_grad_(True) for b in biases]
    _, _, E_ag = _forward(spec, W_ag, b_ag)
    E_ag.backward()                                                    # autograd's reference
    with torch.no_grad():
        nets, outs, E = _forward(spec, weights, biases)
        target = torch.tensor(spec["targets"], dtype=torch.float64)
        dE_dout = outs[-1] - target                                    # (out_L,)
        deltas, dE_douts, douts_dnet = [None] * L, [None] * L, [None] * L
        for l in range(L, 0, -1):
            act = spec["layers"][l - 1]["activation"]
            dE_douts[l - 1] = dE_dout
            douts_dnet[l - 1] = ACTIVATIONS[act][1](nets[l - 1], outs[l])
            deltas[l - 1] = dE_dout * douts_dnet[l - 1]
            dE_dout = weights[l - 1].T @ deltas[l - 1]                 # original W_l, (out_{l-1},)
    rec: dict[str, Any] = {"iteration": n, "weights": [W.tolist() for W in weights],
                           "biases": [b.tolist() for b in biases], "layers": [], "weight_grads": [],
                           "bias_grads": []}
    for l in range(1, L + 1):
        act = spec["layers"][l - 1]["activation"]
        units = []
        for j in range(len(nets[l - 1])):
            if l == L:
                how = f"out_{names.unit(l, j)} - target_{names.unit(l, j)}"
            else:
                how = " + ".join(f"delta_{names.unit(l + 1, m)}*{names.weight(l + 1, m, j)[0]}"
                                 for m in range(len(nets[l])))
            units.append({"name": names.unit(l, j), "net": nets[l - 1][j].item(),
                          "out": outs[l][j].item(), "dE_dout": dE_douts[l - 1][j].item(),
                          "dE_dout_is": how, "dout_dnet": douts_dnet[l - 1][j].item(),
                          "delta": deltas[l - 1][j].item()})
        rec["layers"].append({"layer": l, "activation": act, "act_prime": ACTIVATIONS[act][2],
                              "units": units})
    rec["errors"] = [{"name": names.unit(L, j), "target": t, "out": outs[-1][j].item(),
                      "error": 0.5 * (t - outs[-1][j].item()) ** 2} for j, t in enumerate(spec["targets"])]
    rec["total_error"] = E.item()
    new_W, new_b, diffs = [], [], []
    for l in range(1, L + 1):
        grad_W = torch.outer(deltas[l - 1], outs[l - 1])             # (out_l, out_{l-1})
        for j, k in ((j, k) for j in range(grad_W.shape[0]) for k in range(grad_W.shape[1])):
            name, alias = names.weight(l, j, k)
            u = rec["layers"][l - 1]["units"][j]
            g, ag = grad_W[j, k].item(), W_ag[l - 1].grad[j, k].item()
            diffs.append(abs(g - ag))
            rec["weight_grads"].append({
                "name": name, "notes": alias, "from": names.unit(l - 1, k), "to": names.unit(l, j),
                "dE_dout": u["dE_dout"], "dout_dnet": u["dout_dnet"], "dnet_dw": outs[l - 1][k].item(),
                "chain": g, "autograd": ag, "value": weights[l - 1][j, k].item(),
                "updated": weights[l - 1][j, k].item() - lr * g})
        new_W.append(weights[l - 1] - lr * grad_W)
        b = biases[l - 1]
        grad_b = deltas[l - 1].sum() if b.dim() == 0 else deltas[l - 1]
        for j in ([None] if b.dim() == 0 else range(len(b))):
            g = (grad_b if j is None else grad_b[j]).item()
            ag = (b_ag[l - 1].grad if j is None else b_ag[l - 1].grad[j]).item()
            old = (b if j is None else b[j]).item()
            diffs.append(abs(g - ag))
            rec["bias_grads"].append({"name": names.bias(l, j), "chain": g, "autograd": ag, "value": old,
                                      "shared_by": [names.unit(l, m) for m in range(len(deltas[l - 1]))]
                                      if j is None else [names.unit(l, j)],
                                      "updated": old - lr * g if spec["update_biases"] else old})
        new_b.append(b - lr * grad_b if spec["update_biases"] else b.clone())
    rec["max_abs_diff"] = max(diffs)
    rec["updated_weights"] = [W.tolist() for W in new_W]
    rec["updated_biases"] = [b.tolist() for b in new_b]
    rec["total_error_after"] = _forward(spec, new_W, new_b)[2].item()
    return rec, new_W, new_b


def backprop_trace(spec: Mapping[str, Any] | None = None, iterations: int = 2) -> dict[str, Any]:
    """Run ``iterations`` steps of gradient descent on one example and record every number.

    ``spec`` is a dict in the ``load_spec`` format (validated here), or None for the notes'
    network ``NOTES_SPEC``. Per iteration the trace holds the weights and biases used, every
    unit's net, out, dE/dout, dout/dnet and delta, the per-output and total errors, each
    weight's chain-rule derivative with its three factors next to autograd's (float64), the
    updated weights and the error after the update. Plain floats, lists and strings: JSON-ready.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise invalid("iterations", f"an integer from 1 to {MAX_ITERATIONS} (MAX_ITERATIONS)", iterations,
                      kind="argument")
    spec = validate_spec(NOTES_SPEC if spec is None else spec)
    names = _Names(spec["sizes"])
    weights = [torch.tensor(layer["weights"], dtype=torch.float64) for layer in spec["layers"]]
    biases = [torch.tensor(layer["bias"], dtype=torch.float64) for layer in spec["layers"]]
    steps = []
    for n in range(1, iterations + 1):
        rec, weights, biases = _step(spec, weights, biases, names, n)
        steps.append(rec)
    return {"spec": spec, "naming": "notes" if names.notes else "indices",
            "inputs": [{"name": names.unit(0, k), "value": x} for k, x in enumerate(spec["inputs"])],
            "iterations": steps, "final_error": steps[-1]["total_error_after"]}


# --- the report ----------------------------------------------------------------------------------

def _g(v: float) -> str:
    return f"{v:#.9g}"          # 9 significant digits like the notes, trailing zeros kept


def _is_num(c: str) -> bool:
    try:
        float(c.split()[0])
        return True
    except (ValueError, IndexError):
        return False


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns: numbers right-aligned, text left-aligned, two spaces apart."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    right = [all(_is_num(r[i]) for r in rows) for i in range(len(header))]
    return ["  " + "  ".join(c.rjust(w) if rj else c.ljust(w)
                             for c, w, rj in zip(r, widths, right)).rstrip() for r in [header, *rows]]


def _iteration(it: Mapping[str, Any], spec: Mapping[str, Any], notes: bool) -> list[str]:
    lines = ["", f"=== iteration {it['iteration']} " + "=" * 60, "", "weights"]
    lines += _table(["weight", "from", "to"] + ["notes"] * notes + ["value"],
                    [[w["name"], w["from"], w["to"]] + [w["notes"]] * notes + [_g(w["value"])]
                     for w in it["weight_grads"]])
    lines += ["biases " + "; ".join(
        f"{b['name']} = {_g(b['value'])} ({'shared by ' * (len(b['shared_by']) > 1)}{', '.join(b['shared_by'])})"
        for b in it["bias_grads"])]
    lines += ["", "forward pass: net = sum_k w*in_k + b, out = act(net)"]
    lines += _table(["unit", "act", "net", "out"], [[u["name"], layer["activation"], _g(u["net"]), _g(u["out"])]
                                                    for layer in it["layers"] for u in layer["units"]])
    lines += ["", "error: E = 1/2 (target - out)^2"]
    lines += _table(["unit", "target", "out", "E"],
                    [[e["name"], _g(e["target"]), _g(e["out"]), _g(e["error"])] for e in it["errors"]])
    lines += [f"  E_total = {_g(it['total_error'])}", "",
              "backward pass: delta = dE/dout * dout/dnet (a hidden unit's dE/dout uses the weights before the update)"]
    lines += _table(["unit", "dE/dout", "dout/dnet", "delta", "dE/dout is", "dout/dnet is"],
                    [[u["name"], _g(u["dE_dout"]), _g(u["dout_dnet"]), _g(u["delta"]), u["dE_dout_is"],
                      layer["act_prime"]] for layer in reversed(it["layers"]) for u in layer["units"]])
    lines += ["", "chain rule: dE/dw = dE/dout * dout/dnet * dnet/dw"]
    for w in it["weight_grads"]:
        n, u = w["name"], w["to"]
        lines.append(f"  dE/d{n} = dE/dout_{u} * dout_{u}/dnet_{u} * dnet_{u}/d{n} = "
                     f"{_g(w['dE_dout'])} * {_g(w['dout_dnet'])} * {_g(w['dnet_dw'])} = {_g(w['chain'])}")
    kept = "" if spec["update_biases"] else " (kept)"
    rows = [[p["name"], _g(p["chain"]), _g(p["autograd"]), f"{abs(p['chain'] - p['autograd']):.1e}",
             _g(p["value"]), _g(p["updated"]) + (kept if p in it["bias_grads"] else "")]
            for p in it["weight_grads"] + it["bias_grads"]]
    lines += ["", f"update: p <- p - {spec['learning_rate']:g} * dE/dp (the chain rule next to autograd, float64)"]
    lines += _table(["param", "dE/dp chain", "dE/dp autograd", "|diff|", "old", "new"], rows)
    return lines + [f"  max |chain - autograd| = {it['max_abs_diff']:.1e}",
                    f"  E_total after the update = {_g(it['total_error_after'])}"]


def format_trace(trace: Mapping[str, Any]) -> str:
    """The human-readable report of ``backprop_trace``: one section per iteration, aligned columns."""
    spec, its = trace["spec"], trace["iterations"]
    arch = " -> ".join([str(spec["sizes"][0])] + [f"{s} ({layer['activation']})"
                                                  for s, layer in zip(spec["sizes"][1:], spec["layers"])])
    lines = [f"Backpropagation step by step: {spec['name']}",
             f"network {arch}; loss E = sum_k 1/2 (target_k - out_k)^2; learning rate {spec['learning_rate']:g}",
             "inputs " + ", ".join(f"{u['name']} = {u['value']:g}" for u in trace["inputs"])
             + "; targets " + ", ".join(f"{e['name']} = {e['target']:g}" for e in its[0]["errors"]),
             "biases are " + ("updated (update_biases = true)" if spec["update_biases"]
                              else "NOT updated, as in the notes (update_biases = true updates them)")]
    for it in its:
        lines += _iteration(it, spec, trace["naming"] == "notes")
    n = len(its)
    lines += ["", "E_total by iteration: " + ", ".join(f"{it['iteration']}: {_g(it['total_error'])}" for it in its)
              + f"; after {n} update{'s' * (n > 1)}: {_g(trace['final_error'])}"]
    return "\n".join(lines)


def explain_backprop(path: str | Path | None = None, iterations: int = 2) -> str:
    """What ``regulab explain backprop`` prints: load ``path`` (or the notes' network), trace, format."""
    spec = None if path is None else load_spec(path)
    return format_trace(backprop_trace(spec, iterations))
