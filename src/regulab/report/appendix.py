"""The report's last sections: each variant's resolved config as TOML-like text, and the machine."""

from __future__ import annotations

import json
from typing import Any

from regulab.report.plots import by_rank
from regulab.report.text import MISSING, esc

__all__ = ["configs_section", "machine_section"]


def _toml_value(x: Any) -> str:
    if x is None:
        return '"–"  # unset'
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return repr(x)
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_toml_value(i) for i in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(i)}" for k, i in x.items()) + "}"
    return json.dumps(str(x), ensure_ascii=False)


def _toml(cfg: dict[str, Any], prefix: str = "") -> list[str]:
    """A config as TOML-like text: plain keys first, then one [table] per section."""
    lines = [f"{k} = {_toml_value(x)}" for k, x in cfg.items() if not isinstance(x, dict)]
    for k, x in cfg.items():
        if isinstance(x, dict):
            lines += ["", f"[{prefix}{k}]", *_toml(x, f"{prefix}{k}.")]
    return lines


def configs_section(results: dict[str, Any]) -> str:
    """Each variant's resolved config (best ranked first), folded, with its overrides."""
    configs = results.get("configs") or {}
    if not configs:
        return ""
    order = [v["name"] for v in by_rank(results.get("variants") or []) if v["name"] in configs]
    out = ['<h2 id="configs">Resolved configs</h2>']
    for name in order + [n for n in configs if n not in order]:
        v = next((x for x in results.get("variants") or [] if x["name"] == name), {})
        over = ", ".join(f"{k} = {_toml_value(x)}" for k, x in (v.get("overrides") or {}).items())
        if (v.get("members") or 1) > 1:     # a deep ensemble per run
            over = ", ".join(x for x in (over, f"members = {v['members']}") if x)
        text = "\n".join(_toml(configs[name])).strip()
        out.append(f"<details><summary><strong>{esc(v.get('label') or name)}</strong> "
                   f'<span class="name">{esc(name)}</span>'
                   f"{' — overrides: <code>' + esc(over) + '</code>' if over else ''}</summary>"
                   f"<pre>{esc(text)}</pre></details>")
    return "\n".join(out)


def machine_section(results: dict[str, Any]) -> str:
    """Where the study ran: CPU, cores, device and the versions."""
    m = results.get("machine") or {}
    keys = ["cpu", "cores", "device", "python", "torch", "numpy", "regulab", "platform"]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(m[k]) if m.get(k) is not None else MISSING}"
                   "</td></tr>" for k in keys + [k for k in m if k not in keys])
    return (f'<h2 id="machine">Machine and versions</h2>\n<div class="scroll">'
            f'<table class="machine">{rows}</table></div>')
